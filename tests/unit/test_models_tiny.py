"""models/tiny.py: the byte-level BPE tokenizer, its chat template, the presets and the saved folder."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.errors import AlignkitError
from alignkit.models.tiny import (
    PRESET_VOCAB,
    SIZES,
    build_model,
    count_parameters,
    make_tiny_model,
    train_tokenizer,
)

TEXTS = [f"User: what is {i} plus {i}?\nAssistant: it is {2 * i}. Café, naïve, 世界!" for i in range(200)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=512)


@pytest.fixture(scope="module")
def texts_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS), encoding="utf-8")
    return path


class VocabOnly:
    """Just what build_model reads from a tokenizer, for presets at a vocab size no corpus here reaches."""

    pad_token_id, eos_token_id = 0, 1

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size


def test_special_tokens_have_fixed_ids_and_no_bos(tokenizer):
    assert tokenizer.convert_tokens_to_ids(["<|pad|>", "<|eos|>"]) == [0, 1]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token) == (0, 1, None)
    assert tokenizer.padding_side == "right"
    ids = tokenizer("hi<|eos|>")["input_ids"]
    assert ids[-1] == 1 and 1 not in ids[:-1] and 0 not in ids  # no BOS, the literal EOS is one token
    assert len(tokenizer) <= 512


@pytest.mark.parametrize(
    "text",
    [
        "  leading spaces",
        "tabs\tand\nnewlines\r\n",
        "Café 世界 😀 naïve",
        " . , end ",
        "x" * 300,
        "",
        "a<|eos|>b",
    ],
)
def test_decode_round_trips_text_exactly(tokenizer, text):
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_chat_template_renders_the_plain_format(tokenizer):
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert tokenizer.apply_chat_template(turn, tokenize=False) == "User: hi\nAssistant: hello<|eos|>"

    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (
        tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        == "System: be brief\nUser: hi\nAssistant:"
    )

    two_turns = turn + [{"role": "user", "content": "again"}, {"role": "assistant", "content": "bye"}]
    assert (
        tokenizer.apply_chat_template(two_turns, tokenize=False)
        == "User: hi\nAssistant: hello<|eos|>\nUser: again\nAssistant: bye<|eos|>"
    )
    assert (
        tokenizer.apply_chat_template(
            turn + [{"role": "user", "content": "more"}], tokenize=False, add_generation_prompt=True
        )
        == "User: hi\nAssistant: hello<|eos|>\nUser: more\nAssistant:"
    )


def test_chat_template_rejects_unknown_roles(tokenizer):
    with pytest.raises(Exception, match="unknown chat role tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


@pytest.mark.parametrize("response", ["it is 4.", "!!! wow", "42", "  two spaces", "Café"])
def test_prompt_ids_are_a_prefix_of_prompt_plus_response(tokenizer, response):
    prompt = [{"role": "user", "content": "what is 2 plus 2?"}]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"]
    full = prompt + [{"role": "assistant", "content": response}]
    full_ids = tokenizer.apply_chat_template(full, tokenize=True)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert full_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(full_ids[len(prompt_ids) :]) == f" {response}<|eos|>"


# The counts documented next to SIZES; the names must be within 30% of them.
PRESET_COUNTS = {"100k": 104_688, "1m": 935_040, "5m": 5_008_640, "40m": 42_476_032}
NOMINAL = {"100k": 100e3, "1m": 1e6, "5m": 5e6, "40m": 40e6}


@pytest.mark.parametrize("size", list(SIZES))
def test_preset_parameter_counts_match_their_names(size):
    with torch.device("meta"):  # shapes only: the 40m preset builds in milliseconds
        model = build_model(VocabOnly(PRESET_VOCAB[size]), size=size)
    assert count_parameters(model) == PRESET_COUNTS[size]
    assert abs(count_parameters(model) / NOMINAL[size] - 1) <= 0.30


def test_100k_preset_at_vocab_512_and_weight_tying():
    with torch.device("meta"):
        small = build_model(VocabOnly(512), size="100k")
        large = build_model(VocabOnly(16384), size="40m")
    assert count_parameters(small) == 80_112  # 512*48 embedding + 2 * 27,744 per layer + 48 final norm
    assert small.lm_head.weight is small.model.embed_tokens.weight
    assert large.lm_head.weight is not large.model.embed_tokens.weight
    assert count_parameters(large) - 16384 * 512 == 34_087_424  # untied: one more 16,384 x 512 matrix


def test_model_config_follows_the_tokenizer(tokenizer):
    model = build_model(tokenizer, size="100k", max_position_embeddings=256)
    config = model.config
    assert config.vocab_size == len(tokenizer)
    assert (config.pad_token_id, config.eos_token_id, config.bos_token_id) == (0, 1, None)
    assert (config.max_position_embeddings, config.attention_bias, config.mlp_bias) == (256, False, False)
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (1, 0)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())


def test_build_is_deterministic_per_seed_and_leaves_global_rng_alone(tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = build_model(tokenizer, size="100k", seed=7).state_dict()
    assert torch.equal(torch.rand(3), expected_next)
    second = build_model(tokenizer, size="100k", seed=7).state_dict()
    other = build_model(tokenizer, size="100k", seed=8).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(
        first["model.layers.0.self_attn.q_proj.weight"], other["model.layers.0.self_attn.q_proj.weight"]
    )


def test_overrides_change_the_config_and_bad_ones_are_errors(tokenizer):
    assert build_model(tokenizer, size="100k", num_hidden_layers=1).config.num_hidden_layers == 1
    with pytest.raises(AlignkitError, match="unknown LlamaConfig field.*hiden_size"):
        build_model(tokenizer, size="100k", hiden_size=64)
    with pytest.raises(AlignkitError, match="not a multiple of the number of attention heads"):
        build_model(tokenizer, size="100k", hidden_size=50)
    with pytest.raises(AlignkitError, match="unknown model size '2m': choose one of 100k, 1m, 5m, 40m"):
        build_model(tokenizer, size="2m")


def test_make_tiny_model_loads_with_plain_transformers_and_identical_logits(tmp_path, texts_jsonl):
    out = make_tiny_model(texts_jsonl, tmp_path / "tiny", size="100k", vocab_size=512, seed=3)
    assert out == tmp_path / "tiny"
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= set(
        os.listdir(out)
    )
    assert os.listdir(tmp_path) == ["tiny"]  # no temp folder left beside it

    # The same texts and seed rebuild the same tokenizer and weights in memory.
    tokenizer = train_tokenizer(TEXTS, vocab_size=512)
    model = build_model(tokenizer, size="100k", seed=3).eval()
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(out)

    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer.model_max_length == 1024
    assert (loaded_tokenizer.pad_token_id, loaded_tokenizer.eos_token_id) == (0, 1)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    ids = loaded_tokenizer.apply_chat_template(
        [{"role": "user", "content": "what is 3 plus 3?"}, {"role": "assistant", "content": "it is 6."}],
        tokenize=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    assert ids.shape[1] > 5
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_generate_stops_at_eos(tokenizer):
    model = build_model(tokenizer, size="100k", seed=0).eval()
    prompt = tokenizer("User: hi\nAssistant:", return_tensors="pt")
    free = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert free.shape[1] == prompt["input_ids"].shape[1] + 8  # this random model never picks EOS by itself

    calls = []

    def eos_from_third_step(module, inputs, logits):
        calls.append(1)
        if len(calls) >= 3:
            logits[..., tokenizer.eos_token_id] += 1e4
        return logits

    handle = model.lm_head.register_forward_hook(eos_from_third_step)
    stopped = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    handle.remove()
    new_tokens = stopped[0, prompt["input_ids"].shape[1] :].tolist()
    assert len(new_tokens) == 3 and new_tokens[-1] == tokenizer.eos_token_id
    assert new_tokens[:2] == free[0, prompt["input_ids"].shape[1] : prompt["input_ids"].shape[1] + 2].tolist()


def test_make_tiny_model_reads_txt_and_honours_max_texts(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(["abc abc abc"] * 5 + ["zebrafish zebrafish"] * 200) + "\n", encoding="utf-8")
    few = AutoTokenizer.from_pretrained(make_tiny_model(texts, tmp_path / "few", size="100k", max_texts=5))
    all_ = AutoTokenizer.from_pretrained(make_tiny_model(texts, tmp_path / "all", size="100k"))
    assert len(all_(" zebrafish")["input_ids"]) == 1  # learnt as one token from the later lines
    assert len(few(" zebrafish")["input_ids"]) > 3  # never seen: falls back towards bytes


def test_make_tiny_model_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(AlignkitError, match=r"line 2 of .*bad.jsonl: not valid JSON"):
        make_tiny_model(bad, tmp_path / "out", size="100k")
    bad.write_text('{"text": "ok"}\n\n{"prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(AlignkitError, match=r"line 3 of .*bad.jsonl: no 'text' column"):
        make_tiny_model(bad, tmp_path / "out", size="100k")
    with pytest.raises(AlignkitError, match=r"texts file .*missing.jsonl does not exist"):
        make_tiny_model(tmp_path / "missing.jsonl", tmp_path / "out", size="100k")
    csv = tmp_path / "texts.csv"
    csv.write_text("text\nhello\n")
    with pytest.raises(AlignkitError, match="expected a .jsonl file with a `text` column or a .txt file"):
        make_tiny_model(csv, tmp_path / "out", size="100k")
    assert not (tmp_path / "out").exists()


def test_vocab_size_below_the_byte_alphabet_is_an_error():
    with pytest.raises(AlignkitError, match="vocab_size=200 is below the 258 tokens"):
        train_tokenizer(["hello"], vocab_size=200)
