"""Sample responses from a causal LM with its KV cache: prefill left-padded prompts once, then a token a step.

It returns what an on-policy recipe needs: response ids and masks in DESIGN.md §2 names, and `logps`, the
log-probs of the sampled tokens under the model's own distribution (PPO's `old_logps`). Needs only torch and a
tokenizer / model with the transformers call conventions; it never imports transformers itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignkit.errors import AlignkitError


@dataclass
class SamplingSettings:
    """How to sample. temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1  # samples per prompt, consecutive in the output
    stop_strings: tuple[str, ...] = ()  # stop once the response text contains one; the text is cut before it
    seed: int | None = None  # seeds a torch.Generator; None uses the global RNG

    def __post_init__(self):
        if isinstance(self.stop_strings, str):
            raise AlignkitError(
                f"stop_strings={self.stop_strings!r} is one string: "
                f"pass a tuple, e.g. ({self.stop_strings!r},)"
            )
        self.stop_strings = tuple(self.stop_strings)
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature} must be >= 0 (0 is greedy)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p} must be in (0, 1] (1 switches it off)")
        if self.top_k < 0:
            problems.append(f"top_k={self.top_k} must be >= 0 (0 switches it off)")
        if self.n < 1:
            problems.append(f"n={self.n} must be >= 1")
        if any(not isinstance(stop, str) or not stop for stop in self.stop_strings):
            problems.append(f"stop_strings={self.stop_strings!r} must all be non-empty strings")
        if problems:
            raise AlignkitError("sampling settings: " + "; ".join(problems))


@dataclass
class Generations:
    """Sampled responses, B prompts x n samples; row i*n + j is sample j of prompt i.

    `logps` is log pi(token) under the model's own temperature-1, unfiltered distribution (log_softmax of the
    raw logits), not under the tempered / top-k / top-p distribution that was sampled from: that is the policy
    PPO's ratio pi_new / pi_old compares against. float32, 0 where `response_mask` is False.
    """

    prompt_ids: torch.Tensor  # [B*n, P] left-padded with pad_id
    prompt_mask: torch.Tensor  # [B*n, P] bool
    response_ids: torch.Tensor  # [B*n, R] right-padded with pad_id
    response_mask: torch.Tensor  # [B*n, R] bool: real response tokens, incl. the EOS / stop-completing one
    logps: torch.Tensor  # [B*n, R] float32
    truncated: torch.Tensor  # [B*n] bool: hit max_new_tokens without EOS or a stop string
    texts: list[str]  # decoded responses, without EOS and cut before the stop string


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, -inf elsewhere (Fan et al. 2018); k = 0 keeps all. [N, V]"""
    if k == 0 or k >= logits.shape[-1]:
        return logits
    kth_largest = torch.topk(logits, k, dim=-1).values[:, -1:]  # [N, 1]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens whose probability
    sums to >= p, always at least the most likely one; -inf elsewhere. [N, V] -> [N, V]"""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(-1)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs  # [N, V] probability of the tokens ranked above
    drop_sorted = mass_before >= p  # the top token has mass_before 0 < p, so it always stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None):
    """One token per row from raw logits [N, V] -> [N]: greedy at temperature 0, else tempered, filtered."""
    if settings.temperature == 0:
        return logits.argmax(-1)
    filtered = top_p_filter(top_k_filter(logits / settings.temperature, settings.top_k), settings.top_p)
    return torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: list[str] | list[list[int]], settings: SamplingSettings
) -> Generations:
    """Sample `settings.n` responses to each prompt. Strings go through the tokenizer's chat template as one
    user turn; lists of ints are used as given. The model is in eval mode while sampling, then put back."""
    pad_id, eos_id = _special_ids(tokenizer)
    device = next(model.parameters()).device
    prompt_rows = [row for row in _encode_prompts(tokenizer, prompts) for _ in range(settings.n)]
    prompt_ids, prompt_mask = _left_pad(prompt_rows, pad_id, device)
    generator = None
    if settings.seed is not None:
        generator = torch.Generator(device=device).manual_seed(settings.seed)
    was_training = model.training
    model.eval()
    try:
        response_ids, response_mask, logps, stopped = _decode(
            model, tokenizer, prompt_ids, prompt_mask, settings, generator, pad_id, eos_id
        )
    finally:
        model.train(was_training)
    texts = [
        _response_text(tokenizer, ids[mask].tolist(), eos_id, settings.stop_strings)
        for ids, mask in zip(response_ids, response_mask)
    ]
    return Generations(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        logps=logps,
        truncated=~stopped,
        texts=texts,
    )


def _decode(model, tokenizer, prompt_ids, prompt_mask, settings, generator, pad_id, eos_id):
    """The decoding loop: response_ids, response_mask, logps [N, R] and stopped [N] (EOS or stop string).

    Rows that finish leave the batch (with their KV cache rows) once an eighth of the live rows have
    finished, so the remaining steps compute only for rows still writing; transformers' `generate` keeps
    computing finished rows until the longest one ends.
    """
    n, width = len(prompt_ids), settings.max_new_tokens
    device = prompt_ids.device
    response_ids = torch.full((n, width), pad_id, dtype=torch.long, device=device)
    response_mask = torch.zeros((n, width), dtype=torch.bool, device=device)
    logps = torch.zeros((n, width), dtype=torch.float32, device=device)
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    rows = torch.arange(n, device=device)  # the output row of each row in the batch
    live = torch.ones(n, dtype=torch.bool, device=device)  # batch rows still writing
    attention_mask = prompt_mask.long()  # [n, P], grows by one column a step
    # Positions count real tokens only, so a left-padded prompt sees the same RoPE angles as it would alone.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [n, P]
    out = model(
        input_ids=prompt_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,  # only the last position's logits: the prefill never needs the rest
    )
    # transformers 5 renamed the KV cache `past_key_values` -> `cache` (the old name warns, and goes in 5.40):
    # the prefill's output tells which side of the rename this version is on.
    cache_name = "cache" if "cache" in out.keys() else "past_key_values"
    cache = out[cache_name]
    next_logits = out.logits[:, -1].float()  # [n_batch, V]
    next_position = attention_mask.sum(-1, keepdim=True)  # [n_batch, 1]
    can_compact = hasattr(cache, "batch_select_indices")
    taken = 0  # decoding steps taken: the output is cut to that width
    for step in range(width):
        taken = step + 1
        tokens = sample_next(next_logits, settings, generator)  # [n_batch]
        token_logps = next_logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
        writing = rows[live]
        response_ids[writing, step] = tokens[live]
        response_mask[writing, step] = True
        logps[writing, step] = token_logps[live]
        done = live & (tokens == eos_id)
        if settings.stop_strings:
            still = live.nonzero().flatten()  # decode only the rows still writing
            done[still] |= _hit_stop_string(tokenizer, response_ids[writing, : step + 1], settings.stop_strings)
        stopped[rows[done]] = True
        live &= ~done
        if not live.any() or step == width - 1:
            break
        if can_compact and int((~live).sum()) * 8 >= len(live):
            keep = live.nonzero().flatten()
            try:
                cache.batch_select_indices(keep)
            except NotImplementedError:  # a cache type that cannot drop rows: keep computing them
                can_compact = False
            else:
                rows, live, tokens = rows[keep], live[keep], tokens[keep]
                attention_mask, next_position = attention_mask[keep], next_position[keep]
        tokens = tokens.masked_fill(~live, pad_id)  # finished rows still in the batch read pad
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(tokens), 1)], dim=-1)
        out = model(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            use_cache=True,
            **{cache_name: cache},
        )
        cache = out[cache_name]
        next_logits = out.logits[:, -1].float()
        next_position = next_position + 1
    return response_ids[:, :taken], response_mask[:, :taken], logps[:, :taken], stopped


def _hit_stop_string(tokenizer, tokens: torch.Tensor, stop_strings) -> torch.Tensor:
    """[n] bool: rows whose response text so far (`tokens` [n, t]) contains a stop string."""
    return torch.tensor([any(stop in tokenizer.decode(row.tolist()) for stop in stop_strings) for row in tokens],
                        dtype=torch.bool, device=tokens.device)


def _response_text(tokenizer, ids: list[int], eos_id: int, stop_strings: tuple[str, ...]) -> str:
    if ids and ids[-1] == eos_id:
        ids = ids[:-1]
    text = tokenizer.decode(ids)
    cuts = [text.find(stop) for stop in stop_strings if stop in text]
    return text[: min(cuts)] if cuts else text


def _special_ids(tokenizer) -> tuple[int, int]:
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    if eos_id is None:
        raise AlignkitError("the tokenizer has no eos_token: set tokenizer.eos_token so responses can end")
    return (eos_id if pad_id is None else pad_id), eos_id  # no pad token: pad with EOS, as transformers does


def _encode_prompts(tokenizer, prompts) -> list[list[int]]:
    if not prompts:
        raise AlignkitError("generate got no prompts: pass a non-empty list of strings or token-id lists")
    rows = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        elif isinstance(prompt, (list, tuple)) and all(isinstance(token, int) for token in prompt):
            ids = list(prompt)
        else:
            raise AlignkitError(
                f"prompt {index} is a {type(prompt).__name__}: pass strings (chat-templated here) "
                "or lists of token ids"
            )
        if not ids:
            raise AlignkitError(f"prompt {index} has no tokens: a response needs at least one prompt token")
        rows.append(ids)
    return rows


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows: ids [N, P] and mask [N, P] bool."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = True
    return ids.to(device), mask.to(device)
