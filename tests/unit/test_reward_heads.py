"""Reward model pooling: the score is read at the last real token, whatever the padding side."""

import pytest
import torch

from alignkit.models.heads import last_token_index, sequence_rewards


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert last_token_index(left).tolist() == [4, 4, 4]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    from alignkit.models.tiny import build_model, train_tokenizer

    tokenizer = train_tokenizer(["User: hi\nAssistant: hello there, how are you?"] * 20, vocab_size=300)
    folder = tmp_path_factory.mktemp("lm")
    build_model(tokenizer, size="100k").save_pretrained(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1).eval()


def test_rewards_identical_for_left_and_right_padding(reward_model):
    torch.manual_seed(0)
    lengths = [5, 9, 3]
    seqs = [torch.randint(2, 250, (n,)).tolist() for n in lengths]
    width = max(lengths)
    right_ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    right_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    left_ids = torch.tensor([[0] * (width - len(s)) + s for s in seqs])
    left_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    with torch.no_grad():
        alone = torch.cat([sequence_rewards(reward_model, torch.tensor([s]), torch.ones(1, len(s))) for s in seqs])
        right = sequence_rewards(reward_model, right_ids, right_mask)
        left = sequence_rewards(reward_model, left_ids, left_mask)
    assert torch.allclose(right, alone, atol=1e-5) and torch.allclose(left, alone, atol=1e-5)
