"""Scalar heads on a causal-LM backbone: the reward model (one score per sequence, read at the last real
token) and the value model (one score per token).

Both are stored as a standard Hugging Face `*ForSequenceClassification` folder with one label, the format
TRL and OpenRLHF use, so plain transformers loads them. We do not use that class's own pooling, which finds
the last token by looking for the pad id and so breaks when pad == eos; we pool by the attention mask,
which gives the same score for left and right padding.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from alignkit.config import ModelSettings
from alignkit.errors import AlignkitError
from alignkit.models.load import (
    _add_lora,
    _enable_checkpointing,
    _readable_errors,
    _resolve_source,
    default_device,
    load_tokenizer,
    resolve_dtype,
)


def load_scalar_model(settings: ModelSettings, device: torch.device | None = None, *, new_head: bool):
    """A backbone with a 1-output linear head, and its tokenizer.

    new_head=True starts a reward model from a causal LM (the head is freshly initialised);
    new_head=False loads a trained reward model and refuses any folder that is not one.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    device = device or default_device()
    source = _resolve_source(settings.path)
    config = AutoConfig.from_pretrained(source, trust_remote_code=settings.trust_remote_code)
    if not new_head and not is_reward_config(config):
        raise AlignkitError(
            f"{settings.path} is not a reward model (its architectures are {config.architectures}, "
            f"with {getattr(config, 'num_labels', '?')} labels): train one with `alignkit reward`, "
            f"or point to the `final/` folder of a reward run"
        )
    tokenizer = load_tokenizer(settings)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    with _readable_errors(settings.path), _quiet_load_report(new_head):
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, dtype=resolve_dtype(settings.dtype, device),
            trust_remote_code=settings.trust_remote_code,
        )
    if new_head:
        # A small head keeps initial rewards near 0, as in InstructGPT's reward-model initialisation.
        head = score_head(model)
        torch.nn.init.normal_(head.weight, std=1.0 / (config.hidden_size + 1) ** 0.5)
    if settings.gradient_checkpointing:
        _enable_checkpointing(model)
    if settings.lora is not None:
        model = _add_lora(model, settings, task_type="SEQ_CLS")
    return model.to(device), tokenizer


@contextlib.contextmanager
def _quiet_load_report(expected_missing_head: bool):
    """transformers reports the new `score` head as MISSING; when we asked for a new head, that is no news."""
    from transformers.utils import logging

    before = logging.get_verbosity()
    if expected_missing_head:
        logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(before)


def is_reward_config(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in archs) and getattr(config, "num_labels", 0) == 1


def score_head(model: torch.nn.Module) -> torch.nn.Linear:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.score


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder() if hasattr(base, "get_decoder") else base.model


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last real token in each row, for left or right padding: [B, T] -> [B]."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.bool()).argmax(dim=1)


def token_scores(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The head applied at every position: [B, T] (values for a critic)."""
    hidden = backbone(model)(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids).last_hidden_state  # [B, T, H]
    return score_head(model)(hidden).squeeze(-1).float()


def sequence_rewards(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """One reward per sequence, read at its last real token: [B, T] -> [B]. Left-padded rows should pass
    position_ids that count real tokens only (RoPE models give the same scores either way)."""
    hidden = backbone(model)(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids).last_hidden_state  # [B, T, H]
    return pooled_rewards(model, hidden, attention_mask)


def pooled_rewards(model: torch.nn.Module, hidden: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """The head applied at each row's last real token: [B, T, H] -> [B]."""
    last = last_token_index(attention_mask)
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [B, H]
    return score_head(model)(pooled).squeeze(-1).float()


class TiedOutput(torch.nn.Module):
    """An output layer that is the input embedding matrix, as in a causal LM with tied embeddings."""

    def __init__(self, embedding: torch.nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden, self.embedding.weight)


def language_head(model: torch.nn.Module, settings: ModelSettings) -> torch.nn.Module:
    """The output layer of the causal LM a reward model starts from, to keep training it as a language model
    beside the reward head: the embeddings themselves when the model ties them, else a trainable copy of the
    LM's own output layer (not saved with the reward model)."""
    from transformers import AutoModelForCausalLM

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "tie_word_embeddings", False):
        return TiedOutput(base.get_input_embeddings())
    with _readable_errors(settings.path):
        lm = AutoModelForCausalLM.from_pretrained(_resolve_source(settings.path), dtype=base.dtype,
                                                  trust_remote_code=settings.trust_remote_code)
    head = lm.get_output_embeddings()
    if head is None:
        raise AlignkitError(f"{settings.path} has no output layer to train as a language model: "
                            f"set reward.lm_coef=0")
    return head.to(next(base.parameters()).device)


class SequenceScorer(torch.nn.Module):
    """A reward model as one module whose forward returns sequence_rewards, so that under DDP the whole
    computation runs inside the wrapper's forward and gradients are synchronised (calling the backbone and the
    head of a DDP-wrapped model directly would bypass DDP and fail). With `lm_head` it returns the rewards and
    every position's next-token logits ([B], [B, T, V]), from one pass of the backbone."""

    def __init__(self, model: torch.nn.Module, lm_head: torch.nn.Module | None = None):
        super().__init__()
        self.model = model
        self.lm_head = lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if self.lm_head is None:
            return sequence_rewards(self.model, input_ids, attention_mask)  # [B]
        hidden = backbone(self.model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pooled_rewards(self.model, hidden, attention_mask), self.lm_head(hidden).float()


def write_reward_stats(folder: Path, rewards: torch.Tensor) -> dict:
    """Save the mean and std of rewards on a reference set, so RL can normalise scores (reward_stats.json)."""
    stats = {"mean": rewards.mean().item(), "std": rewards.std().item() if rewards.numel() > 1 else 1.0,
             "count": rewards.numel()}
    (Path(folder) / "reward_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
