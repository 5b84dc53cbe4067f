"""papo_client.verl on verl's own objects, for real (issue 20, test 5): a DataProto of a tiny
Qwen2's sampled responses, verl's GRPO advantages, the actor-side statistics from the logits
verl computes its entropy from; checked against the CLI (bin/papo) on the same logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import tiny
import torch
from conftest import read_arrow, run_papo
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils import torch_functional as verl_F

from papo_client import verl as papo_verl
from papo_client.server import Server

TAU = 0.7
FLAGS = ["--phase-mode", "target", "--target-entropy", "5"]  # φ > 0: weights ≠ 1
CONFIG = {"phase": {"mode": "target", "target_entropy": 5.0}}
PROMPTS, N, T = 2, 4, 6


def rollout(seed: int) -> tuple[DataProto, torch.Tensor]:
    """verl's batch of PROMPTS × N sampled responses (T tokens, right-padded after <eos>) and
    the actor's logits at the response positions [B, T, V] before the temperature."""
    model, tok = tiny.model(), tiny.tokenizer()
    enc = tok(
        [tiny.dataset(PROMPTS)["prompt"][i] for i in range(PROMPTS) for _ in range(N)], return_tensors="pt"
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        seqs = model.generate(
            **enc, do_sample=True, temperature=TAU, max_new_tokens=T, min_new_tokens=T, pad_token_id=0,
            eos_token_id=None,
        )  # fmt: skip
        prompt_len = enc["input_ids"].shape[1]
        responses = seqs[:, prompt_len:]
        logits = model(input_ids=seqs).logits[:, prompt_len - 1 : -1]
    eos = (responses == tok.eos_token_id).int()
    # verl's response_mask: the tokens up to and including the first <eos>; truncate the rest
    after = (eos.cumsum(-1) - eos) > 0
    responses = responses.masked_fill(after, 0)
    mask = (~after).long()
    score = torch.tensor(tiny.reward([tok.decode(r[m.bool()]) for r, m in zip(responses, mask, strict=True)]))
    last = mask.sum(-1) - 1
    rewards = torch.zeros(responses.shape, dtype=torch.float32)
    rewards[torch.arange(len(last)), last] = score
    data = DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "token_level_rewards": rewards},
        non_tensors={"uid": np.array([f"p{i}" for i in range(PROMPTS) for _ in range(N)], dtype=object)},
    )
    return data, logits


def verl_grpo(data: DataProto) -> None:
    """verl's own driver-side ``compute_advantage`` (ray_trainer) with the GRPO estimator, as
    ``RayPPOTrainer.fit`` calls it."""
    out = compute_advantage(data, adv_estimator=core_algos.AdvantageEstimator.GRPO, num_repeat=N)
    assert out.batch["advantages"].shape == data.batch["responses"].shape
    data.batch["advantages"], data.batch["returns"] = out.batch["advantages"], out.batch["returns"]


def write_logits(path: Path, data: DataProto, logits: torch.Tensor, step: int = 0) -> None:
    """The same tokens as an input of raw logits for the CLI (papo.temperature = TAU)."""
    b, t, v = logits.shape
    flat = pa.array(logits.float().reshape(-1).numpy())
    table = pa.table(
        {
            "logits": pa.FixedSizeListArray.from_arrays(flat, v),
            "token_id": pa.array(data.batch["responses"].reshape(-1).numpy().astype(np.int32)),
            "advantage": pa.array(data.batch["advantages"].reshape(-1).numpy().astype(np.float32)),
            "mask": pa.array(data.batch["response_mask"].reshape(-1).numpy().astype(bool)),
            "step": pa.array(np.full(b * t, step, dtype=np.int64)),
        }
    ).replace_schema_metadata({"papo.temperature": repr(TAU)})
    with pa.OSFile(str(path), "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table)


def actor(data: DataProto, logits: torch.Tensor) -> torch.Tensor:
    """The actor's step: logits ÷ τ as verl's engine scales them, verl's entropy, and papo's
    statistics from the same tensor into data.batch. Returns verl's entropy [B, T]."""
    b, t, v = logits.shape
    scaled = (logits / TAU).reshape(-1, v)
    entropy = verl_F.entropy_from_logits(scaled)
    for k, s in papo_verl.actor_row_stats(scaled, data.batch["responses"].reshape(-1)).items():
        data.batch[k] = s.reshape(b, t)
    return entropy.reshape(b, t)


def test_actor_stats_equal_papo_analyze(papo_bin: str, tmp_path: Path) -> None:
    data, logits = rollout(3)
    verl_grpo(data)
    entropy = actor(data, logits)
    write_logits(tmp_path / "in.arrow", data, logits)
    run_papo(
        papo_bin, "analyze", str(tmp_path / "in.arrow"), "-o", str(tmp_path / "out.arrow"),
        "--row-stats", str(tmp_path / "stats.arrow"), "--device", "cpu", "--quiet",
    )  # fmt: skip
    want = read_arrow(tmp_path / "stats.arrow")
    for c in papo_verl.COLUMNS:
        got = data.batch[papo_verl.PREFIX + c].reshape(-1).double().numpy()
        assert np.abs(got - want[c].to_numpy()).max() <= 1e-5, c
    # and verl's own entropy is papo's on those logits
    h = read_arrow(tmp_path / "out.arrow")["entropy"].to_numpy()
    assert np.abs(entropy.reshape(-1).numpy() - h).max() <= 1e-5


def test_driver_reweight_equals_papo_reweight(server: Server, papo_bin: str, tmp_path: Path) -> None:
    """Two steps of one run: after verl's GRPO advantages, papo_client.verl's token-level
    advantages equal one `papo reweight --state` run over the same tokens' logits."""
    for step in range(2):
        data, logits = rollout(10 + step)
        verl_grpo(data)
        actor(data, logits)
        grpo = data.batch["advantages"].clone()
        mask = data.batch["response_mask"].bool()
        write_logits(tmp_path / f"in{step}.arrow", data, logits, step)  # verl's advantages, before papo's
        with server.client() as c:
            reply = papo_verl.reweight_advantages(
                data, c, run_id="verl", step=step, temperature=TAU, config=CONFIG
            )
        assert reply.status["papo.last_step"] == str(step)
        assert reply.data.column_names == ["reweighted_advantage"]  # papo.columns: what the driver uses
        new = data.batch["advantages"]
        if step == 0:
            assert (~mask).any()  # the seed samples <eos> early: masked tokens to check
        assert torch.equal(new[~mask], grpo[~mask])  # outside response_mask: verl's value
        assert (new[mask] != grpo[mask]).any()  # papo's weights are not all 1
        run_papo(
            papo_bin, "reweight", str(tmp_path / f"in{step}.arrow"), "-o", str(tmp_path / f"out{step}.arrow"),
            "--state", str(tmp_path / "state.json"), "--device", "cpu", "--quiet", *FLAGS,
        )  # fmt: skip
        cli = read_arrow(tmp_path / f"out{step}.arrow")["reweighted_advantage"].to_numpy()
        got = new.reshape(-1).numpy()
        assert np.abs(got - cli).max() <= 1e-5, step
