"""One closed GRPO loop on a toy task, with papo called every step the way a trainer calls it.

The task: a prompt is a target t; the answer is L = 5 tokens of a V = 16 vocabulary read as the
numbers 0..15, and its reward is −|Σ answer − t| / 8 (verifiable: computed from the answer
alone). The policy is an embedding of the prompt as the GRU's first hidden state, an embedding
of the previous token as its input, and a linear output layer ("head") to the 16 logits.

A step: 16 prompts × 8 samples at τ = 1; GRPO advantages (reward minus the group mean, over the
group's standard deviation); the six row statistics of every token's logits (papo_client.stats)
sent to ``papo serve`` as a reweight request (the arm's method and configuration; η = 1, so that
predicted_dH is "per unit learning rate"); then μ = 2 epochs of the PPO loss on the reweighted
advantages, the token-mean −Σ min(r·Ã, clip(r)·Ã)/N. The forward pass of the second epoch gives
every token's entropy after the first update (``entropy_after``, the same rows), which is what the
same-token measurement and ``papo report`` use.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from papo_client import Client
from papo_client.stats import row_stats

V = 16  # vocabulary: the numbers 0..15
L = 5  # answer length
PROMPTS = 16  # prompts per step
SAMPLES = 8  # samples per prompt (GRPO group)
HIDDEN = 32
MAX_TARGET = (V - 1) * L
BOS = V  # the input token of the first position
CLIP = 0.2  # PPO ε (both sides)
EPOCHS = 2  # μ: updates per batch
# The task's prompts: every step trains on all 16 (targets 10, 13, …, 55). Drawing 16 of the 56
# targets at random instead moves a step's mean entropy by 0.09 nats (std, measured at a fixed
# policy) against 0.015 for a fixed set: the phase signal would measure the draw, not the policy.
TARGETS = torch.arange(10, 10 + 3 * PROMPTS, 3)


class Policy(nn.Module):
    """Embedding + GRU + linear head over V tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.prompt = nn.Embedding(MAX_TARGET + 1, HIDDEN)
        self.token = nn.Embedding(V + 1, HIDDEN)
        self.gru = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, V)

    def hidden(self, targets: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """The head's input h [B, L, HIDDEN] at every position of the given answers."""
        bos = torch.full((answers.shape[0], 1), BOS, dtype=torch.long)
        inputs = torch.cat([bos, answers[:, :-1]], dim=1)
        h0 = torch.tanh(self.prompt(targets))[None]
        out, _ = self.gru(self.token(inputs), h0)
        return cast(torch.Tensor, out)

    @torch.no_grad()
    def sample(self, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        h = torch.tanh(self.prompt(targets))[None]
        prev = torch.full((targets.shape[0], 1), BOS, dtype=torch.long)
        answer = []
        for _ in range(L):
            out, h = self.gru(self.token(prev), h)
            p = torch.softmax(self.head(out[:, 0]), dim=-1)
            prev = torch.multinomial(p, 1, generator=gen)
            answer.append(prev)
        return torch.cat(answer, dim=1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Per sequence: (r − group mean) / (group std + 1e-6), groups of SAMPLES consecutive rows."""
    g = rewards.view(PROMPTS, SAMPLES)
    a = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6)
    return a.reshape(-1)


def context_counts(targets: torch.Tensor, answers: torch.Tensor) -> np.ndarray:
    """For every token, how many tokens of the batch share its context (prompt and prefix):
    those rows have the same hidden state, so the same logits, and one row's update moves all."""
    counts: dict[tuple[int, ...], int] = {}
    keys = []
    t = targets.tolist()
    a = answers.tolist()
    for i in range(len(t)):
        for j in range(L):
            k = (t[i], *a[i][:j])
            counts[k] = counts.get(k, 0) + 1
            keys.append(k)
    return np.array([counts[k] for k in keys], dtype=np.float64)


@dataclass
class Arm:
    """A reweighting method as the trainer configures it."""

    name: str
    method: str  # papo's --method (none for vanilla)
    config: dict[str, Any] = field(default_factory=dict)  # papo.config JSON
    native_klcov: float = 0.0  # KL-Cov's penalty in the loss itself (ratio), 0: off
    target: float | None = None  # H* of a target-mode arm (for the tracking error)


@dataclass
class StepLog:
    step: int
    mean_entropy: float  # H̄ of the step's tokens (what papo's phase sees)
    mean_entropy_after: float  # H̄ of the same tokens after the first update
    reward: float  # mean reward of the step's samples
    phi: float  # φ_k from papo's step summary
    ema: float  # E_k from papo's step summary
    predicted: float  # Σ w·ΔĤ(η=1) over the step's tokens, × the head-SGD η of each token
    predicted_shared: float  # the same, each token's term × its context count
    predicted_unit: float  # Σ w·ΔĤ with η = 1 (what papo reports)


@dataclass
class TokenCheck:
    """One token's own update against its own entropy change."""

    optimizer: str
    predicted: float
    realized: float


@dataclass
class RunResult:
    arm: str
    optimizer: str
    seed: int
    target: float | None
    steps: list[StepLog]
    tokens: list[TokenCheck]
    rows: pa.Table | None  # the input rows of every step with entropy_after (for papo report)


OPTIMIZERS = ("head-sgd", "sgd", "adam")
LEARNING_RATES = {"head-sgd": 1.0, "sgd": 0.75, "adam": 2e-3}


def make_optimizer(name: str, model: Policy, lr: float) -> torch.optim.Optimizer:
    if name == "head-sgd":
        return torch.optim.SGD(model.head.parameters(), lr=lr)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"closedloop: optimizer {name!r}: want one of {', '.join(OPTIMIZERS)}")


def ppo_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, first_epoch: bool
) -> torch.Tensor:
    ratio = torch.exp(logp - old_logp)
    if first_epoch:
        return -(ratio * adv).mean()  # r = 1 here; the clip cannot bind
    return -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * adv).mean()


def klcov_penalty(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, ratio: float, coef: float = 1.0
) -> torch.Tensor:
    """KL-Cov (Cui et al. 2025) in the loss: coef·|log π − log π_old| on the ⌊ratio·N⌋ (≥ 1)
    tokens of largest (A − mean A)(log π − mean log π)."""
    with torch.no_grad():
        cov = (adv - adv.mean()) * (logp - logp.mean())
        k = max(int(ratio * len(adv)), 1)
        top = torch.topk(cov, k).indices
    return coef * (logp[top] - old_logp[top]).abs().sum() / len(adv)


def rows_table(
    stats: dict[str, torch.Tensor], answers: torch.Tensor, adv: torch.Tensor, step: int
) -> pa.Table:
    n = answers.numel()
    cols: dict[str, Any] = {c: pa.array(s.numpy().astype(np.float64)) for c, s in stats.items()}
    cols["token_id"] = pa.array(answers.reshape(-1).numpy().astype(np.int64))
    cols["advantage"] = pa.array(adv.numpy().astype(np.float64))
    cols["step"] = pa.array(np.full(n, step, dtype=np.int64))
    cols["sequence_id"] = pa.array(np.repeat(np.arange(PROMPTS * SAMPLES, dtype=np.int64), L))
    cols["group_id"] = pa.array(np.repeat(np.arange(PROMPTS, dtype=np.int64), SAMPLES * L))
    cols["position"] = pa.array(np.tile(np.arange(L, dtype=np.int64), PROMPTS * SAMPLES))
    return pa.table(cols).replace_schema_metadata({"papo.temperature": "1", "papo.lr": "1"})


def head_eta(h: torch.Tensor, lr: float, n: int) -> torch.Tensor:
    """η of one token's own last-layer SGD step on the token-mean loss: α(|h|² + 1)/N
    (weight and bias: dz = (α/N)·A·(e_a − π)·(|h|² + 1))."""
    return lr * (h.double().pow(2).sum(-1) + 1) / n


def token_checks(
    model: Policy,
    opt_name: str,
    opt: torch.optim.Optimizer,
    lr: float,
    targets: torch.Tensor,
    answers: torch.Tensor,
    adv: torch.Tensor,
    unit_pred: np.ndarray,
    picks: np.ndarray,
) -> list[TokenCheck]:
    """For each picked token, one optimizer step on that token's loss alone (−Ã·log π_a / N, as
    its share of the batch's loss), against the change of that token's own entropy. The
    prediction is papo's ΔĤ per unit η times the head-SGD η of the token."""
    n = answers.numel()
    out = []
    with torch.no_grad():
        h = model.hidden(targets, answers).reshape(n, HIDDEN)
        z = model.head(h)
    eta = head_eta(h, lr, n)
    for t in picks.tolist():
        seq, pos = divmod(t, L)
        pred = float(eta[t]) * float(unit_pred[t])
        if opt_name == "head-sgd":
            # Exact: the head's step moves this row's logits by η·Ã·(e_a − π).
            zt = z[t].double()
            p = torch.softmax(zt, -1)
            e = F.one_hot(answers.reshape(-1)[t], V).double()
            dz = eta[t] * float(adv[t]) * (e - p)
            realized = float(entropy(zt + dz) - entropy(zt))
        else:
            # Adam carries its moments from earlier steps: the token's own effect is the step with
            # its gradient minus the same step with a zero gradient.
            h_with = own_step(model, opt_name, opt, lr, targets, answers, seq, pos, float(adv[t]) / n)
            h_without = own_step(model, opt_name, opt, lr, targets, answers, seq, pos, 0.0)
            realized = h_with - h_without
        out.append(TokenCheck(opt_name, pred, realized))
    return out


def own_step(
    model: Policy,
    opt_name: str,
    opt: torch.optim.Optimizer,
    lr: float,
    targets: torch.Tensor,
    answers: torch.Tensor,
    seq: int,
    pos: int,
    scale: float,
) -> float:
    """The entropy of token (seq, pos) after one step of a copy of model and opt on the loss
    −scale·log π_a of that token alone."""
    m = copy.deepcopy(model)
    o = make_optimizer(opt_name, m, lr)
    o.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    hs = m.hidden(targets[seq : seq + 1], answers[seq : seq + 1])[0, pos]
    logp = torch.log_softmax(m.head(hs), -1)[answers[seq, pos]]
    (-scale * logp).backward()  # type: ignore[no-untyped-call]
    o.step()
    with torch.no_grad():
        after = m.head(m.hidden(targets[seq : seq + 1], answers[seq : seq + 1])[0, pos])
    return float(entropy(after))


def run(
    client: Client,
    arm: Arm,
    opt_name: str,
    seed: int,
    steps: int,
    check_every: int = 0,
    check_tokens: int = 32,
    keep_rows: bool = False,
    lr: float | None = None,
) -> RunResult:
    """Trains one policy for steps steps with arm's reweighting through papo."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 2)
    model = Policy()
    lr = LEARNING_RATES[opt_name] if lr is None else lr
    opt = make_optimizer(opt_name, model, lr)
    run_id = re.sub(r"[^A-Za-z0-9._-]", "_", f"{arm.name}-{opt_name}-{seed}")
    logs: list[StepLog] = []
    checks: list[TokenCheck] = []
    kept: list[pa.Table] = []
    for step in range(steps):
        targets = TARGETS.repeat_interleave(SAMPLES)
        answers = model.sample(targets, gen)
        rewards = -(answers.sum(1) - targets).abs().double() / 8
        adv = grpo_advantages(rewards).repeat_interleave(L).float()
        n = answers.numel()
        ids = answers.reshape(-1)

        with torch.no_grad():
            h = model.hidden(targets, answers).reshape(n, HIDDEN)
            logits = model.head(h)
            old_logp = torch.log_softmax(logits, -1).gather(1, ids[:, None])[:, 0]
        table = rows_table(row_stats(logits, ids), answers, adv, step)
        reply = client.reweight(
            table, run_id=run_id, method=arm.method, config=arm.config, reset_state=step == 0
        )
        out = reply.data
        radv = torch.from_numpy(
            out.column("reweighted_advantage").to_numpy(zero_copy_only=False).astype(np.float32)
        )
        weight = out.column("weight").to_numpy(zero_copy_only=False).astype(np.float64)
        h_before = out.column("entropy").to_numpy(zero_copy_only=False).astype(np.float64)
        unit = weight * out.column("predicted_dH").to_numpy(zero_copy_only=False).astype(np.float64)
        phi = float(reply.summary.column("phase")[0].as_py())
        ema = float(reply.summary.column("ema_entropy")[0].as_py())

        if check_every and step % check_every == 0:
            picks = rng.choice(n, size=min(check_tokens, n), replace=False)
            checks += token_checks(model, opt_name, opt, lr, targets, answers, radv, unit, picks)

        eta = head_eta(h, lr, n).numpy()
        shared = context_counts(targets, answers)
        after = None
        for epoch in range(EPOCHS):
            logits_e = model.head(model.hidden(targets, answers).reshape(n, HIDDEN))
            logp = torch.log_softmax(logits_e, -1).gather(1, ids[:, None])[:, 0]
            if epoch == 1:
                after = entropy(logits_e.detach()).numpy()
            loss = ppo_loss(logp, old_logp, radv, epoch == 0)
            if arm.native_klcov:
                loss = loss + klcov_penalty(logp, old_logp, adv, arm.native_klcov)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        assert after is not None
        logs.append(
            StepLog(
                step=step,
                mean_entropy=float(h_before.mean()),
                mean_entropy_after=float(after.mean()),
                reward=float(rewards.mean()),
                phi=phi,
                ema=ema,
                predicted=float((eta * unit).sum()),
                predicted_shared=float((eta * unit * shared).sum()),
                predicted_unit=float(unit.sum()),
            )
        )
        if keep_rows:
            kept.append(table.append_column("entropy_after", pa.array(after)))
    rows = pa.concat_tables(kept) if kept else None
    return RunResult(arm.name, opt_name, seed, arm.target, logs, checks, rows)


def same_token_fit(steps: list[StepLog], shared: bool = False, skip: int = 0) -> tuple[float, float]:
    """Pearson r and least-squares slope of the realized change of the step's mean entropy on the
    same tokens against the mean predicted change (per token)."""
    n = PROMPTS * SAMPLES * L
    x = np.array([(s.predicted_shared if shared else s.predicted) / n for s in steps[skip:]])
    y = np.array([s.mean_entropy_after - s.mean_entropy for s in steps[skip:]])
    return corr_slope(x, y)


def corr_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan, math.nan
    r = float(np.corrcoef(x, y)[0, 1])
    slope = float(np.polyfit(x, y, 1)[0])
    return r, slope
