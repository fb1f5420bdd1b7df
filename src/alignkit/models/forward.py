"""Model-level forward helpers that turn a batch into the per-token quantities the losses take.

Kept apart from `losses/` (which never sees a model) so every recipe computes log-probs the same way.
"""

from __future__ import annotations

import torch

from alignkit.errors import AlignkitError
from alignkit.ops.logprobs import TOKENS_PER_CHUNK, logps_of_targets, shifted_logps


def next_token_logps(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward a right-padded batch; return (logps, scored_mask, logits), each for positions 1..T-1.

    logps[b, t] = log pi(input_ids[b, t+1] | input_ids[b, :t+1]); scored_mask marks the tokens the batch
    scores (`labels_mask` shifted by one), so padding and prompt tokens never count.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=_attention_mask_for(model, batch["attention_mask"]),
                   position_ids=batch.get("position_ids")).logits  # [B, T, V]
    logps = shifted_logps(logits, batch["input_ids"])  # [B, T-1]
    scored = batch["labels_mask"][:, 1:].to(logps.dtype)  # [B, T-1]
    return logps, scored, logits


def token_accuracy_sum(logits: torch.Tensor, input_ids: torch.Tensor, scored: torch.Tensor) -> float:
    """How many scored next tokens are the model's argmax prediction (TRL logs the mean as mean_token_accuracy)."""
    hits = logits[:, :-1].argmax(-1) == input_ids[:, 1:]
    return float((hits & scored.bool()).sum())


def pair_logps(
    model: torch.nn.Module, batch: dict, rows_per_chunk: int = TOKENS_PER_CHUNK
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed log-probs of each pair's responses from a `data.pairs.collate_pairs` batch (either layout).

    Returns (chosen_logps [B], rejected_logps [B], chosen_lengths [B], rejected_lengths [B]), where
    chosen_logps[b] = sum_t log pi(y_t | x, y_<t) over the chosen response, EOS included: the log pi(y|x)
    of DPO's implicit reward (Rafailov et al. 2023, eq. 7). The lengths let length-normalised losses average.

    The output head runs on the scored positions only: transformers 5 causal LMs take a boolean [B, T]
    `logits_to_keep`, select those hidden states ([U, H], row-major) and apply lm_head and any final logit
    scaling or softcapping of their own to them (`slice_logits_to_keep` in modeling_utils.py). Going through
    the model's own forward, rather than calling its decoder and lm_head apart, keeps peft adapters, DDP's
    gradient sync and FSDP2's unsharding hooks, which all hang on the top-level forward. No [B, T, V]
    logits exist at any point.
    """
    input_ids = batch["input_ids"]
    score_pos = batch["score_pos"]  # [N], flat into [rows * T]
    keep = torch.zeros(input_ids.numel(), dtype=torch.bool, device=input_ids.device)
    keep[score_pos] = True
    logit_row = keep.cumsum(0)[score_pos] - 1  # [N]: row of each scored token in the [U, V] logits
    logits = model(
        input_ids=input_ids,
        attention_mask=_attention_mask_for(model, batch["attention_mask"]),
        position_ids=batch["position_ids"],
        logits_to_keep=keep.view_as(input_ids),
        use_cache=False,
    ).logits  # [U, V]
    kept = int(keep.sum())
    if logits.ndim != 2 or logits.shape[0] != kept:
        raise AlignkitError(
            f"{type(_unwrap(model)).__name__} returned logits of shape {tuple(logits.shape)} for a boolean "
            f"logits_to_keep selecting {kept} positions (expected [{kept}, vocab]): its forward does not "
            "support transformers' slice_logits_to_keep; score it with models.forward.next_token_logps"
        )
    scored_logps = logps_of_targets(logits, batch["score_target"], rows_per_chunk, rows=logit_row)  # [N]
    # Summed in float64: float32's spacing at -7,000 (1,000 tokens at ~-7) is 5e-4, and the order of the
    # additions would otherwise show in the result.
    pairs = batch["num_pairs"]
    slot = batch["score_side"] * pairs + batch["score_pair"]  # [N]: chosen sums, then rejected sums
    sums = scored_logps.new_zeros(2 * pairs, dtype=torch.float64).index_add(0, slot, scored_logps.double())
    sums = sums.float()  # [2B]
    return sums[:pairs], sums[pairs:], batch["chosen_lengths"], batch["rejected_lengths"]


def _additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """Boolean mask -> 0 where allowed, float32 min elsewhere (eager attention adds it to the scores)."""
    blocked = torch.finfo(torch.float32).min
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, blocked)


# How each attention implementation takes a custom [B, 1, T, T] mask. transformers 5 hands a 4D mask to the
# attention function untouched (masking_utils._preprocess_mask_arguments returns it "as-is"): sdpa passes it
# to F.scaled_dot_product_attention, where bool means "attend"; eager computes `scores + attention_mask`, so a
# bool mask there would add 1.0 or 0.0 and mask nothing. flash-attention reads masks as 2D padding and flex
# attention wants a BlockMask, so neither can take one.
MASK_FORMS = {"sdpa": lambda allowed: allowed, "eager": _additive_mask}


def _attention_mask_for(model: torch.nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """A 2D padding mask as is; a 4D boolean mask in the form the model's attention takes."""
    if attention_mask.ndim == 2:
        return attention_mask
    config = _text_config(model)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in MASK_FORMS:
        raise AlignkitError(
            f"packed rows (dpo.layout shared_prompt / packed, sft data.packing) need a custom 4D attention mask, "
            f"which attn_implementation="
            f"{implementation!r} cannot take: load the model with attn_implementation='sdpa' or 'eager', "
            "or use dpo.layout=separate / data.packing=false"
        )
    width = attention_mask.shape[-1]
    window = _limited_attention_span(config)
    if window is not None and window < width:
        raise AlignkitError(
            f"packed rows pass one custom mask to every layer, so this model's local attention (window {window}) "
            f"would see past its window in rows of {width} tokens: use dpo.layout=separate / data.packing=false"
        )
    return MASK_FORMS[implementation](attention_mask)


def _limited_attention_span(config) -> int | None:
    """The sliding-window or chunk size of a model that has layers with local attention, else None."""
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "attention_chunk_size", None):
        return config.attention_chunk_size
    window = getattr(config, "sliding_window", None)
    # Configs with layer_types name their sliding layers; older ones (Mistral) slide whenever a window is set.
    sliding = "sliding_attention" in layer_types or (
        not layer_types and getattr(config, "use_sliding_window", True)
    )
    return window if window and sliding else None


def _text_config(model: torch.nn.Module):
    config = _unwrap(model).config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under DDP, torch.compile and peft wrappers (for its config and class name)."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod  # torch.compile
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()  # peft
        else:
            return model
