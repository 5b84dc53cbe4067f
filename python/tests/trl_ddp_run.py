"""One rank of the 2-process TRL test (started by torch.distributed.run from test_trl.py):
trains PapoGRPOTrainer against the test's papo serve and writes each step's request table and
reply (rank<i>-step<k>-{table,reply}.arrow) to OUT."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

import trl_common


def main(address: str, out: str) -> None:
    def record(trainer: trl_common.RecordingTrainer) -> None:
        rank = trainer.accelerator.process_index
        for k, (table, reply) in enumerate(zip(trainer.tables, trainer.replies, strict=True)):
            for name, t in (("table", table), ("reply", reply.data)):
                with (
                    pa.OSFile(f"{out}/rank{rank}-step{k}-{name}.arrow", "wb") as f,
                    pa.ipc.new_file(f, t.schema) as w,
                ):
                    w.write_table(t)

    trainer = trl_common.trainer(address, out + "/ckpt", run_id="ddp", per_device=4, steps=2)
    trainer.train()
    record(trainer)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
