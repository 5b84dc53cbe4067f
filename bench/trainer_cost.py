"""What papo costs a trainer per step (issue 20, "Measure"), on this machine's CPU:

1. the six statistics in torch (papo_client.stats.row_stats) against the entropy the trainer
   computes anyway (log_softmax, then −Σ p log p), on [T, V = 151,936] bfloat16 logits;
2. the round trip of a 1M-token row-statistics reweight request to `papo serve` (unix socket);
3. in the TRL loop of python/tests (tiny Qwen2, CPU): the share of a training step spent in
   papo's statistics forward and in its request.

    python/.venv/bin/python bench/trainer_cost.py [--papo bin/papo]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python" / "tests"))

from papo_client import serve  # noqa: E402
from papo_client.stats import COLUMNS, row_stats  # noqa: E402


def best(f, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def stats_vs_entropy(t: int = 256, v: int = 151_936) -> None:
    z = torch.randn(t, v).to(torch.bfloat16)
    ids = torch.randint(v, (t,))

    def entropy() -> torch.Tensor:
        logp = torch.log_softmax(z.float() / 0.7, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    te = best(entropy)
    ts = best(lambda: row_stats(z, ids, temperature=0.7, chunk_rows=64))
    print(
        f"stats vs entropy, T = {t}, V = {v}, bf16, {torch.get_num_threads()} threads: "
        f"entropy {t / te:,.0f} tokens/s, row_stats {t / ts:,.0f} tokens/s ({ts / te:.2f}× the entropy)"
    )


def round_trip(papo: str, tokens: int = 1 << 20) -> None:
    rng = np.random.default_rng(1)
    v = 151_936
    cols = {
        "logit_max": rng.normal(10, 1, tokens).astype(np.float32),
        "sum_exp_rest": rng.uniform(0.5, 50, tokens).astype(np.float32),
        "sum_exp_v": -rng.uniform(0.5, 60, tokens).astype(np.float32),
        "sum_exp2": np.ones(tokens, np.float32) * 1.2,
        "sum_exp2_v": -rng.uniform(0.01, 0.5, tokens).astype(np.float32),
    }
    cols["sampled_logit"] = cols["logit_max"] - rng.uniform(0, 3, tokens).astype(np.float32)
    table = pa.table(
        {c: cols[c] for c in COLUMNS}
        | {
            "token_id": rng.integers(v, size=tokens).astype(np.int32),
            "advantage": rng.normal(size=tokens).astype(np.float32),
            "step": np.zeros(tokens, np.int64),
        }
    )
    with (
        tempfile.TemporaryDirectory() as d,
        serve(papo, state_dir=Path(d), args=["--device", "cpu"]) as s,
        s.client() as c,
    ):
        c.analyze(table.slice(0, 1000))  # warm
        k = iter(range(100))
        t = best(
            lambda: c.reweight(
                table.set_column(
                    table.schema.get_field_index("step"), "step", pa.array(np.full(tokens, next(k), np.int64))
                ),
                run_id="bench",
            )
        )
    print(
        f"round trip, reweight of {tokens:,} row-statistics tokens ({table.nbytes / 1e6:.0f} MB) over a unix "
        f"socket: {t * 1e3:.0f} ms, {tokens / t / 1e6:.2f} M tokens/s"
    )


def trl_loop(papo: str) -> None:
    import trl_common

    class Timed(trl_common.RecordingTrainer):
        spent: ClassVar[dict[str, float]] = {"stats": 0.0, "request": 0.0}

        def papo_row_stats(self, *a, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = super().papo_row_stats(*a, **k)
            self.spent["stats"] += time.perf_counter() - t0
            return out

        def papo_reweight(self, table):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = super().papo_reweight(table)
            self.spent["request"] += time.perf_counter() - t0
            return out

    with (
        tempfile.TemporaryDirectory() as d,
        serve(papo, state_dir=Path(d) / "s", args=["--device", "cpu"]) as s,
    ):
        tr = trl_common.trainer(s.address, d + "/out", steps=6, cls=Timed)
        t0 = time.perf_counter()
        tr.train()
        total = time.perf_counter() - t0
    st, rq = Timed.spent["stats"], Timed.spent["request"]
    print(
        f"TRL loop (tiny Qwen2, CPU, 6 steps, {total:.2f} s): statistics forward {st / total:.1%}, "
        f"papo request {rq / total:.1%} of the training time"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--papo", default=str(REPO / "bin" / "papo"))
    a = ap.parse_args()
    os.environ.setdefault("PAPO_TOKEN", "")
    stats_vs_entropy()
    round_trip(a.papo)
    trl_loop(a.papo)
