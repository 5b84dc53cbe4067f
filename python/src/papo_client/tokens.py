"""The token table of a trainer's batch (B responses × T positions) and its way back, shared by
the TRL and verl plugins.

    table = token_table(stats, token_ids, advantages, mask, step=k, temperature=τ)
    reply = ddp.reweight(client, table, run_id=run)   # or client.reweight in one process
    adv = reweighted(reply, advantages)        # [B, T] float32, in the batch's order

One row per (response, position), in row-major order: the six row statistics of
:mod:`papo_client.stats`, ``token_id``, the sequence-level advantage broadcast to the tokens,
``mask`` (the completion / response mask: padding is reported but excluded from every aggregate
and keeps its advantage), ``sequence_id``, ``group_id`` and ``position``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import torch

from .stats import COLUMNS as STAT_COLUMNS


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().reshape(-1).cpu().numpy()


def token_table(
    stats: Mapping[str, torch.Tensor],
    token_ids: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    step: int,
    temperature: float,
    sequence_offset: int = 0,
    group_size: int = 1,
) -> pa.Table:
    """The request rows of a batch: token_ids, mask [B, T]; advantages [B] (sequence level,
    broadcast to the tokens) or [B, T]; stats the six [B·T] (or [B, T]) tensors of row_stats.
    sequence_id = sequence_offset + b, group_id = sequence_id // group_size."""
    if token_ids.dim() != 2:
        raise ValueError(f"papo tokens: token_ids has shape {tuple(token_ids.shape)}, want [B, T]")
    b, t = token_ids.shape
    if mask.shape != (b, t):
        raise ValueError(f"papo tokens: mask has shape {tuple(mask.shape)}, want ({b}, {t})")
    if advantages.shape == (b,):
        advantages = advantages[:, None].expand(b, t)
    elif advantages.shape != (b, t):
        raise ValueError(
            f"papo tokens: advantages have shape {tuple(advantages.shape)}, want ({b},) or ({b}, {t})"
        )
    cols: dict[str, pa.Array] = {}
    for c in STAT_COLUMNS:
        s = stats[c]
        if s.numel() != b * t:
            raise ValueError(f"papo tokens: statistic {c} has {s.numel()} values, want {b}×{t} = {b * t}")
        cols[c] = pa.array(_numpy(s.float()))
    seq = np.repeat(np.arange(sequence_offset, sequence_offset + b, dtype=np.int64), t)
    cols["token_id"] = pa.array(_numpy(token_ids).astype(np.int64))
    cols["advantage"] = pa.array(_numpy(advantages.float()))
    cols["mask"] = pa.array(_numpy(mask).astype(bool))
    cols["sequence_id"] = pa.array(seq)
    cols["group_id"] = pa.array(seq // max(group_size, 1))
    cols["position"] = pa.array(np.tile(np.arange(t, dtype=np.int64), b))
    cols["step"] = pa.array(np.full(b * t, step, dtype=np.int64))
    table = pa.table(cols)
    return table.replace_schema_metadata({"papo.temperature": repr(float(temperature))})


def reweighted(data: pa.Table, like: torch.Tensor) -> torch.Tensor:
    """The reply's ``reweighted_advantage`` as a float32 tensor shaped and placed like like
    [B, T]. A null (a token without an advantage) cannot come back for rows that all carry one;
    it is an error naming the row."""
    col = data["reweighted_advantage"].combine_chunks()
    if col.null_count:
        row = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
        raise ValueError(f"papo tokens: reply row {row}: reweighted_advantage is null")
    if len(col) != like.numel():
        raise ValueError(f"papo tokens: reply has {len(col)} rows, the batch {like.numel()} tokens")
    values = torch.from_numpy(col.to_numpy(zero_copy_only=False).astype(np.float32, copy=True))
    return values.reshape(like.shape).to(like.device)
