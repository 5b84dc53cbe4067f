"""The exact data-parallel path (README, "Data-parallel trainers") with the trainer's own
torch.distributed (NCCL on GPUs, Gloo on CPUs): every rank gets the weights one process would
compute over all ranks' tokens.

    reply = ddp.reweight(client, table, run_id="run-1.rank0")      # stats → all_reduce → reweight

or in its two phases, for a trainer that sends its requests itself::

    partials = client.stats(table).data              # phase 1: this rank's additive partials
    total = ddp.global_stats(partials)               # all-reduce SUM over the ranks
    client.reweight(table, run_id=run, global_stats=total)

The ``stats`` table is additive: summing the ranks' tables column by column, except ``step``,
gives the global table, which is exactly an all-reduce SUM (in float64, so counts stay exact to
2⁵³). Every rank must hold the same steps in the same order; that is checked first.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch
import torch.distributed as dist

from .protocol import Reply, Requests

# The reply columns a trainer needs (papo.columns, docs/PROTOCOL.md): 4 bytes a token back
# instead of the whole reply. ``columns=None`` in a request's keywords asks for the whole reply.
REPLY_COLUMNS: tuple[str, ...] = ("reweighted_advantage",)


def distributed(group: dist.ProcessGroup | None = None) -> bool:
    """Whether torch.distributed is initialised with more than one rank in group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def global_stats(partials: pa.Table, group: dist.ProcessGroup | None = None) -> pa.Table:
    """The ranks' partials tables (``papo stats`` / ``Client.stats``) summed column by column,
    with one all-reduce; the result has partials' schema (integer columns stay integers) and is
    the same on every rank. Raises ValueError when the ranks hold different steps."""
    if "step" not in partials.column_names:
        raise ValueError(f"papo ddp: the partials table has no step column: {partials.column_names}")
    steps = torch.tensor(partials["step"].to_pylist(), dtype=torch.int64)
    # the same steps on every rank: their count first, then the steps themselves
    count = torch.tensor([len(steps), -len(steps)], dtype=torch.int64)
    dist.all_reduce(count, op=dist.ReduceOp.MAX, group=group)
    if count[0] != len(steps) or -count[1] != len(steps):
        raise ValueError(
            f"papo ddp: this rank holds {len(steps)} steps, another {int(count[0])} or {int(-count[1])}"
        )
    first = steps.clone()
    dist.broadcast(first, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    # every rank learns whether any rank differs, so that all raise together (a rank that went
    # on to the sum alone would wait for the others forever)
    differ = torch.tensor([int(not torch.equal(first, steps))], dtype=torch.int64)
    dist.all_reduce(differ, op=dist.ReduceOp.MAX, group=group)
    if differ.item():
        raise ValueError(
            f"papo ddp: the ranks hold different steps: this rank {steps.tolist()}, "
            f"the first rank {first.tolist()}"
        )
    names = [n for n in partials.column_names if n != "step"]
    sums = torch.tensor([partials[n].to_pylist() for n in names], dtype=torch.float64).reshape(len(names), -1)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    columns: list[pa.Array] = []
    for field in partials.schema:
        if field.name == "step":
            columns.append(partials["step"].combine_chunks())
            continue
        values = sums[names.index(field.name)]
        if pa.types.is_integer(field.type):
            columns.append(pa.array(values.to(torch.int64).numpy(), type=field.type))
        else:
            columns.append(pa.array(values.numpy(), type=field.type))
    return pa.Table.from_arrays(columns, schema=partials.schema)


def reweight(
    client: Requests, table: pa.Table, run_id: str, group: dist.ProcessGroup | None = None, **kwargs: Any
) -> Reply:
    """Reweights this rank's token rows for run_id: with more than one rank in group, a
    ``stats`` request, :func:`global_stats`, then ``reweight`` with the global partials (every
    rank's weights are those one process would compute over all ranks' tokens); with one rank,
    a plain ``reweight``. kwargs are the request's keywords (``config=``, ``method=``, ...); the
    reply holds :data:`REPLY_COLUMNS` unless they name ``columns`` (None: the whole reply)."""
    columns = kwargs.pop("columns", REPLY_COLUMNS)
    if distributed(group):
        partials = client.stats(table, **kwargs).data
        kwargs = {**kwargs, "global_stats": global_stats(partials, group)}
    return client.reweight(table, run_id=run_id, columns=columns, **kwargs)
