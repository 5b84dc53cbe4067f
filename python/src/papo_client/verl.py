"""PAPO inside verl (0.9): the actor computes the six row statistics from the logits it already
holds for the entropy, the driver reweights the advantages after verl's ``compute_advantage``.

Actor side (verl's FSDP engine, ``prepare_model_outputs``: the statistics come from the
same ``logits_rmpad`` that ``compute_entropy_from_logits`` reads, already divided by the
temperature; put them in the batch beside ``old_log_probs`` / ``entropys``)::

    stats = papo_client.verl.actor_row_stats(logits_rmpad, input_ids_rmpad_rolled)

Driver side (``RayPPOTrainer.fit``, right after ``compute_advantage``)::

    data = compute_advantage(data, adv_estimator="grpo", ...)
    papo_client.verl.reweight_advantages(data, papo, run_id="run-1", step=global_step,
                                         temperature=config.actor_rollout_ref.rollout.temperature)

:func:`reweight_advantages` sends every response token (``responses``, the statistics in
``data.batch["papo_<name>"]``, ``advantages``, ``response_mask`` as ``mask``, the GRPO group
from ``uid``) as one ``reweight`` request and writes the reply's ``reweighted_advantage`` back
into ``data.batch["advantages"]``: tokens outside ``response_mask`` keep verl's value.

What the tests run on a CPU (python/tests/test_verl.py): ``DataProto``, the driver's own
``verl.trainer.ppo.ray_trainer.compute_advantage`` with the GRPO estimator (verl 0.9.1 imports
``cachetools``, ``fastapi`` and ``uvicorn`` there without declaring them: the lock file pins
them) and ``verl.utils.torch_functional.entropy_from_logits``. verl's FSDP actor worker itself
needs a Ray cluster and GPUs; the test feeds these functions the logits of a tiny Qwen2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from . import ddp
from .protocol import Reply, Requests
from .stats import COLUMNS, row_stats
from .tokens import reweighted, token_table

PREFIX = "papo_"  # the statistics' keys in data.batch: papo_logit_max, ...


def actor_row_stats(
    logits: torch.Tensor, token_ids: torch.Tensor, tp_group: torch.distributed.ProcessGroup | None = None
) -> dict[str, torch.Tensor]:
    """The six statistics of verl's temperature-scaled logits [N, V] (``logits_rmpad``, or this
    rank's vocabulary shard with tp_group) for the tokens token_ids [N], as ``papo_<name>``
    float32 tensors [N]: the entropy's own logits, so the request's ``papo.temperature`` is the
    rollout temperature and the statistics are taken at τ = 1 here."""
    stats = row_stats(logits, token_ids, temperature=1.0, tp_group=tp_group)
    return {PREFIX + c: s for c, s in stats.items()}


def _groups(uid: Any, n: int) -> tuple[np.ndarray, int]:
    """GRPO group ids 0, 1, ... in order of first appearance of each uid."""
    ids: dict[Any, int] = {}
    out = np.array([ids.setdefault(u, len(ids)) for u in uid], dtype=np.int64)
    if len(out) != n:
        raise ValueError(f"papo verl: uid has {len(out)} entries, the batch {n} responses")
    return out, len(ids)


def request_table(data: Any, step: int, temperature: float) -> pa.Table:
    """The reweight request of a verl batch (DataProto with ``responses``, ``advantages``,
    ``response_mask`` and the ``papo_*`` statistics, [B, T] each)."""
    batch = data.batch
    missing = [PREFIX + c for c in COLUMNS if PREFIX + c not in batch]
    if missing:
        raise ValueError(f"papo verl: data.batch has no {', '.join(missing)} (actor_row_stats on the actor)")
    responses = batch["responses"]
    stats = {c: batch[PREFIX + c] for c in COLUMNS}
    table = token_table(
        stats, responses, batch["advantages"], batch["response_mask"].bool(), step, temperature
    )
    if "uid" in data.non_tensor_batch:
        group, _ = _groups(data.non_tensor_batch["uid"], responses.shape[0])
        table = table.set_column(
            table.schema.get_field_index("group_id"),
            "group_id",
            pa.array(np.repeat(group, responses.shape[1])),
        )
    return table


def reweight_advantages(
    data: Any, papo: Requests, run_id: str, step: int, temperature: float = 1.0, **request: Any
) -> Reply:
    """Replaces ``data.batch["advantages"]`` [B, T] by papo's token-level reweighted advantages
    for run_id's step (tokens outside ``response_mask`` unchanged) and returns the reply."""
    reply = ddp.reweight(papo, request_table(data, step, temperature), run_id, **request)
    advantages = data.batch["advantages"]
    mask = data.batch["response_mask"].bool()
    new = reweighted(reply.data, advantages).to(advantages.dtype)
    data.batch["advantages"] = torch.where(mask, new, advantages)
    return reply
