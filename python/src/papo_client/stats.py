"""The six row statistics of docs/SCHEMA.md in torch, on the trainer's device: six numbers per
token instead of V logits.

    stats = row_stats(logits, token_ids, temperature=0.7)              # dict of six [T] tensors
    stats = row_stats(shard, token_ids, 0.7, tp_group=tp)              # vocabulary-parallel logits
    stats = row_stats_from_hidden(hidden, lm_head.weight, token_ids)   # never holds [T, V]

On u = z/τ, with m = max u and v = u − m: ``logit_max`` = m, ``sum_exp_rest`` = Σe^v − 1,
``sum_exp_v`` = Σe^v·v, ``sum_exp2`` = Σe^{2v}, ``sum_exp2_v`` = Σe^{2v}·v, ``sampled_logit``
= u_a. The logits are read in chunks of rows and upcast to float32 per chunk (any dtype:
float32, float16, bfloat16), so nothing of size [T, V] in float32 is kept beyond one chunk; −Inf
logits (banned tokens) contribute 0. With a tensor-parallel group (each rank holding a
contiguous, equal slice of the vocabulary, as Megatron and verl shard the output layer) the
shards' statistics are merged with the associative rule of docs/MATH.md: the max first, then the
sums rescaled to it; the sampled logit comes from the shard that owns the token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

COLUMNS = ("logit_max", "sum_exp_rest", "sum_exp_v", "sum_exp2", "sum_exp2_v", "sampled_logit")

Stats = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def chunk_stats(u: torch.Tensor, local_ids: torch.Tensor, owned: torch.Tensor) -> Stats:
    """Statistics of rows u [R, Vs] (float32, already divided by τ) relative to their own max;
    local_ids are the sampled tokens' indices in this slice, owned says which rows' token is in
    it (elsewhere the sampled logit is 0, the neutral element of the merge's sum). A slice whose
    row is all −Inf gives m = −Inf and s0 − 1 = −1 (s0 = 0), which the merge weighs by 0."""
    m, arg = u.max(dim=-1)
    # An all −Inf slice (possible in a vocabulary shard) must not make v NaN.
    shift = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    v = u - shift[:, None]
    e = torch.exp(v)
    live = e > 0  # −Inf logits: e = 0, and e·v must be 0, not NaN
    zero = torch.zeros_like(e)
    ev = torch.where(live, e * v, zero)
    e2 = e * e
    e2v = torch.where(live, e2 * v, zero)
    # Σe^v − 1 without the cancellation: leave the maximum's own e^0 = 1 out.
    rest = e.scatter(1, arg[:, None], 0.0).sum(-1)
    rest = torch.where(torch.isfinite(m), rest, torch.full_like(rest, -1.0))
    index = local_ids.clamp(0, u.shape[1] - 1)[:, None]
    ua = torch.where(owned, u.gather(1, index)[:, 0], torch.zeros_like(m))
    return m, rest, ev.sum(-1), e2.sum(-1), e2v.sum(-1), ua


def merge_stats(stats: Stats, group: dist.ProcessGroup | None) -> Stats:
    """The associative merge over the ranks of group (all-reduces): m = max m_i, and with
    d_i = m_i − m, r_i = e^{d_i}: s0 = Σ r_i s0_i, Σe^v·v = Σ r_i (s1_i + d_i s0_i), Σe^{2v} =
    Σ r_i² s2_i, Σe^{2v}·v = Σ r_i² (s3_i + d_i s2_i). s0 − 1 is formed without cancellation:
    Σ r_i rest_i plus r_i for every rank but one holder of the max."""
    m, rest, s1, s2, s3, ua = stats
    gm = m.clone()
    dist.all_reduce(gm, op=dist.ReduceOp.MAX, group=group)
    d = m - gm  # ≤ 0; −Inf for an all −Inf slice
    r = torch.exp(d)
    alive = r > 0
    d0 = torch.where(alive, d, torch.zeros_like(d))
    s0 = 1.0 + rest
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    holder = torch.where(d == 0, torch.full_like(m, float(rank)), torch.full_like(m, float(world)))
    dist.all_reduce(holder, op=dist.ReduceOp.MIN, group=group)
    not_holder = (holder != rank).to(m.dtype)
    zero = torch.zeros_like(m)
    parts = torch.stack(
        [
            torch.where(alive, r * rest + not_holder * r, zero),
            torch.where(alive, r * (s1 + d0 * s0), zero),
            r * r * s2,
            torch.where(alive, r * r * (s3 + d0 * s2), zero),
            ua,
        ]
    )
    dist.all_reduce(parts, op=dist.ReduceOp.SUM, group=group)
    return gm, parts[0], parts[1], parts[2], parts[3], parts[4]


def _vocab_offset(width: int, tp_group: dist.ProcessGroup | None) -> int:
    # Ranks hold equal contiguous slices of the vocabulary, in rank order.
    return 0 if tp_group is None else dist.get_rank(tp_group) * width


@torch.no_grad()
def _row_stats(
    chunk: Callable[[int, int], torch.Tensor],
    rows: int,
    width: int,
    device: torch.device,
    token_ids: torch.Tensor,
    temperature: float,
    tp_group: dist.ProcessGroup | None,
    chunk_rows: int,
) -> dict[str, torch.Tensor]:
    if token_ids.shape != (rows,):
        raise ValueError(f"papo stats: token_ids has shape {tuple(token_ids.shape)}, want ({rows},)")
    if not temperature > 0:
        raise ValueError(f"papo stats: temperature {temperature} is not > 0")
    lo = _vocab_offset(width, tp_group)
    out = {c: torch.empty(rows, dtype=torch.float32, device=device) for c in COLUMNS}
    for a in range(0, rows, chunk_rows):
        b = min(a + chunk_rows, rows)
        u = chunk(a, b).float() / temperature
        ids = token_ids[a:b].to(device=device, dtype=torch.long) - lo
        owned = (ids >= 0) & (ids < width)
        stats = chunk_stats(u, ids, owned)
        if tp_group is not None:
            stats = merge_stats(stats, tp_group)
        for c, s in zip(COLUMNS, stats, strict=True):
            out[c][a:b] = s
    return out


def row_stats(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    temperature: float = 1.0,
    tp_group: dist.ProcessGroup | None = None,
    chunk_rows: int = 1024,
) -> dict[str, torch.Tensor]:
    """The six row statistics of logits [T, V] (or this rank's [T, V/tp] with tp_group) for the
    sampled token_ids [T] (global vocabulary ids), as float32 tensors [T] on logits' device.
    Every rank of tp_group must call it with the same rows (the merge is collective)."""
    if logits.dim() != 2:
        raise ValueError(f"papo stats: logits has shape {tuple(logits.shape)}, want [T, V]")
    return _row_stats(
        lambda a, b: logits[a:b],
        logits.shape[0],
        logits.shape[1],
        logits.device,
        token_ids,
        temperature,
        tp_group,
        chunk_rows,
    )


def row_stats_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    token_ids: torch.Tensor,
    temperature: float = 1.0,
    bias: torch.Tensor | None = None,
    tp_group: dist.ProcessGroup | None = None,
    chunk_rows: int = 1024,
) -> dict[str, torch.Tensor]:
    """The statistics of the logits hidden [T, D] @ weight.T (+ bias), the output layer
    (``lm_head.weight`` [V, D], or this rank's [V/tp, D] shard), computed chunk by chunk of rows
    in the model's dtype, as its own forward would: the [T, V] logits never exist at once."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"papo stats: hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}: want [T, D], [V, D]"
        )

    def chunk(a: int, b: int) -> torch.Tensor:
        return torch.nn.functional.linear(hidden[a:b], weight, bias)

    return _row_stats(
        chunk, hidden.shape[0], weight.shape[0], hidden.device, token_ids, temperature, tp_group, chunk_rows
    )


class RowStatsCollector:
    """Collects the statistics of several forward passes (micro-batches) while their logits are
    dropped: call :meth:`add` where the logits exist (a logits processor, a forward hook, the
    loss), keep only six floats a token, and take :meth:`result` at the end."""

    def __init__(
        self, temperature: float = 1.0, tp_group: dist.ProcessGroup | None = None, chunk_rows: int = 1024
    ) -> None:
        self.temperature = temperature
        self.tp_group = tp_group
        self.chunk_rows = chunk_rows
        self._parts: list[dict[str, torch.Tensor]] = []

    def add(self, logits: torch.Tensor, token_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adds the tokens of logits [..., V] (leading dims flattened) sampled as token_ids [...]."""
        flat = logits.reshape(-1, logits.shape[-1])
        part = row_stats(flat, token_ids.reshape(-1), self.temperature, self.tp_group, self.chunk_rows)
        self._parts.append(part)
        return part

    def result(self) -> dict[str, torch.Tensor]:
        """The statistics of every token added, in the order added."""
        if not self._parts:
            return {c: torch.empty(0, dtype=torch.float32) for c in COLUMNS}
        return {c: torch.cat([p[c] for p in self._parts]) for c in COLUMNS}

    def clear(self) -> None:
        """Forgets the tokens added."""
        self._parts.clear()
