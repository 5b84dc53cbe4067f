"""One rank of the tensor-parallel test (started by torch.distributed.run from test_tp.py, Gloo
on loopback): holds the rank's contiguous half of the vocabulary of IN (logits [T, V], ids,
hidden [H, D], head [V, D], hidden_ids) and writes the merged statistics of both entry points
at each temperature to OUT."""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.distributed as dist

from papo_client.stats import COLUMNS, row_stats, row_stats_from_hidden


def main(src: str, out: str, temperatures: list[float]) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = np.load(src)
    v = data["logits"].shape[1]
    if v % world:
        raise SystemExit(f"tp_run: V = {v} is not a multiple of {world} ranks")
    lo, hi = rank * v // world, (rank + 1) * v // world
    ids = torch.from_numpy(data["ids"])
    shard = torch.from_numpy(np.ascontiguousarray(data["logits"][:, lo:hi]))
    head = torch.from_numpy(np.ascontiguousarray(data["head"][lo:hi]))
    hidden, hids = torch.from_numpy(data["hidden"]), torch.from_numpy(data["hidden_ids"])
    got: dict[str, np.ndarray] = {}
    for tau in temperatures:
        logits = row_stats(shard, ids, tau, tp_group=dist.group.WORLD, chunk_rows=3)
        fused = row_stats_from_hidden(hidden, head, hids, tau, tp_group=dist.group.WORLD, chunk_rows=5)
        got |= {f"logits.{tau!r}.{c}": logits[c].numpy() for c in COLUMNS}
        got |= {f"hidden.{tau!r}.{c}": fused[c].numpy() for c in COLUMNS}
    if rank == 0:
        np.savez(out, **got)  # type: ignore[arg-type]
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [float(t) for t in sys.argv[3:]])
