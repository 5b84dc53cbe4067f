"""Data-parallel papo in two phases, with the trainer's own torch.distributed (NCCL on GPUs,
Gloo on CPUs): every rank gets the weights one process would compute for all ranks' tokens.

    # phase 1, on every rank: papo stats rank.arrow -o part-RANK.csv   (reweight's flags)
    global_stats("part-RANK.csv", "global.csv")                        # this file: all-reduce SUM
    # phase 2, on every rank: papo reweight rank.arrow -o out.arrow --global-stats global.csv

The table of `papo stats` is additive: summing the ranks' tables column by column, except
step, gives the global table; that is exactly an all-reduce SUM.

    python3 papo_ddp.py RANK WORLD PORT PART GLOBAL    # one rank on loopback (Gloo)
"""
import csv
import sys

import torch
import torch.distributed as dist


def global_stats(part_path, global_path, group=None):
    """All-reduces this rank's partials table (CSV from papo stats) into global_path."""
    with open(part_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0].keys() if c != "step"] if rows else []
    steps = torch.tensor([int(r["step"]) for r in rows], dtype=torch.int64)
    # Every rank must hold the same steps, in the same order: check before summing.
    first = steps.clone()
    dist.broadcast(first, src=0, group=group)
    if not torch.equal(first, steps):
        raise RuntimeError("papo: the ranks' partials tables hold different steps")
    sums = torch.tensor([[float(r[c]) for c in columns] for r in rows], dtype=torch.float64)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    if dist.get_rank(group) == 0 or global_path:
        with open(global_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step"] + columns)
            for step, row in zip(steps.tolist(), sums.tolist()):
                # counts stay integers; sums keep every digit (repr of a float64)
                w.writerow([step] + [str(int(x)) if c.endswith("_tokens") else repr(x) for c, x in zip(columns, row)])


if __name__ == "__main__":
    rank, world, port, part, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    global_stats(part, out)
    dist.destroy_process_group()
