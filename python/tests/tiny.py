"""A tiny Qwen2-architecture causal LM built from a config and a word-level tokenizer built
here: no download (HF_HUB_OFFLINE=1), for the TRL and verl tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "one", "two", "three", "yes", "no"]
SPECIAL = ["<pad>", "<eos>", "<unk>"]


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.padding_side = "left"
    return fast


def model(seed: int = 0, vocab: int = len(SPECIAL) + len(WORDS)) -> Qwen2ForCausalLM:
    """Qwen2 with 2 layers of width 32: a few milliseconds a forward on a CPU."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config).float()


def dataset(n: int = 8) -> Dataset:
    prompts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(3)) for i in range(n)]
    return Dataset.from_dict({"prompt": prompts})


def reward(completions: list[str], **_: object) -> list[float]:
    """Counts the colour words: varied enough within a group for non-zero GRPO advantages."""
    return [float(sum(w in ("red", "green", "blue") for w in c.split())) for c in completions]
