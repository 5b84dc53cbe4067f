"""The TRL test's trainer: PapoGRPOTrainer on the tiny model, recording what it sent to papo,
what came back and what reached ``_compute_loss``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import tiny
import torch
from trl import GRPOConfig

from papo_client import Client, Reply
from papo_client.trl import PapoGRPOTrainer

# φ > 0 from the first step (the tiny model's entropy is about 2.7 < H*): weights ≠ 1.
REQUEST = {"config": {"phase": {"mode": "target", "target_entropy": 5.0}}}


class RecordingTrainer(PapoGRPOTrainer):
    """Keeps every request table and reply, and the inputs of every ``_compute_loss``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tables: list[pa.Table] = []
        self.replies: list[Reply] = []
        self.losses: list[dict[str, torch.Tensor]] = []
        self.reference: list[tuple[torch.Tensor, torch.Tensor]] = []

    def papo_table(self, output: Mapping[str, Any]) -> pa.Table:
        """Also keeps the entropy and log π of the sampled tokens [B, T] from the model's own
        forward (full logits, ÷ temperature, under the trainer's autocast as TRL's loss forward),
        to check the statistics' positions and values."""
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        k = output["completion_ids"].size(1)
        with torch.no_grad(), self.accelerator.autocast():
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -k - 1 : -1].double()
        logp = torch.log_softmax(logits / self.temperature, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        sampled = logp.gather(-1, output["completion_ids"][..., None])[..., 0]
        self.reference.append((entropy, sampled))
        return super().papo_table(output)

    def papo_reweight(self, table: pa.Table) -> Reply:
        reply = super().papo_reweight(table)
        self.tables.append(table)
        self.replies.append(reply)
        return reply

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        keep = ("prompt_ids", "completion_ids", "advantages")
        self.losses.append({k: inputs[k].detach().clone() for k in keep})
        loss: torch.Tensor = super()._compute_loss(model, inputs)
        return loss


def trainer(
    address: str,
    output_dir: str,
    run_id: str = "trl",
    per_device: int = 8,
    steps: int = 3,
    save: bool = False,
    cls: type[RecordingTrainer] = RecordingTrainer,
) -> RecordingTrainer:
    args = GRPOConfig(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=per_device,
        num_generations=4,
        max_completion_length=6,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="steps" if save else "no",
        save_steps=1,
        use_cpu=True,
        seed=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    return cls(
        model=tiny.model(),
        args=args,
        reward_funcs=tiny.reward,
        train_dataset=tiny.dataset(),
        processing_class=tiny.tokenizer(),
        papo=Client(address),
        papo_run_id=run_id,
        papo_request=REQUEST,
    )
