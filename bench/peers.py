"""The peers of papo's CPU engine, timed on the logits papo timed (papo bench --peers).

    python3 peers.py DIR T V THREADS REPS

DIR holds logits.f32 (T×V float32, row-major) and ids.i64 (T int64 sampled token ids). For each
peer and each thread count in THREADS (comma-separated) this prints one JSON object per line:
{"peer", "threads", "seconds" (best of REPS after a warm-up), "entropy", "logprob"} (the outputs,
float64 lists, for papo to check against its own), or {"peer", "skipped": reason}. The peers are
what RL trainers run on CPU today:

- torch verl-style: verl's entropy_from_logits (softmax, then logsumexp − Σ p·z) and
  logprobs_from_logits_v2 (gather, minus a per-row logsumexp), verl/utils/torch_functional.py;
- torch TRL-style: TRL's entropy_from_logits (log_softmax in chunks of 128 rows, −Σ e^{logp}·logp)
  and selective_log_softmax (gather, minus a per-row logsumexp), trl/trainer/utils.py;
- NumPy: max, exp(z − max), then the same sums, float32 (NumPy does not thread);
- torch.sum: a read of the same array, as a memory reference (GB/s, no outputs).
"""
import json
import sys
import time

import numpy as np


def best_of(fn, reps):
    fn()  # warm-up: allocator, thread pool
    best = None
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best, out


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    d, T, V, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    threads = [int(t) for t in threads.split(",")]
    z = np.fromfile(d + "/logits.f32", dtype=np.float32, count=T * V).reshape(T, V)
    ids = np.fromfile(d + "/ids.i64", dtype=np.int64, count=T)

    def numpy_peer():
        m = z.max(axis=1, keepdims=True)
        u = z - m
        e = np.exp(u)
        s = e.sum(axis=1)
        h = np.log(s) - (e * u).sum(axis=1) / s
        lp = u[np.arange(T), ids] - np.log(s)
        return h, lp

    sec, (h, lp) = best_of(numpy_peer, reps)
    emit({"peer": "NumPy", "threads": 1, "seconds": sec, "entropy": h.astype(float).tolist(),
          "logprob": lp.astype(float).tolist(), "version": np.__version__})

    try:
        import torch
        import torch.nn.functional as F
    except Exception as exc:  # noqa: BLE001 - any import failure means: no torch peer
        for p in ("torch verl-style", "torch TRL-style", "torch.sum"):
            emit({"peer": p, "skipped": "torch is not importable by %s: %s" % (sys.executable, exc)})
        return
    logits = torch.from_numpy(z)
    labels = torch.from_numpy(ids)

    def gathered_logprob():
        lab = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
        return lab - lse

    def verl():
        pd = torch.nn.functional.softmax(logits, dim=-1)
        ent = torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)
        return ent, gathered_logprob()

    def trl():
        ents = []
        for chunk in logits.split(128, dim=0):
            logps = F.log_softmax(chunk, dim=-1)
            ents.append(-(torch.exp(logps) * logps).sum(-1))
        return torch.cat(ents), gathered_logprob()

    with torch.no_grad():
        for n in threads:
            torch.set_num_threads(n)
            for name, fn in (("torch verl-style", verl), ("torch TRL-style", trl)):
                sec, (h, lp) = best_of(fn, reps)
                emit({"peer": name, "threads": n, "seconds": sec, "entropy": h.double().tolist(),
                      "logprob": lp.double().tolist(), "version": torch.__version__})
            sec, _ = best_of(lambda: logits.sum(), reps)
            emit({"peer": "torch.sum", "threads": n, "seconds": sec, "version": torch.__version__})


if __name__ == "__main__":
    main()
