"""papo_client.stats ≡ `papo analyze --row-stats` on random, peaked, −inf and ±1e4 rows (issue 20,
test 3, one process; the tensor-parallel merge in two Gloo processes: test_tp.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import torch
from conftest import read_arrow, run_papo

from papo_client.stats import COLUMNS, row_stats

V = 1000


def hard_rows(rng: np.random.Generator) -> np.ndarray:
    """Rows of logits: random, a +40 spike, flat, some −inf, ±1e4, scaled by 30."""
    rows = [rng.normal(size=V) for _ in range(6)]
    spike = rng.normal(size=V)
    spike[7] += 40
    rows.append(spike)
    rows.append(np.zeros(V))
    neg = rng.normal(size=V)
    neg[::3] = -np.inf
    rows.append(neg)
    rows.append(rng.choice([-1e4, 1e4], size=V))
    rows.append(30 * rng.normal(size=V))
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_row_stats_equal_papo(papo_bin: str, tmp_path: Path, temperature: float) -> None:
    rng = np.random.default_rng(5)
    z = hard_rows(rng)
    ids = np.array(
        [int(np.nanargmax(r)) if i % 2 else int(rng.integers(V)) for i, r in enumerate(z)], np.int32
    )
    ids[8] = 1  # an id whose logit is finite in the −inf row (index 1 is not a multiple of 3)
    table = pa.table(
        {"logits": pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), V), "token_id": pa.array(ids)}
    )
    table = table.replace_schema_metadata({"papo.temperature": str(temperature)})
    src, out = tmp_path / "in.arrow", tmp_path / "rs.arrow"
    with pa.OSFile(str(src), "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    run_papo(papo_bin, "analyze", str(src), "--row-stats", str(out), "--device", "cpu", "--quiet")
    want = read_arrow(out)
    got = row_stats(torch.from_numpy(z), torch.from_numpy(ids), temperature=temperature, chunk_rows=4)
    for c in COLUMNS:
        w, g = want[c].to_numpy(), got[c].double().numpy()
        # float32 accumulation against papo's float64: 1e-5 relative, or 1e-5 absolute for values
        # near 0 (sum_exp_rest of a peaked row is ~1e-17: only its absolute error means anything
        # in float32).
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=c)


def test_row_stats_any_dtype() -> None:
    z = torch.from_numpy(hard_rows(np.random.default_rng(9))[:6])
    ids = torch.arange(6)
    ref = row_stats(z, ids)
    for dtype in (torch.float16, torch.bfloat16):
        got = row_stats(z.to(dtype), ids)
        exact = row_stats(z.to(dtype).float(), ids)  # the same rounded logits, in float32
        for c in COLUMNS:
            torch.testing.assert_close(got[c], exact[c], rtol=1e-6, atol=1e-6)
            assert torch.isfinite(got[c]).all() and got[c].shape == ref[c].shape
