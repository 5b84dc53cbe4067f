"""PAPO inside TRL: :class:`PapoGRPOTrainer` is TRL's ``GRPOTrainer`` whose loss receives
papo's per-token reweighted advantages (B × T) instead of the sequence-level ones (B).

    trainer = PapoGRPOTrainer(model=model, args=GRPOConfig(...), reward_funcs=reward,
                              train_dataset=data, processing_class=tok,
                              papo="unix:///run/papo.sock", papo_run_id="run-1")
    trainer.train()

Once per generation batch (``_generate_and_score_completions``, after TRL's own GRPO
advantages), every completion token gets the six row statistics of the sampling policy's logits
(:mod:`papo_client.stats`, divided by TRL's ``temperature``), the sequence's advantage, the
completion mask as ``mask``, and one ``reweight`` request goes to ``papo serve`` with
``step`` = the generation's index (global_step · gradient_accumulation_steps / (steps_per_generation
· num_iterations)); the reply's ``reweighted_advantage`` replaces ``advantages``, which TRL's
``_compute_loss`` accepts as (B, T) and uses for every micro-batch and iteration of that
generation. With several processes (accelerate, torchrun) the request is the exact
data-parallel one (:func:`papo_client.ddp.reweight`): every rank's weights are those of
one process that saw all the tokens. Resuming from a checkpoint sends an earlier step again,
which papo answers with a rollback and the weights of the first time.

Where the logits come from, precisely: TRL 1.16 never materializes them. Its loss forward
(``_get_per_token_logps_and_entropies``) runs the fused LM head of ``add_fused_lm_head``, which
returns only per-token ``log_probs`` and ``entropy`` and runs after the advantages are fixed;
and with ``gradient_accumulation_steps % (steps_per_generation · num_iterations) == 0`` and no
vLLM importance sampling, ``_generate_and_score_completions`` makes no scoring forward at all
(``old_per_token_logps`` is None). So this trainer makes one no-grad forward of the backbone per
generation batch, and projects its last hidden states through the LM head chunk by chunk
(``row_stats_from_hidden``: the [B·T, V] logits never exist at once). That forward is the cost
papo adds besides the round trip (bench/RESULTS.md). Models whose head TRL rescales
(``final_logit_softcapping``, ``logit_scale``) are refused: the statistics would not be those of
the logits TRL samples from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch
from trl.trainer.grpo_trainer import GRPOTrainer

from . import ddp
from .client import Client
from .protocol import Reply, Requests
from .stats import row_stats_from_hidden
from .tokens import reweighted, token_table


class PapoGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with papo's token-level advantages. papo: a :class:`Client` (or
    FlightClient), or an address for one; papo_run_id names the run (its state on the server);
    papo_request: further request keywords (``method="papo"``, ``config={"lambda": 0.3}``)."""

    def __init__(
        self,
        *args: Any,
        papo: Requests | str,
        papo_run_id: str,
        papo_request: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.papo: Requests = Client(papo) if isinstance(papo, str) else papo
        self.papo_run_id = papo_run_id
        self.papo_request = dict(papo_request or {})
        config = self.accelerator.unwrap_model(self.model).config.get_text_config()
        for key in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier"):
            if getattr(config, key, None) not in (None, 1.0):
                raise ValueError(
                    f"papo trl: the model's {key} = {getattr(config, key)} rescales the logits TRL samples "
                    "from; PapoGRPOTrainer computes the statistics of the plain LM head only"
                )

    def papo_step(self) -> int:
        """The papo step of the generation batch being scored: its index among the run's
        generations, from the checkpointed global step (so a resumed run sends it again)."""
        args: Any = self.args  # GRPOConfig
        generate_every = args.steps_per_generation * self.num_iterations
        return int(self.state.global_step * args.gradient_accumulation_steps // generate_every)

    @torch.no_grad()
    def papo_row_stats(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The six statistics [B·T] of the current policy's logits (÷ temperature) at every
        completion position, from one no-grad backbone forward and the LM head in chunks."""
        model = self.accelerator.unwrap_model(self.model)
        head = model.get_output_embeddings()
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        k = completion_ids.size(1)
        chunk = self.args.per_device_train_batch_size
        parts: list[dict[str, torch.Tensor]] = []
        for a in range(0, input_ids.size(0), chunk):
            with self.accelerator.autocast():
                hidden = model.base_model(
                    input_ids=input_ids[a : a + chunk],
                    attention_mask=attention_mask[a : a + chunk],
                    use_cache=False,
                ).last_hidden_state[:, -k - 1 : -1]
                # the head under the same autocast as TRL's loss forward: the logits TRL trains on
                parts.append(
                    row_stats_from_hidden(
                        hidden.reshape(-1, hidden.size(-1)),
                        head.weight,
                        completion_ids[a : a + chunk].reshape(-1),
                        self.temperature,
                        bias=head.bias,
                    )
                )
        return {c: torch.cat([p[c] for p in parts]) for c in parts[0]}

    def papo_table(self, output: Mapping[str, Any]) -> pa.Table:
        """The reweight request of a generation batch (TRL's output of
        ``_generate_and_score_completions``)."""
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        mask = completion_mask if "tool_mask" not in output else completion_mask * output["tool_mask"]
        stats = self.papo_row_stats(
            output["prompt_ids"], output["prompt_mask"], completion_ids, completion_mask
        )
        table = token_table(
            stats,
            completion_ids,
            output["advantages"],
            mask,
            step=self.papo_step(),
            temperature=self.temperature,
            sequence_offset=self.accelerator.process_index * completion_ids.size(0),
            group_size=int(self.num_generations or 1),
        )
        md = dict(table.schema.metadata)
        md[b"papo.clip_low"] = repr(float(self.epsilon_low)).encode()
        md[b"papo.clip_high"] = repr(float(self.epsilon_high)).encode()
        return table.replace_schema_metadata(md)

    def papo_reweight(self, table: pa.Table) -> Reply:
        """Sends the request (the data-parallel path with several processes) and returns the
        reply."""
        return ddp.reweight(self.papo, table, self.papo_rank_run_id(), **self.papo_request)

    def papo_rank_run_id(self) -> str:
        """The run this process's requests name: papo_run_id, and with several processes
        ``<papo_run_id>.rank<i>``: each rank keeps its own state on the server (one server per
        process, or one shared), all equal since the step's figures are global."""
        if self.accelerator.num_processes == 1:
            return self.papo_run_id
        return f"{self.papo_run_id}.rank{self.accelerator.process_index}"

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output: dict[str, Any] = super()._generate_and_score_completions(inputs)
        if self.model is None or not self.model.training:
            return output  # evaluation: TRL's own advantages, no run state touched
        reply = self.papo_reweight(self.papo_table(output))
        output["advantages"] = reweighted(reply.data, output["completion_ids"].float())
        return output
