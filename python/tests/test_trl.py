"""PapoGRPOTrainer inside TRL, for real (issue 20, test 4): a tiny Qwen2 model trains on a CPU
against a ``papo serve`` started by the fixture."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import trl_common
from conftest import read_arrow

from papo_client.server import Server
from papo_client.tokens import reweighted

HERE = Path(__file__).parent


def rows(
    token_ids: torch.Tensor, advantages: torch.Tensor
) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
    """The batch as a sorted list of (completion, advantages): TRL shuffles the generation batch
    before the loss; identical completions of one group have identical advantages."""
    return sorted((tuple(t.tolist()), tuple(a.tolist())) for t, a in zip(token_ids, advantages, strict=True))


def sent(table: pa.Table, reply: pa.Table) -> tuple[torch.Tensor, torch.Tensor]:
    """The request's completion tokens [B, T] and the reply's reweighted advantages [B, T]."""
    t = int(pa.compute.max(table["position"]).as_py()) + 1
    ids = torch.tensor(table["token_id"].to_pylist()).reshape(-1, t)
    return ids, reweighted(reply, ids.float())


def test_trains_with_papo_advantages(server: Server, tmp_path: Path) -> None:
    trainer = trl_common.trainer(server.address, str(tmp_path / "out"), run_id="trl")
    # the statistics too, to check them (the plugin's default reply is reweighted_advantage alone)
    trainer.papo_request["columns"] = ("reweighted_advantage", "entropy", "logprob", "weight")
    trainer.train()
    assert len(trainer.replies) == 3 and len(trainer.losses) == 3
    assert [r.status["papo.last_step"] for r in trainer.replies] == ["0", "1", "2"]
    changed = 0
    for table, reply, loss, (entropy, logp) in zip(
        trainer.tables, trainer.replies, trainer.losses, trainer.reference, strict=True
    ):
        ids, want = sent(table, reply.data)
        # the statistics are those of the policy's logits at the completion positions
        for col, ref in (("entropy", entropy), ("logprob", logp)):
            got = torch.from_numpy(reply.data[col].to_numpy()).double().reshape(ref.shape)
            assert (got - ref).abs().max().item() <= 1e-5, col
        assert loss["advantages"].shape == loss["completion_ids"].shape  # (B, T), not TRL's (B,)
        # exactly the server's reweighted_advantage, token by token
        assert rows(loss["completion_ids"], loss["advantages"]) == rows(ids, want)
        changed += int((reply.data["weight"].to_numpy() != 1).sum())
    assert changed > 0, "every weight is 1: the test could not tell papo's advantages from TRL's"
    state = json.loads((Path(server.state_dir) / "trl.json").read_text())
    assert [s["step"] for s in state["steps"]] == [0, 1, 2]
    trained = [int(pa.compute.sum(t["mask"]).as_py()) for t in trainer.tables]
    assert [s["tokens"] for s in state["steps"]] == trained


def test_resume_rolls_back_and_gives_the_same_weights(server: Server, tmp_path: Path) -> None:
    first = trl_common.trainer(server.address, str(tmp_path / "out"), run_id="resume", save=True)
    first.train()
    again = trl_common.trainer(server.address, str(tmp_path / "out"), run_id="resume", save=True)
    again.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-1"))
    assert len(again.replies) == 2
    assert again.replies[0].status.get("papo.rollback"), again.replies[0].status
    assert [r.status["papo.last_step"] for r in again.replies] == ["1", "2"]
    for a, b, t1, t2 in zip(first.replies[1:], again.replies, first.tables[1:], again.tables, strict=True):
        assert t2.equals(t1)  # the same tokens and statistics after the resume
        # the plugin asks for the one column it uses (papo.columns)
        assert a.data.column_names == b.data.column_names == ["reweighted_advantage"]
        assert b.data["reweighted_advantage"].equals(a.data["reweighted_advantage"])


def free_port() -> int:
    """A loopback port free now (torchrun's static rendezvous waits forever on port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_equal_one(server: Server, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (Gloo on loopback): each rank's weights, through the
    stats → all_reduce → reweight path, equal one process reweighting both ranks' tokens."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)]),
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), str(HERE / "trl_ddp_run.py"), server.address, str(tmp_path),
    ]  # fmt: skip
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    with server.client() as c:
        for k in range(2):
            tables = [read_arrow(tmp_path / f"rank{r}-step{k}-table.arrow") for r in range(2)]
            ranks = [read_arrow(tmp_path / f"rank{r}-step{k}-reply.arrow") for r in range(2)]
            one = c.reweight(pa.concat_tables(tables), run_id="one", **trl_common.REQUEST).data
            got = pa.concat_tables(ranks)
            assert got.column_names == ["reweighted_advantage"]  # the plugin's reply (papo.columns)
            for col in ("reweighted_advantage",):
                want, have = one[col].to_numpy(), got[col].to_numpy()
                assert want.shape == have.shape
                assert abs(want - have).max() <= 1e-6, (k, col)
            assert (one["weight"].to_numpy() != 1).any()
    for r in range(2):
        state = json.loads((Path(server.state_dir) / f"ddp.rank{r}.json").read_text())
        assert [s["step"] for s in state["steps"]] == [0, 1]


if __name__ == "__main__":
    pytest.main([__file__])
