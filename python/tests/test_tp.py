"""The tensor-parallel merge of papo_client.stats in two Gloo processes (issue 20, test 3): each
rank holds half the vocabulary, as Megatron and verl shard the output layer; the merged
statistics equal `papo analyze --row-stats` on the whole rows within the one-process tolerance."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from conftest import read_arrow, run_papo
from test_stats import V, hard_rows

from papo_client.stats import COLUMNS

HERE = Path(__file__).parent
D = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def papo_row_stats(papo_bin: str, z: np.ndarray, ids: np.ndarray, tau: float, path: Path) -> pa.Table:
    """The statistics papo's CPU engine computes in float64 from the whole rows z [T, V]."""
    table = pa.table(
        {"logits": pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), V), "token_id": pa.array(ids)}
    ).replace_schema_metadata({"papo.temperature": repr(tau)})
    with pa.OSFile(str(path / "in.arrow"), "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    run_papo(papo_bin, "analyze", str(path / "in.arrow"), "--row-stats", str(path / "rs.arrow"), "--quiet")
    return read_arrow(path / "rs.arrow")


TAUS = (1.0, 0.7)


def test_two_ranks_equal_whole_rows(papo_bin: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    z = hard_rows(rng)
    half = z[0].copy()
    half[: V // 2] = -np.inf  # rank 0's whole shard banned: its max is −Inf
    top = rng.normal(size=V).astype(np.float32)
    top[V // 2 + 3] += 40  # the peak on rank 1, the sampled token on rank 0
    z = np.vstack([z, half, top]).astype(np.float32)
    ids = rng.integers(V, size=len(z)).astype(np.int32)
    ids[8] = 1  # finite in the −inf row
    ids[-2] = V // 2 + 1  # finite in the half-banned row
    ids[-1] = 5
    hidden = rng.normal(size=(13, D)).astype(np.float32)
    head = (3 * rng.normal(size=(V, D))).astype(np.float32)
    hz = (hidden.astype(np.float64) @ head.T.astype(np.float64)).astype(np.float32)
    hids = rng.integers(V, size=len(hidden)).astype(np.int32)
    np.savez(tmp_path / "in.npz", logits=z, ids=ids, hidden=hidden, head=head, hidden_ids=hids)

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
        "127.0.0.1", "--master_port", str(free_port()), str(HERE / "tp_run.py"),
        str(tmp_path / "in.npz"), str(tmp_path / "out.npz"), *map(repr, TAUS),
    ]  # fmt: skip
    p = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr[-4000:]
    got = np.load(tmp_path / "out.npz")
    for tau in TAUS:
        for name, logits, tokens in (("logits", z, ids), ("hidden", hz, hids)):
            (tmp_path / f"{name}{tau}").mkdir()
            want = papo_row_stats(papo_bin, logits, tokens, tau, tmp_path / f"{name}{tau}")
            for c in COLUMNS:
                np.testing.assert_allclose(
                    got[f"{name}.{tau!r}.{c}"],
                    want[c].to_numpy(),
                    rtol=1e-5,
                    atol=1e-5,
                    err_msg=f"{name} τ={tau} {c}",
                )
