"""generation/sampler.py: the KV-cache decoding loop against slow references (one prompt at a time, a full
forward, transformers' own generate) and the sampling filters, stop rules and masks."""

import pytest
import torch

from alignkit.errors import AlignkitError
from alignkit.generation.sampler import (
    SamplingSettings,
    generate,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from alignkit.models.tiny import build_model, train_tokenizer

TEXTS = [f"User: what is {i} plus {i}?\nAssistant: it is {2 * i}. the cat sat on the mat" for i in range(200)]
# Prompts of different lengths, so the batch really is left-padded.
PROMPTS = ["hi", "what is 3 plus 4 and then some more words", "the cat", "is 12 plus 12 24?"]
EOS_ID = 1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny model's matmuls are too small to split; two threads on a busy 2-core machine are ~15x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=512)


@pytest.fixture(scope="module")
def model(tokenizer):
    # A wider init than the default so a random model's greedy output varies from token to token instead of
    # repeating one token, which would let a broken cache or position bug pass unnoticed.
    return build_model(tokenizer, size="100k", seed=0, initializer_range=0.2)


def greedy(max_new_tokens=12, **kwargs):
    return SamplingSettings(max_new_tokens=max_new_tokens, temperature=0.0, **kwargs)


def test_greedy_output_is_not_degenerate(model, tokenizer):
    # Guards the other tests: if every row repeated one token they could not tell the batch from a single row.
    out = generate(model, tokenizer, PROMPTS, greedy())
    assert all(len(set(row.tolist())) > 3 for row in out.response_ids)
    assert len({tuple(row.tolist()) for row in out.response_ids}) == len(PROMPTS)


def test_batched_left_padded_greedy_equals_one_prompt_at_a_time(model, tokenizer):
    batched = generate(model, tokenizer, PROMPTS, greedy())
    assert not batched.prompt_mask.all()  # some rows are padded
    assert (batched.prompt_ids[~batched.prompt_mask] == 0).all()
    for row, prompt in enumerate(PROMPTS):
        alone = generate(model, tokenizer, [prompt], greedy())
        assert alone.prompt_mask.all()
        assert batched.prompt_ids[row][batched.prompt_mask[row]].tolist() == alone.prompt_ids[0].tolist()
        assert batched.response_ids[row].tolist() == alone.response_ids[0].tolist()
        torch.testing.assert_close(batched.logps[row], alone.logps[0], atol=1e-4, rtol=0)


def test_string_prompt_goes_through_the_chat_template(model, tokenizer):
    messages = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    from_text = generate(model, tokenizer, ["hi"], greedy())
    from_ids = generate(model, tokenizer, [ids], greedy())
    assert from_text.prompt_ids[0].tolist() == ids
    assert from_text.response_ids.tolist() == from_ids.response_ids.tolist()


def test_greedy_equals_transformers_generate(model, tokenizer):
    ours = generate(model, tokenizer, PROMPTS, greedy())
    reference = model.generate(
        input_ids=ours.prompt_ids,
        attention_mask=ours.prompt_mask.long(),
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=EOS_ID,
    )[:, ours.prompt_ids.shape[1]:]
    assert reference.tolist() == ours.response_ids.tolist()


def test_logps_equal_a_full_forward(model, tokenizer):
    # Sampled at temperature 2 with top-k: logps must still be the model's own temperature-1 log-probs.
    settings = SamplingSettings(max_new_tokens=10, temperature=2.0, top_k=20, seed=3)
    out = generate(model, tokenizer, PROMPTS, settings)
    input_ids = torch.cat([out.prompt_ids, out.response_ids], 1)  # [N, P+R]
    attention_mask = torch.cat([out.prompt_mask, out.response_mask], 1).long()
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    prompt_len = out.prompt_ids.shape[1]
    expected = logits[:, prompt_len - 1:-1].float().log_softmax(-1)  # predicts each response token
    expected = expected.gather(-1, out.response_ids[..., None]).squeeze(-1) * out.response_mask
    assert out.logps.dtype == torch.float32
    torch.testing.assert_close(out.logps, expected, atol=1e-4, rtol=0)
    assert (out.logps[~out.response_mask] == 0).all()


def test_n_samples_per_prompt_are_consecutive(model, tokenizer):
    out = generate(model, tokenizer, PROMPTS[:3], SamplingSettings(max_new_tokens=6, n=4, seed=0))
    assert out.response_ids.shape == (12, 6) and out.logps.shape == (12, 6) and out.truncated.shape == (12,)
    assert len(out.texts) == 12
    single = [generate(model, tokenizer, [p], greedy()).prompt_ids[0].tolist() for p in PROMPTS[:3]]
    for row in range(12):
        assert out.prompt_ids[row][out.prompt_mask[row]].tolist() == single[row // 4]
    # Sampled at temperature 1, the 4 samples of a prompt are not all the same.
    assert len({tuple(r.tolist()) for r in out.response_ids[:4]}) > 1


def test_seeded_sampling_is_reproducible_and_seeds_differ(model, tokenizer):
    def run(seed):
        settings = SamplingSettings(max_new_tokens=10, seed=seed)
        return generate(model, tokenizer, PROMPTS, settings).response_ids

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_top_k_1_and_tiny_top_p_equal_greedy(model, tokenizer):
    reference = generate(model, tokenizer, PROMPTS, greedy()).response_ids
    def hot(**kwargs):
        return SamplingSettings(max_new_tokens=12, temperature=1.5, seed=1, **kwargs)

    top_k = generate(model, tokenizer, PROMPTS, hot(top_k=1))
    top_p = generate(model, tokenizer, PROMPTS, hot(top_p=1e-6))
    plain = generate(model, tokenizer, PROMPTS, hot())
    assert torch.equal(top_k.response_ids, reference)
    assert torch.equal(top_p.response_ids, reference)
    assert not torch.equal(plain.response_ids, reference)  # the filters, not the seed, make them greedy


def test_top_k_filter_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    filtered = top_k_filter(logits, 2)
    assert torch.isinf(filtered).tolist() == [[True, False, False, True]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_top_p_filter_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    logits = probs.log()
    # sorted 0.5, 0.3, 0.1, 0.1: p=0.5 -> {0.5}; p=0.8 -> {0.5, 0.3}; p=0.81 -> three tokens
    assert (~torch.isinf(top_p_filter(logits, 0.5))).tolist() == [[False, True, False, False]]
    assert (~torch.isinf(top_p_filter(logits, 0.79))).tolist() == [[False, True, True, False]]
    assert (~torch.isinf(top_p_filter(logits, 0.81))).sum().item() == 3
    assert (~torch.isinf(top_p_filter(logits, 1e-9))).sum().item() == 1  # always at least one
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_sampling_follows_the_tempered_distribution():
    logits = torch.tensor([[0.0, 1.0]]).expand(20000, 2)
    generator = torch.Generator().manual_seed(0)
    tokens = sample_next(logits, SamplingSettings(temperature=0.5), generator)
    expected = torch.tensor([0.0, 2.0]).softmax(-1)[1].item()  # exp(2) / (1 + exp(2)) = 0.8808
    assert abs(tokens.float().mean().item() - expected) < 0.01


class EosAtPosition(torch.nn.Module):
    """Wraps a causal LM and makes EOS certain once a row's next position reaches `position`."""

    def __init__(self, model, position):
        super().__init__()
        self.model, self.position = model, position
        self.modes_seen = set()  # the inner model's `training` flag at each call

    def forward(self, position_ids, **kwargs):
        self.modes_seen.add(self.model.training)
        out = self.model(position_ids=position_ids, **kwargs)
        next_position = position_ids[:, -1:] + 1  # [N, 1]: position of the token these logits predict
        out.logits[..., EOS_ID] = torch.where(next_position >= self.position, 1e4, out.logits[..., EOS_ID])
        return out


def test_eos_stops_a_row_and_is_in_the_mask(model, tokenizer):
    prompts = [[5, 6, 7], [5, 6, 7, 8, 9, 10]]  # EOS at position 9: response tokens 7 and 4
    wrapped = EosAtPosition(model, position=9)
    model.train()
    out = generate(wrapped, tokenizer, prompts, greedy(max_new_tokens=10))
    assert wrapped.modes_seen == {False}  # eval while sampling
    assert model.training  # restored after generation
    assert out.response_mask.sum(1).tolist() == [7, 4]
    assert out.response_ids.shape == (2, 7)  # stopped once every row had finished
    assert out.response_ids[0, 6].item() == EOS_ID and out.response_ids[1, 3].item() == EOS_ID
    assert (out.response_ids[1, 4:] == 0).all() and (out.logps[1, 4:] == 0).all()
    assert out.truncated.tolist() == [False, False]
    assert out.texts[1] == tokenizer.decode(out.response_ids[1, :3].tolist())
    plain = generate(model, tokenizer, prompts, greedy(max_new_tokens=10))
    assert out.response_ids[1, :3].tolist() == plain.response_ids[1, :3].tolist()


def test_truncated_when_max_new_tokens_is_hit(model, tokenizer):
    prompts = [[5, 6, 7], [5, 6, 7, 8, 9, 10]]  # EOS would come at response token 7 and 4
    out = generate(EosAtPosition(model, position=9), tokenizer, prompts, greedy(max_new_tokens=5))
    assert out.truncated.tolist() == [True, False]
    assert out.response_mask.sum(1).tolist() == [5, 4]


def test_stop_string_cuts_the_text_and_the_mask(model, tokenizer):
    free = generate(model, tokenizer, PROMPTS, greedy(max_new_tokens=12))
    ids = free.response_ids[1].tolist()
    full_text = tokenizer.decode(ids)
    stop = tokenizer.decode(ids[5:7])[:3]
    assert stop and stop in full_text
    # Slow reference: the first prefix of tokens whose text contains the stop string.
    stop_len = next(k for k in range(1, len(ids) + 1) if stop in tokenizer.decode(ids[:k]))
    assert stop_len < len(ids)
    out = generate(model, tokenizer, PROMPTS, greedy(max_new_tokens=12, stop_strings=(stop,)))
    assert out.response_mask[1].sum().item() == stop_len
    assert out.response_ids[1, :stop_len].tolist() == ids[:stop_len]
    assert out.texts[1] == full_text[: full_text.find(stop)]
    assert not out.truncated[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(n=0), "n=0"),
        (dict(stop_strings="###"), "pass a tuple"),
        (dict(stop_strings=("",)), "non-empty"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(AlignkitError, match=message):
        SamplingSettings(**kwargs)


def test_bad_prompts_are_clear_errors(model, tokenizer):
    with pytest.raises(AlignkitError, match="no prompts"):
        generate(model, tokenizer, [], greedy())
    with pytest.raises(AlignkitError, match="prompt 1 has no tokens"):
        generate(model, tokenizer, [[5], []], greedy())
    with pytest.raises(AlignkitError, match="prompt 0 is a int"):
        generate(model, tokenizer, [5], greedy())


def test_rows_that_finish_leave_the_batch_without_changing_the_others(model, tokenizer):
    # EOS at position 12: prompts of 3..8 tokens finish after 10..5 response tokens, so finished rows are
    # dropped from the batch (and the KV cache) while the others go on; each row must equal its run alone.
    prompts = [list(range(5, 5 + k)) for k in (3, 8, 4, 7, 5, 6, 3, 8)]
    wrapped = EosAtPosition(model, position=12)
    batched = generate(wrapped, tokenizer, prompts, greedy(max_new_tokens=12))
    assert batched.response_mask.sum(1).tolist() == [13 - len(p) for p in prompts]
    for row, prompt in enumerate(prompts):
        alone = generate(wrapped, tokenizer, [prompt], greedy(max_new_tokens=12))
        length = alone.response_mask.sum().item()
        assert torch.equal(batched.response_ids[row, :length], alone.response_ids[0, :length])
        assert torch.allclose(batched.logps[row, :length], alone.logps[0, :length], atol=1e-5)
        assert (batched.response_ids[row, length:] == 0).all() and not batched.response_mask[row, length:].any()
