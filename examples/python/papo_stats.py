"""Row statistics for papo on the trainer's GPU: six numbers per token instead of V logits.

    from papo_stats import row_stats
    stats = row_stats(logits, token_ids, temperature=0.7)        # dict of six [T] tensors
    stats = row_stats(logits_shard, token_ids, 0.7, tp_group=tp)  # vocabulary-parallel logits

The columns are papo's row-statistics input (docs/SCHEMA.md), on u = z/tau with m = max u and
v = u - m: logit_max = m, sum_exp_rest = sum(e^v) - 1, sum_exp_v = sum(e^v v), sum_exp2 =
sum(e^2v), sum_exp2_v = sum(e^2v v), sampled_logit = u_a. The logits are read once, in chunks
of rows, with float32 accumulation; nothing of size [T, V] is kept beyond one chunk. With a
tensor-parallel group (each rank holding a contiguous slice of the vocabulary, as Megatron and
verl shard the output layer), the shards' partial statistics are all-reduced with the
associative merge of docs/MATH.md: the max first, then the sums rescaled to it; the sampled
logit comes from the shard that owns the token.
"""
import torch
import torch.distributed as dist

COLUMNS = ("logit_max", "sum_exp_rest", "sum_exp_v", "sum_exp2", "sum_exp2_v", "sampled_logit")


def _local(u, local_ids, owned):
    """Statistics of one chunk of rows u [R, Vs] (float32), relative to the chunk's own max."""
    m, arg = u.max(dim=-1)
    v = u - m[:, None]
    e = torch.exp(v)
    finite = e > 0  # -inf logits: e = 0, and e*v must be 0, not nan
    ev = torch.where(finite, e * v, torch.zeros_like(e))
    e2 = e * e
    e2v = torch.where(finite, e2 * v, torch.zeros_like(e))
    # sum(e^v) - 1 without the cancellation: leave the maximum's own e^0 = 1 out.
    rest = e.scatter(1, arg[:, None], 0.0).sum(-1)
    ua = torch.where(owned, u.gather(1, local_ids.clamp(0, u.shape[1] - 1)[:, None])[:, 0],
                     torch.zeros_like(m))
    return m, rest, ev.sum(-1), e2.sum(-1), e2v.sum(-1), ua


def _merge(m, rest, s1, s2, s3, ua, group):
    """The associative merge over the ranks of group: max, then the rescaled sums."""
    gm = m.clone()
    dist.all_reduce(gm, op=dist.ReduceOp.MAX, group=group)
    d = m - gm  # <= 0
    r = torch.exp(d)
    s0 = 1.0 + rest
    # sum(r_i s0_i) - 1 = sum(r_i rest_i) + sum over ranks but one holder of the max of r_i.
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    holder = torch.where(d == 0, torch.full_like(m, float(rank)), torch.full_like(m, float(world)))
    dist.all_reduce(holder, op=dist.ReduceOp.MIN, group=group)
    not_holder = (holder != rank).to(m.dtype)
    parts = torch.stack([
        r * rest + not_holder * r,
        r * (s1 + d * s0),
        r * r * s2,
        r * r * (s3 + d * s2),
        ua,
    ])
    dist.all_reduce(parts, op=dist.ReduceOp.SUM, group=group)
    return gm, parts[0], parts[1], parts[2], parts[3], parts[4]


def row_stats(logits, token_ids, temperature=1.0, tp_group=None, chunk_rows=1024):
    """The six row statistics of logits [T, V] (or [T, V/tp] with tp_group) for the sampled
    token_ids [T] (global vocabulary ids), as a dict of float32 tensors of shape [T]."""
    T = logits.shape[0]
    lo = 0
    if tp_group is not None:
        # This rank's slice of the vocabulary: ranks hold equal contiguous slices in order.
        lo = dist.get_rank(tp_group) * logits.shape[1]
    out = {c: torch.empty(T, dtype=torch.float32, device=logits.device) for c in COLUMNS}
    for a in range(0, T, chunk_rows):
        b = min(a + chunk_rows, T)
        u = logits[a:b].float() / temperature
        ids = token_ids[a:b].long() - lo
        owned = (ids >= 0) & (ids < logits.shape[1])
        stats = _local(u, ids, owned)
        if tp_group is not None:
            stats = _merge(*stats, tp_group)
        for c, s in zip(COLUMNS, stats):
            out[c][a:b] = s
    return out
