"""Responses to evaluate: sampled from a model folder with alignkit's generation engine, or read from a column
of reference responses; and the log-probabilities of sampled responses under a model, for KL.

Loads models, so transformers is imported inside the functions, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.config import ModelSettings
from alignkit.errors import AlignkitError
from alignkit.generation.sampler import SamplingSettings, generate


@dataclass
class Responses:
    """n responses per prompt, sample j of prompt i at row i * n + j. The token fields exist only for
    responses a model generated."""

    texts: list[str]
    truncated: list[bool] | None = None  # hit max_new_tokens before EOS (the no-EOS rate)
    tokens: list[tuple[list[int], list[int]]] | None = None  # (prompt ids, response ids incl. EOS) per row
    logps: list[float] | None = None  # sum over response tokens of log pi(y_t | x, y_<t), when asked for

    @property
    def token_counts(self) -> list[int] | None:
        return None if self.tokens is None else [len(response) for _, response in self.tokens]


def load_frozen(path: str):
    """A causal LM in eval mode without gradients, and its tokenizer."""
    from alignkit.models.load import load_reference, load_tokenizer

    settings = ModelSettings(path=path)
    return load_reference(settings), load_tokenizer(settings)


def sample_responses(model_path: str, prompts: list[str], settings: SamplingSettings, batch_size: int = 64,
                     with_logps: bool = False) -> Responses:
    """settings.n responses to each prompt (chat-templated as one user turn); texts are stripped of the
    space a tokenizer may put first. with_logps also scores each response under the same model (for KL)."""
    model, tokenizer = load_frozen(model_path)
    texts, truncated, tokens = [], [], []
    for start in range(0, len(prompts), batch_size):
        out = generate(model, tokenizer, prompts[start : start + batch_size], settings)
        texts += [text.strip() for text in out.texts]
        truncated += out.truncated.tolist()
        tokens += [(p[pm].tolist(), r[rm].tolist()) for p, pm, r, rm in
                   zip(out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)]
    logps = sequence_logps(model, tokens, batch_size) if with_logps else None
    return Responses(texts, truncated, tokens, logps)


def reference_responses(texts: list[str], n: int) -> Responses:
    """Fixed responses (one per prompt) repeated to line up with n samples per prompt."""
    return Responses([text for text in texts for _ in range(n)])


@torch.inference_mode()
def sequence_logps(model, tokens: list[tuple[list[int], list[int]]], batch_size: int = 64) -> list[float]:
    """log pi(response | prompt) of each (prompt ids, response ids) row, summed over the response tokens
    (EOS included), through the same forward the trainers use (models.forward.next_token_logps)."""
    from alignkit.models.forward import next_token_logps

    device = next(model.parameters()).device
    sums: list[float] = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size]
        width = max(len(p) + len(r) for p, r in chunk)
        input_ids = torch.zeros(len(chunk), width, dtype=torch.long)
        attention_mask = torch.zeros(len(chunk), width, dtype=torch.long)
        labels_mask = torch.zeros(len(chunk), width, dtype=torch.bool)
        for i, (prompt, response) in enumerate(chunk):  # right-padded [prompt | response | pad]
            input_ids[i, : len(prompt) + len(response)] = torch.tensor(prompt + response)
            attention_mask[i, : len(prompt) + len(response)] = 1
            labels_mask[i, len(prompt) : len(prompt) + len(response)] = True
        batch = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
                 "labels_mask": labels_mask.to(device)}
        logps, scored, _ = next_token_logps(model, batch)  # [B, T-1] each
        sums += (logps.double() * scored).sum(-1).tolist()
    return sums


def kl_to_reference(policy: Responses, policy_path: str, reference_path: str,
                    batch_size: int = 64) -> list[float]:
    """Per-sample log pi(y|x) - log pi_ref(y|x) on the policy's own samples: the k1 estimator of
    KL(pi || pi_ref) summed over the response (Schulman 2020, "Approximating KL divergence"). Its mean
    estimates the KL only for samples drawn at temperature 1; at other temperatures it is the log-ratio
    on those samples."""
    if policy.tokens is None or policy.logps is None:
        raise ValueError("KL needs generated responses sampled with with_logps=True")
    from alignkit.models.load import load_tokenizer

    model, tokenizer = load_frozen(reference_path)
    if tokenizer.get_vocab() != load_tokenizer(ModelSettings(path=policy_path)).get_vocab():
        raise AlignkitError(
            f"--reference {reference_path} has a different tokenizer from the policy {policy_path}: "
            "KL compares token probabilities, so the reference must share the policy's vocabulary "
            "(use the model the policy was trained from, e.g. runs/sft/final)"
        )
    reference_logps = sequence_logps(model, policy.tokens, batch_size)
    return [p - r for p, r in zip(policy.logps, reference_logps)]

