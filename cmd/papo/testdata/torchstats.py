"""Drives papo_client.stats (python/, the package) for TestTorchRowStats: prints one JSON object with the
logits it drew (float32, as float.hex), the sampled token ids, the temperature and the six row
statistics that row_stats computed.

    python3 torchstats.py single       # one process
    python3 torchstats.py gloo PORT    # two Gloo processes on loopback, each half of the vocabulary
"""
import json
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from papo_client.stats import COLUMNS, row_stats

V, T, TAU = 2000, 12, 0.8


def draw():
    g = torch.Generator().manual_seed(2026)
    z = torch.randn(T, V, generator=g) * 2
    z[1, 123] = 40.0  # peaked
    z[2, ::3] = float("-inf")  # banned tokens
    z[3] = torch.randn(V, generator=g) * 1e4  # huge magnitudes
    z[7, 1500] = 40.0  # peaked, the spike in the second half of the vocabulary
    ids = torch.randint(0, V, (T,), generator=g)
    ids[2] = 1  # not a banned one
    ids[5] = 0
    z[5, 0] = float("-inf")  # probability 0
    return z.float(), ids


def dump(z, ids, stats):
    hexes = lambda t: [float(x).hex() for x in t.double().flatten().tolist()]
    json.dump({"v": V, "t": T, "tau": TAU, "logits": hexes(z), "ids": ids.tolist(),
               "stats": {c: hexes(stats[c]) for c in COLUMNS}}, sys.stdout)


def worker(rank, port):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    z, ids = draw()
    half = V // 2
    shard = z[:, rank * half:(rank + 1) * half].contiguous()
    stats = row_stats(shard, ids, TAU, tp_group=dist.group.WORLD, chunk_rows=5)
    if rank == 0:
        dump(z, ids, stats)
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "single":
        z, ids = draw()
        dump(z, ids, row_stats(z, ids, TAU, chunk_rows=5))
    else:
        mp.spawn(worker, args=(int(sys.argv[2]),), nprocs=2, join=True)
