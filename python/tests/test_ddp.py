"""The exact data-parallel path (issue 20, tests 1 and 3): ``stats`` and ``reweight`` with global
statistics through the Client ≡ `papo stats` / `papo reweight --global-stats` bit for bit, the
ranks' outputs ≡ one process, and :func:`papo_client.ddp.global_stats` in two Gloo processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from conftest import read_arrow, run_papo
from test_client import assert_same, load

from papo_client.server import Server

HERE = Path(__file__).parent
FLAGS = ["--phase-mode", "target", "--target-entropy", "5", "--renormalize", "--device", "cpu", "--quiet"]
CONFIG = {"phase": {"mode": "target", "target_entropy": 5.0}, "renormalize": True}


def write(table: pa.Table, path: Path) -> Path:
    with pa.OSFile(str(path), "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    return path


def total(parts: list[pa.Table]) -> pa.Table:
    """The ranks' partials summed column by column in float64 (integers kept), step kept."""
    cols = []
    for field in parts[0].schema:
        if field.name == "step":
            cols.append(parts[0]["step"])
            continue
        s = sum(p[field.name].to_numpy().astype(np.float64) for p in parts)
        cols.append(pa.array(np.asarray(s).astype(field.type.to_pandas_dtype())))
    return pa.Table.from_arrays(cols, schema=parts[0].schema)


def test_ranks_equal_cli_and_one_process(
    server: Server, rollouts: Path, papo_bin: str, tmp_path: Path
) -> None:
    table = load(rollouts)
    rank_of = pc.bit_wise_and(table["sequence_id"], 1)
    ranks = [table.filter(pc.equal(rank_of, r)) for r in range(2)]
    assert all(len(r) for r in ranks)
    with server.client() as c:
        parts = [c.stats(r, config=CONFIG).data for r in ranks]
        for r, rank in enumerate(ranks):
            write(rank, tmp_path / f"rank{r}.arrow")
            run_papo(
                papo_bin,
                "stats",
                str(tmp_path / f"rank{r}.arrow"),
                "-o",
                str(tmp_path / f"part{r}.arrow"),
                *FLAGS,
            )
            assert_same(parts[r], read_arrow(tmp_path / f"part{r}.arrow"))
        glob = total(parts)
        write(glob, tmp_path / "global.arrow")
        replies = [
            c.reweight(rank, run_id=f"dp.rank{r}", config=CONFIG, global_stats=glob)
            for r, rank in enumerate(ranks)
        ]
        one = c.reweight(table, run_id="one", config=CONFIG).data
    for r in range(2):
        run_papo(
            papo_bin, "reweight", str(tmp_path / f"rank{r}.arrow"), "-o", str(tmp_path / f"out{r}.arrow"),
            "--global-stats", str(tmp_path / "global.arrow"), *FLAGS,
        )  # fmt: skip
        assert_same(replies[r].data, read_arrow(tmp_path / f"out{r}.arrow"))
    # the ranks' outputs put back in the input's order ≡ one process over every token
    got = {col: np.empty(len(table), np.float64) for col in ("weight", "reweighted_advantage")}
    for r, reply in enumerate(replies):
        rows = np.flatnonzero(rank_of.to_numpy() == r)
        for col in got:
            got[col][rows] = reply.data[col].to_numpy()
    for col, values in got.items():
        want = one[col].to_numpy()
        assert np.abs(values - want).max() <= 1e-6, col
    assert (one["weight"].to_numpy() != 1).any()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_global_stats_in_two_gloo_processes(server: Server, rollouts: Path, tmp_path: Path) -> None:
    """Each of two processes all-reduces its own partials: both get the exact sum, in the
    partials' schema; ranks holding different steps get an error, not a wrong sum."""
    table = load(rollouts)
    rank_of = pc.bit_wise_and(table["sequence_id"], 1)
    with server.client() as c:
        parts = [c.stats(table.filter(pc.equal(rank_of, r)), config=CONFIG).data for r in range(2)]
    for r, p in enumerate(parts):
        write(p, tmp_path / f"part{r}.arrow")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), str(HERE / "ddp_run.py"), str(tmp_path),
    ]  # fmt: skip
    p = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr[-4000:]
    want = total(parts)
    for r in range(2):
        got = read_arrow(tmp_path / f"global{r}.arrow")
        assert got.schema == want.schema
        assert_same(got, want)
        err = (tmp_path / f"mismatch{r}.txt").read_text()
        assert "steps" in err, err
