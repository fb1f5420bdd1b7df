"""Padding-free SFT packing gives the loss and gradients of the padded batch, for sdpa and eager attention."""

import pytest
import torch

from alignkit.data.collate import collate_sft, collate_sft_packed
from alignkit.losses.sft import nll_sum
from alignkit.models.forward import next_token_logps

EXAMPLES = [
    {"input_ids": [5, 6, 7, 8, 9], "labels_mask": [False, False, True, True, True]},
    {"input_ids": [10, 11, 12], "labels_mask": [False, True, True]},
    {"input_ids": [13, 14, 15, 16, 17, 18, 19], "labels_mask": [False, False, False, True, True, True, True]},
]


def test_packed_layout_by_hand():
    batch = collate_sft_packed(EXAMPLES[:2], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert batch["labels_mask"].tolist() == [[False, False, True, True, True, False, True, True]]
    assert batch["num_tokens"] == 5 == collate_sft(EXAMPLES[:2], pad_id=0)["num_tokens"]
    mask = batch["attention_mask"][0, 0]
    assert mask[6].tolist() == [False] * 5 + [True, True, False]  # token 11 sees 10 and itself only


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_loss_and_gradients_equal_padded(implementation):
    from alignkit.models.tiny import build_model, train_tokenizer

    tokenizer = train_tokenizer(["User: hello there\nAssistant: general kenobi"] * 10, vocab_size=300)
    losses, grads = [], []
    for collate in (collate_sft, collate_sft_packed):
        model = build_model(tokenizer, size="100k", seed=0)
        model.config._attn_implementation = implementation
        logps, scored, _ = next_token_logps(model, collate(EXAMPLES, 0))
        loss = nll_sum(logps, scored)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
