"""Phase 1.5 of the data-parallel path with files (README, "Data-parallel trainers"): each rank's
`papo stats` CSV all-reduced with papo_client.ddp.global_stats into the global table.

    papo stats rank.arrow -o part.csv ...                            # phase 1, each rank
    python ddp_global_stats.py RANK WORLD PORT part.csv global.csv   # Gloo on loopback
    papo reweight rank.arrow -o out.arrow --global-stats global.csv  # phase 2, each rank

A trainer in Python does all three with papo_client.ddp.reweight, without files.
"""

import sys

import pyarrow as pa
import pyarrow.csv as csv
import torch.distributed as dist

from papo_client import ddp


def read_partials(path: str) -> pa.Table:
    """papo stats' CSV with its types: step and the *_tokens counts integers, the sums float64
    (a sum column whose values all look like integers must not be read as integers)."""
    with open(path) as f:
        names = f.readline().strip().split(",")
    types = {n: pa.int64() if n == "step" or n.endswith("_tokens") else pa.float64() for n in names}
    return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types))


rank, world, port, part, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
csv.write_csv(ddp.global_stats(read_partials(part)), out)
dist.destroy_process_group()
