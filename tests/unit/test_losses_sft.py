import math

import torch
import torch.nn.functional as F

from alignkit.losses.sft import nll_sum
from alignkit.ops.logprobs import shifted_logps, token_entropy, token_logps


def test_nll_sum_by_hand():
    # two scored tokens with p = 0.5 and p = 0.25; the third is masked out
    logps = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.1)]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert nll_sum(logps, mask).item() == torch.tensor(math.log(2) + math.log(4)).item()


def test_token_logps_match_log_softmax_gather():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, 11)
    labels = torch.randint(0, 11, (5, 7))
    expected = F.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logps(logits, labels, rows_per_chunk=2), expected, atol=1e-6)


def test_token_logps_by_hand():
    # logits [0, log 3] -> p = [1/4, 3/4]
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    out = token_logps(logits, torch.tensor([[1]]))
    assert abs(out.item() - math.log(0.75)) < 1e-6


def test_masked_sum_equals_cross_entropy_sum():
    torch.manual_seed(1)
    logits = torch.randn(3, 6, 13)
    ids = torch.randint(0, 13, (3, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]], dtype=torch.float)
    ours = nll_sum(shifted_logps(logits, ids), mask[:, 1:])
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, 13), targets.reshape(-1), reduction="sum")
    assert torch.allclose(ours, reference, atol=1e-5)


def test_entropy_uniform_and_peaked():
    logits = torch.zeros(1, 1, 8)
    assert abs(token_entropy(logits).item() - math.log(8)) < 1e-6
    peaked = torch.tensor([[[100.0, 0.0, 0.0]]])
    assert token_entropy(peaked).item() < 1e-6
