"""One rank of test_ddp.py's two-process run (torch.distributed.run, Gloo on loopback): all-reduces
DIR/part<rank>.arrow with papo_client.ddp.global_stats into DIR/global<rank>.arrow, then tries
partials whose steps differ between the ranks and writes the error to DIR/mismatch<rank>.txt."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import torch.distributed as dist

from papo_client import ddp


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    part = ipc.open_file(pa.memory_map(f"{out}/part{rank}.arrow")).read_all()
    glob = ddp.global_stats(part)
    with pa.OSFile(f"{out}/global{rank}.arrow", "wb") as f, ipc.new_file(f, glob.schema) as w:
        w.write_table(glob)
    # rank 1 without its first step: the sum would mix steps
    other = part if rank == 0 else part.filter(pc.greater(part["step"], pc.min(part["step"])))
    shifted = part.set_column(0, "step", pc.add(part["step"], rank))
    errors = []
    for bad in (other, shifted):
        try:
            ddp.global_stats(bad)
            errors.append("no error")
        except ValueError as e:
            errors.append(str(e))
    with open(f"{out}/mismatch{rank}.txt", "w") as f:
        f.write("\n".join(errors))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
