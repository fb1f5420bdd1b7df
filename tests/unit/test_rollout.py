"""train/rollout.py: the left-padded prompt + right-padded response layout read back against slow references
(each row alone, unpadded), and the sampling log-probs the rollout's forward must reproduce."""

import pytest
import torch

from alignkit.models.heads import sequence_rewards, token_scores
from alignkit.models.tiny import build_model, train_tokenizer
from alignkit.train.rollout import minibatches, response_logps, response_values, sample_rollout, sequence_scores

TEXTS = [f"User: what is {i} plus {i}?\nAssistant: it is {2 * i}. the cat sat on the mat" for i in range(200)]
PROMPTS = ["hi", "what is 3 plus 4 and then some more words", "the cat", "is 12 plus 12 24?"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=512)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model(tokenizer, size="100k", seed=0, initializer_range=0.2).eval()


@pytest.fixture(scope="module")
def scalar_model(tokenizer, tmp_path_factory):
    from alignkit.config import ModelSettings
    from alignkit.models.heads import load_scalar_model

    folder = tmp_path_factory.mktemp("base")
    build_model(tokenizer, size="100k", seed=1, initializer_range=0.2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model, _ = load_scalar_model(ModelSettings(path=str(folder)), torch.device("cpu"), new_head=True)
    torch.nn.init.normal_(model.score.weight, std=0.5)  # a head that makes positions differ clearly
    return model.eval()


def examples(tokenizer):
    rows = []
    for i, prompt in enumerate(PROMPTS):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        rows.append({"prompt_ids": tokenizer(text, add_special_tokens=False)["input_ids"], "row": i})
    return rows


def alone(rollout, i):
    """Row i without any padding: its real tokens, and where its response starts."""
    ids = rollout.input_ids[i][rollout.attention_mask[i].bool()]
    prompt_len = int(rollout.attention_mask[i, : rollout.prompt_width].sum())
    return ids[None], prompt_len


def test_layout_and_logps_match_each_row_alone(model, tokenizer):
    torch.manual_seed(0)
    ex = examples(tokenizer)
    rollout = sample_rollout(model, tokenizer, ex, max_new_tokens=10, temperature=0.7, n=2)
    assert rollout.rows == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not rollout.attention_mask[:, : rollout.prompt_width].bool().all()  # some prompts are padded
    assert (rollout.attention_mask[:, rollout.prompt_width:].bool() == rollout.response_mask).all()
    with torch.no_grad():
        logps, entropy = response_logps(model, rollout, temperature=0.7, with_entropy=True)
    assert logps.shape == rollout.response_mask.shape and (logps[~rollout.response_mask] == 0).all()
    for i in range(len(rollout.texts)):
        ids, prompt_len = alone(rollout, i)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float() / 0.7  # [T, V]
        length = int(rollout.response_mask[i].sum())
        targets = ids[0, prompt_len:]
        expected = logits[prompt_len - 1 : -1].log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
        assert torch.allclose(logps[i, :length], expected, atol=1e-4), i
        probs = logits[prompt_len - 1 : -1].softmax(-1)
        expected_entropy = -(probs * probs.log()).sum(-1)
        assert torch.allclose(entropy[i, :length], expected_entropy, atol=1e-4), i


def test_logps_at_temperature_one_equal_the_samplers(model, tokenizer):
    torch.manual_seed(1)
    from alignkit.generation.sampler import SamplingSettings, generate

    ex = examples(tokenizer)
    torch.manual_seed(3)
    generations = generate(model, tokenizer, [e["prompt_ids"] for e in ex], SamplingSettings(max_new_tokens=10))
    torch.manual_seed(3)
    rollout = sample_rollout(model, tokenizer, ex, max_new_tokens=10, temperature=1.0)
    assert torch.equal(rollout.response_ids, generations.response_ids)
    with torch.no_grad():
        logps, _ = response_logps(model, rollout)
    assert torch.allclose(logps, generations.logps, atol=1e-4)


def test_values_and_scores_sit_at_the_right_positions(model, scalar_model, tokenizer):
    torch.manual_seed(2)
    rollout = sample_rollout(model, tokenizer, examples(tokenizer), max_new_tokens=8, temperature=1.0)
    with torch.no_grad():
        values = response_values(scalar_model, rollout)
        scores = sequence_scores(scalar_model, rollout)
    for i in range(len(rollout.texts)):
        ids, prompt_len = alone(rollout, i)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            per_position = token_scores(scalar_model, ids, mask)[0]  # [T]
            whole = sequence_rewards(scalar_model, ids, mask)[0]
        length = int(rollout.response_mask[i].sum())
        # the value of response token t is read where the model has seen the prompt and tokens < t
        assert torch.allclose(values[i, :length], per_position[prompt_len - 1 : prompt_len - 1 + length], atol=1e-4)
        assert (values[i, length:] == 0).all()
        assert torch.allclose(scores[i], whole, atol=1e-4)  # read at the last real token


def test_subset_and_minibatches():
    gen = torch.Generator().manual_seed(0)
    parts = minibatches(10, 4, gen)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
