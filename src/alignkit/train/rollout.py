"""Rollouts for on-policy RL (PPO, GRPO): sample responses, lay each prompt and response out as one sequence,
and read per-token log-probs, values and sequence scores of those sequences from any model.

A rollout row is the prompt, left-padded, followed by the response, right-padded:

    [pad pad p p p | r r r EOS pad]      attention_mask 0 0 1 1 1 1 1 1 1 0
    <- P columns -> <- R columns ->      response_mask            1 1 1 1 0

so the response starts at the same column P in every row, and every per-token quantity of the response is a
[N, R] tensor in DESIGN.md section 2 names. Position ids count real tokens only, so a left-padded prompt
sees the positions it would see alone. The logits at column P - 1 + t predict response token t.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch

from alignkit.generation.sampler import SamplingSettings, generate
from alignkit.models.heads import sequence_rewards, token_scores
from alignkit.models.load import unwrap
from alignkit.ops.logprobs import token_entropy, token_logps


@dataclass
class Rollout:
    """N sampled responses; with n samples per prompt, rows i*n .. i*n+n-1 share prompt i."""

    input_ids: torch.Tensor  # [N, P+R] prompt (left-padded) then response (right-padded)
    attention_mask: torch.Tensor  # [N, P+R] long
    position_ids: torch.Tensor  # [N, P+R]
    response_mask: torch.Tensor  # [N, R] bool: response tokens, incl. the EOS
    truncated: torch.Tensor  # [N] bool: cut at max_new_tokens without EOS or a stop string
    texts: list[str]  # decoded responses
    rows: list[int]  # index of each sample's prompt row in the data

    @property
    def prompt_width(self) -> int:
        return self.input_ids.shape[1] - self.response_mask.shape[1]

    @property
    def response_ids(self) -> torch.Tensor:  # [N, R]
        return self.input_ids[:, self.prompt_width:]

    @property
    def lengths(self) -> torch.Tensor:  # [N] response tokens
        return self.response_mask.sum(-1)

    def subset(self, index: torch.Tensor | list[int]) -> Rollout:
        """The rows at `index` (a minibatch, or the groups that survive a filter)."""
        index = torch.as_tensor(index, dtype=torch.long)
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                picked[f.name] = value[index.to(value.device)]
            else:
                picked[f.name] = [value[i] for i in index.tolist()]
        return Rollout(**picked)


def sample_rollout(policy, tokenizer, examples: list[dict], max_new_tokens: int, temperature: float,
                   stop_strings: tuple[str, ...] = (), n: int = 1) -> Rollout:
    """Sample n responses to each example's `prompt_ids` (from data.tokenize.tokenize_prompts)."""
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, n=n,
                                stop_strings=tuple(stop_strings))
    generations = generate(policy, tokenizer, [e["prompt_ids"] for e in examples], settings)
    attention_mask = torch.cat([generations.prompt_mask, generations.response_mask], dim=1).long()
    return Rollout(
        input_ids=torch.cat([generations.prompt_ids, generations.response_ids], dim=1),
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
        response_mask=generations.response_mask,
        truncated=generations.truncated,
        texts=generations.texts,
        rows=[e["row"] for e in examples for _ in range(n)],
    )


def greedy_rollouts(policy, tokenizer, examples: list[dict], max_new_tokens: int,
                    stop_strings: tuple[str, ...] = (), batch_size: int = 64):
    """Greedy answers to `examples`, `batch_size` prompts at a time, as Rollouts (for held-out evaluation);
    the policy is in eval mode while it answers."""
    with torch.no_grad(), evaluating(policy):
        for first in range(0, len(examples), batch_size):
            yield sample_rollout(policy, tokenizer, examples[first : first + batch_size], max_new_tokens, 0.0,
                                 stop_strings)


def response_logps(model, rollout: Rollout, temperature: float = 1.0,
                   with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(response token t | prompt, earlier tokens) [N, R], 0 off the response; and the entropy of
    each position's distribution [N, R] (detached) when asked.

    The logits are divided by the sampling temperature, so the log-probs are those of the distribution the
    tokens were drawn from (the ratio PPO takes must compare like with like). Only the R + 1 last columns
    reach the output head.
    """
    width = rollout.response_mask.shape[1]
    logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                   position_ids=rollout.position_ids, logits_to_keep=width + 1, use_cache=False).logits
    logits = logits[:, :-1]  # [N, R, V]: column P - 1 + t predicts response token t
    if temperature != 1.0:
        logits = logits / temperature
    logps = token_logps(logits, rollout.response_ids)
    logps = torch.where(rollout.response_mask, logps, torch.zeros_like(logps))
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = token_entropy(logits.detach())
    return logps, entropy


def reference_logps(policy, reference, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """log pi_ref of the response tokens [N, R]: from the frozen `reference`, or, when it is None, from the
    policy with its LoRA adapter switched off (which is the starting model, with no second copy in memory)."""
    if reference is not None:
        return response_logps(reference, rollout, temperature)[0]
    with unwrap(policy).disable_adapter():
        return response_logps(policy, rollout, temperature)[0]


def response_values(value_model, rollout: Rollout) -> torch.Tensor:
    """The critic's value of each response token's state, V(prompt, tokens before t): [N, R], 0 off it."""
    scores = token_scores(value_model, rollout.input_ids, rollout.attention_mask, rollout.position_ids)
    width = rollout.response_mask.shape[1]
    values = scores[:, rollout.prompt_width - 1 : rollout.prompt_width - 1 + width]  # [N, R]
    return torch.where(rollout.response_mask, values, torch.zeros_like(values))


@torch.no_grad()
def sequence_scores(reward_model, rollout: Rollout) -> torch.Tensor:
    """A reward model's score of each whole sequence, read at its last real token (the EOS when the
    response stopped by itself): [N]."""
    return sequence_rewards(reward_model, rollout.input_ids, rollout.attention_mask, rollout.position_ids)


@contextlib.contextmanager
def evaluating(*models):
    """Eval mode inside (no dropout while scoring), the previous modes restored after."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def minibatches(count: int, size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """A random split of range(count) into minibatches of `size` (the last may be smaller)."""
    order = torch.randperm(count, generator=generator)
    return list(order.split(size))
