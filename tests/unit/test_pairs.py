"""data/pairs.py, models/forward.py:pair_logps and ops/logprobs.py:logps_of_targets.

Both layouts are checked against the slowest obvious reference: every prompt+response forwarded alone,
full logits, log_softmax, gather, sum over the response. The reference sums in float64, as pair_logps
does, so the 1e-5 tolerance measures the model's arithmetic, not the order of a float32 sum.
"""

import math

import pytest
import torch

from alignkit.data.io import Rows
from alignkit.data.pairs import collate_pairs
from alignkit.data.tokenize import tokenize_preference
from alignkit.errors import AlignkitError
from alignkit.models.forward import pair_logps
from alignkit.models.tiny import build_model, train_tokenizer
from alignkit.ops.logprobs import logps_of_targets

PAD, EOS = 0, 1
TOLERANCE = 1e-5
# (prompt, chosen, rejected) lengths, EOS included in the responses: length-1 responses (EOS alone), a
# 1-token prompt, a rejected longer than chosen and one shorter, so rows pad differently in each layout.
LENGTHS = [(5, 4, 1), (1, 1, 8), (9, 7, 3), (3, 8, 6), (12, 2, 5)]
# Random init at 0.2 instead of Llama's 0.02, so attention and positions move the log-probs by whole nats:
# a layout that let rejected see chosen, or numbered its positions wrongly, misses by far more than 1e-5.
INIT = 0.1
IMPLEMENTATIONS = ["sdpa", "eager"]
LAYOUTS = ["separate", "shared_prompt", "packed"]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"User: what is {i} plus {i}?\nAssistant: it is {2 * i}." for i in range(200)]
    return train_tokenizer(texts, vocab_size=512)


@pytest.fixture(scope="module")
def examples(tokenizer):
    generator = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(2, len(tokenizer), (n,), generator=generator).tolist()

    return [
        {"prompt_ids": ids(p), "chosen_ids": ids(c - 1) + [EOS], "rejected_ids": ids(r - 1) + [EOS]}
        for p, c, r in LENGTHS
    ]


def tiny_llama(tokenizer, implementation):
    model = build_model(tokenizer, size="100k", seed=0, initializer_range=INIT)
    model.config._attn_implementation = implementation
    return model


def naive_logps(model, examples):
    """One forward per sequence: full logits, log_softmax, gather, sum over the response (in float64)."""
    sides = []
    for key in ("chosen_ids", "rejected_ids"):
        sums = []
        for example in examples:
            ids = torch.tensor([example["prompt_ids"] + example[key]])  # [1, L]
            logps = model(input_ids=ids).logits[0].log_softmax(-1)  # [L, V]
            start = len(example["prompt_ids"])
            picked = logps[start - 1 : -1].gather(-1, ids[0, start:, None])  # [response, 1]
            sums.append(picked.double().sum().float())
        sides.append(torch.stack(sums))
    return sides


def gradients(model, chosen_logps, rejected_logps):
    model.zero_grad()
    (chosen_logps - rejected_logps).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_gradients_match(actual, expected):
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        scale = grad.abs().max().item()
        assert scale > 0, name
        assert (actual[name] - grad).abs().max().item() <= TOLERANCE * scale, name


# ---- layouts, by hand ----


def test_separate_layout_by_hand():
    pair = {"prompt_ids": [5, 6], "chosen_ids": [7, 1], "rejected_ids": [1]}
    batch = collate_pairs([pair], PAD, "separate")
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [5, 6, 1, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    # chosen 7 and 1 are predicted at row 0 positions 1 and 2; rejected 1 at row 1 position 1 (4 + 1)
    assert batch["score_pos"].tolist() == [1, 2, 5]
    assert batch["score_target"].tolist() == [7, 1, 1]
    assert batch["score_pair"].tolist() == [0, 0, 0]
    assert batch["score_side"].tolist() == [0, 0, 1]
    assert (batch["chosen_lengths"].tolist(), batch["rejected_lengths"].tolist()) == ([2], [1])
    assert batch["num_pairs"] == 1


def test_shared_prompt_layout_by_hand():
    pairs = [
        {"prompt_ids": [5, 6], "chosen_ids": [7, 1], "rejected_ids": [8, 9, 1]},
        {"prompt_ids": [4], "chosen_ids": [1], "rejected_ids": [1]},
    ]
    batch = collate_pairs(pairs, PAD, "shared_prompt")
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 8, 9, 1], [4, 1, 1, PAD, PAD, PAD, PAD]]
    # rejected restarts right after the prompt: position 2, as if chosen were not there
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2, 3, 4], [0, 1, 1, 0, 0, 0, 0]]
    mask = batch["attention_mask"]
    assert mask.shape == (2, 1, 7, 7) and mask.dtype == torch.bool
    assert mask[0, 0].int().tolist() == [
        [1, 0, 0, 0, 0, 0, 0],  # prompt
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],  # chosen: prompt + earlier chosen
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],  # rejected: prompt + earlier rejected, never chosen
        [1, 1, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 1, 1, 1],
    ]
    assert mask[1, 0].int().tolist() == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],  # padding sees itself only: no query row is empty (softmax of nothing is NaN)
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
    ]
    # The last prompt position (1 in row 0, 7 + 0 in row 1) predicts both first response tokens.
    assert batch["score_pos"].tolist() == [1, 2, 1, 4, 5, 7, 7]
    assert batch["score_target"].tolist() == [7, 1, 8, 9, 1, 1, 1]
    assert batch["score_pair"].tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert batch["score_side"].tolist() == [0, 0, 1, 1, 1, 0, 1]
    assert (batch["chosen_lengths"].tolist(), batch["rejected_lengths"].tolist()) == ([2, 1], [3, 1])


def test_collate_pairs_refuses_what_it_cannot_score():
    good = {"prompt_ids": [5], "chosen_ids": [1], "rejected_ids": [7, 1]}
    with pytest.raises(AlignkitError, match="layout='bogus'; choose one of: shared_prompt, packed, separate"):
        collate_pairs([good], PAD, "bogus")
    with pytest.raises(AlignkitError, match="prefs.jsonl:3: prompt_ids is empty"):
        collate_pairs([good, {**good, "prompt_ids": [], "location": "prefs.jsonl:3"}], PAD)
    with pytest.raises(AlignkitError, match="example 0: rejected_ids is empty"):
        collate_pairs([{**good, "rejected_ids": []}], PAD)
    with pytest.raises(AlignkitError, match="no pad token"):
        collate_pairs([good], None)


# ---- the log-prob helper ----


def test_logps_of_targets_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])  # p = [1/4, 3/4] and [1/2, 1/2]
    targets, rows = torch.tensor([1, 0, 1]), torch.tensor([0, 0, 1])  # row 0 scores two tokens
    expected = [math.log(0.75), math.log(0.25), math.log(0.5)]  # -0.287682, -1.386294, -0.693147
    for chunk in (1, 2, 1024):
        assert logps_of_targets(logits, targets, chunk, rows=rows).tolist() == pytest.approx(expected, abs=1e-6)
    assert logps_of_targets(logits.bfloat16(), targets[:2]).dtype == torch.float32
    assert logps_of_targets(logits, targets[:2]).tolist() == pytest.approx([math.log(0.75), math.log(0.5)])


# ---- equivalence with one forward per sequence ----


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_match_separate_forwards(tokenizer, examples, implementation, layout):
    model = tiny_llama(tokenizer, implementation)
    expected_chosen, expected_rejected = naive_logps(model, examples)
    expected_grads = gradients(model, expected_chosen, expected_rejected)

    batch = collate_pairs(examples, PAD, layout)
    chosen, rejected, chosen_lengths, rejected_lengths = pair_logps(model, batch)
    assert chosen.dtype == rejected.dtype == torch.float32
    assert (chosen - expected_chosen).abs().max().item() < TOLERANCE
    assert (rejected - expected_rejected).abs().max().item() < TOLERANCE
    assert chosen_lengths.tolist() == [c for _, c, _ in LENGTHS]
    assert rejected_lengths.tolist() == [r for _, _, r in LENGTHS]
    assert_gradients_match(gradients(model, chosen, rejected), expected_grads)


def test_shared_prompt_equivalence_is_not_vacuous(tokenizer, examples):
    """The model is sensitive enough that a wrong mask or wrong positions would fail the test above."""
    model = tiny_llama(tokenizer, "sdpa")
    batch = collate_pairs(examples, PAD, "shared_prompt")
    _, rejected, _, _ = pair_logps(model, batch)
    sees_chosen = {**batch, "attention_mask": (batch["input_ids"] != PAD).long()}  # plain causal
    straight = torch.arange(batch["input_ids"].shape[1]).expand(len(LENGTHS), -1)
    numbered_straight = {**batch, "position_ids": straight}  # rejected numbered after chosen
    for wrong in (sees_chosen, numbered_straight):
        assert (pair_logps(model, wrong)[1] - rejected).abs().max().item() > 0.1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_head_sees_only_scored_positions(tokenizer, examples, layout):
    model = tiny_llama(tokenizer, "sdpa")
    batch = collate_pairs(examples, PAD, layout)
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    pair_logps(model, batch)
    unique_positions = batch["score_pos"].unique().numel()
    assert seen == [(unique_positions, model.config.hidden_size)]
    shared_positions = len(LENGTHS) if layout != "separate" else 0  # last prompt position, twice
    assert unique_positions == batch["score_pos"].numel() - shared_positions


def test_tokenized_rows_go_through(tokenizer):
    rows = [
        {"prompt": "what is 3 plus 3?", "chosen": "it is 6.", "rejected": "it is 7, I think."},
        {"prompt": "hi", "chosen": "hello.", "rejected": "no."},
    ]
    rows = Rows("prefs.jsonl", rows, ["prefs.jsonl:1", "prefs.jsonl:2"])
    examples, _ = tokenize_preference(rows, tokenizer, max_length=64, truncation="error")
    model = tiny_llama(tokenizer, "sdpa")
    expected_chosen, expected_rejected = naive_logps(model, examples)
    for layout in LAYOUTS:
        chosen, rejected, _, _ = pair_logps(model, collate_pairs(examples, tokenizer.pad_token_id, layout))
        assert torch.allclose(chosen, expected_chosen, atol=TOLERANCE, rtol=0)
        assert torch.allclose(rejected, expected_rejected, atol=TOLERANCE, rtol=0)


# ---- wrapped and unusual models ----


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")  # the adapter is not merged here
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")  # peft calling transformers
@pytest.mark.parametrize("layout", LAYOUTS)
def test_lora_wrapped_model_matches_its_own_forward(tokenizer, examples, layout):
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(
        r=4,
        lora_alpha=4,
        target_modules=["q_proj", "v_proj", "lm_head"],
        init_lora_weights=False,  # random B as well as A, so the adapters change the numbers
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = peft.get_peft_model(tiny_llama(tokenizer, "sdpa"), lora)
    expected_chosen, expected_rejected = naive_logps(model, examples)
    expected_grads = gradients(model, expected_chosen, expected_rejected)
    batch = collate_pairs(examples, PAD, layout)
    chosen, rejected, _, _ = pair_logps(model, batch)
    with model.disable_adapter(), torch.no_grad():
        assert (pair_logps(model, batch)[0] - chosen).abs().max().item() > 0.1  # the adapters count
    assert (chosen - expected_chosen).abs().max().item() < TOLERANCE
    assert (rejected - expected_rejected).abs().max().item() < TOLERANCE
    actual_grads = gradients(model, chosen, rejected)
    assert all("lora_" in name for name in actual_grads)  # only the adapters train
    assert_gradients_match(actual_grads, expected_grads)


def tiny_gemma2(tokenizer, **overrides):
    """Gemma 2 declares final_logit_softcapping: logits = cap * tanh(logits / cap) after the head."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=2.0,  # small enough to bend every logit of this model
        attn_logit_softcapping=None,  # sdpa refuses attention softcapping
        sliding_window=64,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=None,
        initializer_range=INIT,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma2ForCausalLM(Gemma2Config(**{**settings, **overrides}))
    model.config._attn_implementation = "sdpa"
    return model


@pytest.mark.parametrize("layout", ["separate", "shared_prompt"])  # packed rows exceed the tiny window
def test_final_logit_softcapping_is_applied(tokenizer, examples, layout):
    model = tiny_gemma2(tokenizer)
    expected_chosen, expected_rejected = naive_logps(model, examples)
    chosen, rejected, _, _ = pair_logps(model, collate_pairs(examples, PAD, layout))
    assert (chosen - expected_chosen).abs().max().item() < TOLERANCE
    assert (rejected - expected_rejected).abs().max().item() < TOLERANCE
    model.config.final_logit_softcapping = None  # the same weights without the cap score differently
    uncapped, _, _, _ = pair_logps(model, collate_pairs(examples, PAD, layout))
    assert (uncapped - chosen).abs().max().item() > 0.1


def test_shared_prompt_refuses_local_attention_narrower_than_the_rows(tokenizer, examples):
    model = tiny_gemma2(tokenizer, sliding_window=4)
    with pytest.raises(AlignkitError, match=r"local attention \(window 4\).*use dpo.layout=separate"):
        pair_logps(model, collate_pairs(examples, PAD, "shared_prompt"))
    expected_chosen, _ = naive_logps(model, examples)
    chosen, _, _, _ = pair_logps(model, collate_pairs(examples, PAD, "separate"))  # the window applies there
    assert (chosen - expected_chosen).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("implementation", ["flash_attention_2", "flex_attention"])
def test_shared_prompt_refuses_attention_that_cannot_take_a_4d_mask(tokenizer, examples, implementation):
    model = tiny_llama(tokenizer, "sdpa")
    model.config._attn_implementation = implementation
    with pytest.raises(AlignkitError, match=f"attn_implementation='{implementation}' cannot take"):
        pair_logps(model, collate_pairs(examples, PAD, "shared_prompt"))
