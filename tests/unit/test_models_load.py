"""models/load.py: dtype rules, policy and reference loading, LoRA, checkpointing, errors, atomic saves."""

import hashlib
import os
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from alignkit.config import LoraSettings, ModelSettings
from alignkit.errors import AlignkitError
from alignkit.models import load
from alignkit.models.load import (
    default_device,
    load_policy,
    load_reference,
    load_tokenizer,
    resolve_dtype,
    save_pretrained,
    unwrap,
)
from alignkit.models.tiny import build_model, train_tokenizer

CPU = torch.device("cpu")
TEXTS = [f"User: what is {i} plus {i}?\nAssistant: it is {2 * i}." for i in range(100)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    return save_pretrained(
        build_model(tokenizer, size="100k", seed=0), tokenizer, tmp_path_factory.mktemp("m") / "tiny"
    )


@pytest.fixture()
def batch(tokenizer):
    texts = ["User: what is 2 plus 2?\nAssistant: it is 4.<|eos|>", "User: hi\nAssistant: hello<|eos|>"]
    return tokenizer(texts, return_tensors="pt", padding=True)


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def settings(path, **kwargs):
    return ModelSettings(path=str(path), **kwargs)


def folder_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_resolve_dtype():
    assert resolve_dtype("auto", CPU) == torch.float32  # never bf16 on a CPU by default
    assert resolve_dtype("bfloat16", CPU) == torch.bfloat16
    assert resolve_dtype("float16", CPU) == torch.float16
    with pytest.raises(
        AlignkitError, match="model.dtype='fp8' is not a dtype: choose auto, float32, bfloat16"
    ):
        resolve_dtype("fp8", CPU)


def test_resolve_dtype_auto_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.float32


def test_default_device_uses_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert default_device() == torch.device("cuda", 3)


def test_load_policy_float32_matches_plain_transformers(model_dir, batch):
    policy, tokenizer = load_policy(settings(model_dir, dtype="float32"), CPU)
    assert {p.dtype for p in policy.parameters()} == {torch.float32}
    assert policy.training and all(p.requires_grad for p in policy.parameters())
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    plain = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    policy.eval()
    assert torch.equal(logits(policy, batch), logits(plain, batch))


def test_explicit_bfloat16_is_honoured_on_cpu(model_dir):
    policy, _ = load_policy(settings(model_dir, dtype="bfloat16"), CPU)
    assert {p.dtype for p in policy.parameters()} == {torch.bfloat16}


def test_tokenizer_without_pad_gets_eos(tmp_path, tokenizer):
    no_pad = train_tokenizer(TEXTS, vocab_size=400)
    no_pad.pad_token = None
    save_pretrained(build_model(tokenizer, size="100k"), no_pad, tmp_path / "m")
    loaded = load_tokenizer(settings(tmp_path / "m"))
    assert (loaded.pad_token, loaded.pad_token_id) == ("<|eos|>", 1)


def test_lora_trains_only_the_adapters(model_dir):
    policy, _ = load_policy(settings(model_dir, lora=LoraSettings(r=4, alpha=8)), CPU)
    assert isinstance(policy, PeftModel)
    trainable = {name: p.numel() for name, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    # all-linear, r=4, hidden 48, intermediate 128, 2 layers: r * (in + out) per adapted matrix
    per_layer = 4 * 4 * (48 + 48) + 3 * 4 * (48 + 128)  # q, k, v, o + gate, up, down
    assert sum(trainable.values()) == 2 * per_layer == 7296


def test_lora_target_modules_that_match_nothing_are_an_error(model_dir):
    lora = LoraSettings(target_modules=["qkv"])
    with pytest.raises(AlignkitError, match=r"target_modules=\['qkv'\].*linear layers are: .*q_proj"):
        load_policy(settings(model_dir, lora=lora), CPU)


def test_merged_lora_save_loads_without_peft_and_matches(model_dir, tmp_path, batch):
    policy, tokenizer = load_policy(settings(model_dir, lora=LoraSettings(r=4, alpha=8)), CPU)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # lora_B starts at zero; give the adapters a visible effect
        for name, param in policy.named_parameters():
            if ".lora_B." in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    policy.eval()
    peft_logits = logits(policy, batch)
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    assert (peft_logits - logits(base, batch)).abs().max() > 1e-2

    out = save_pretrained(policy, tokenizer, tmp_path / "merged")
    assert "adapter_config.json" not in os.listdir(out) and "model.safetensors" in os.listdir(out)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, batch), peft_logits, atol=1e-5, rtol=1e-5)

    # merging worked on a copy: the training model keeps its adapters and its outputs
    assert isinstance(policy, PeftModel)
    assert sum(".lora_B." in name for name, _ in policy.named_parameters()) == 14
    assert torch.equal(logits(policy, batch), peft_logits)


def test_unmerged_lora_save_writes_an_adapter_folder(model_dir, tmp_path):
    policy, tokenizer = load_policy(settings(model_dir, lora=LoraSettings(r=4)), CPU)
    out = save_pretrained(policy, tokenizer, tmp_path / "adapter", merge_lora=False)
    files = set(os.listdir(out))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    assert "model.safetensors" not in files
    with pytest.raises(AlignkitError, match="holds a LoRA adapter, not a model"):
        load_policy(settings(out), CPU)


def count_layer_calls(model):
    calls = []
    layer = unwrap(model).get_base_model() if isinstance(model, PeftModel) else model
    layer.model.layers[0].input_layernorm.register_forward_pre_hook(lambda *args: calls.append(1))
    return calls


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4)])
def test_gradient_checkpointing_recomputes_and_gives_the_same_grads(model_dir, batch, lora):
    torch.manual_seed(0)  # the same random lora_A in both
    plain, _ = load_policy(settings(model_dir, lora=lora), CPU)
    torch.manual_seed(0)
    checkpointed, _ = load_policy(settings(model_dir, lora=lora, gradient_checkpointing=True), CPU)
    assert checkpointed.config.use_cache is False
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    grads = []
    for model in (plain, checkpointed):
        calls = count_layer_calls(model)
        model(**batch, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        grads[-1]["layer calls"] = len(calls)
    assert (grads[0].pop("layer calls"), grads[1].pop("layer calls")) == (
        1,
        2,
    )  # the backward re-ran the layer
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[1].items():
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, grads[0][name], atol=1e-6, rtol=1e-5)
    assert any(grad.abs().sum() > 0 for name, grad in grads[1].items() if "lora_B" in name or lora is None)


def test_saved_folder_has_the_cache_on_even_after_checkpointed_training(model_dir, tmp_path):
    policy, tokenizer = load_policy(settings(model_dir, gradient_checkpointing=True), CPU)
    out = save_pretrained(policy, tokenizer, tmp_path / "final")
    assert AutoModelForCausalLM.from_pretrained(out).config.use_cache is True
    assert policy.config.use_cache is False


def test_load_reference_is_frozen_and_never_lora(model_dir):
    reference = load_reference(settings(model_dir, lora=LoraSettings(), dtype="bfloat16"), CPU)
    assert not isinstance(reference, PeftModel)
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    assert {p.dtype for p in reference.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("path", ["someone/no-such-model", "/no/such/folder"])
def test_missing_model_offline_is_a_plain_alignkit_error(monkeypatch, path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AlignkitError) as caught:
        load_policy(settings(path), CPU)
    assert str(caught.value) == (
        f"model path {path} is not a local folder and the hub is offline (HF_HUB_OFFLINE=1): "
        "build one with `alignkit tiny-model` or copy the model folder here"
    )
    shown = "".join(traceback.format_exception(caught.value))
    assert "huggingface_hub" not in shown and "HFValidationError" not in shown and "OSError" not in shown
    with pytest.raises(AlignkitError, match="is not a local folder and the hub is offline"):
        load_reference(settings(path), CPU)


def test_folder_without_config_is_an_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(AlignkitError, match=f"model folder {tmp_path} has no config.json"):
        load_policy(settings(tmp_path), CPU)
    with pytest.raises(AlignkitError, match=r"weights.bin is a file: point model.path at the folder"):
        load_policy(settings(tmp_path / "weights.bin"), CPU)


def test_trust_remote_code_reaches_transformers_only_when_set(model_dir, monkeypatch):
    seen = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        return real(cls, path, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    load_reference(settings(model_dir), CPU)
    load_reference(settings(model_dir, trust_remote_code=True), CPU)
    assert seen == [False, True]


def test_save_pretrained_replaces_the_old_folder_only_when_complete(tmp_path, tokenizer, monkeypatch):
    out = save_pretrained(build_model(tokenizer, size="100k", seed=0), tokenizer, tmp_path / "final")
    (out / "notes.txt").write_text("from the old save")
    before = folder_digest(out)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    # The new model's weights are already in the temp folder when the tokenizer write fails.
    monkeypatch.setattr(type(tokenizer), "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(build_model(tokenizer, size="100k", seed=1), tokenizer, out)
    assert folder_digest(out) == before
    assert sorted(os.listdir(tmp_path)) == ["final"]  # the temp folder is gone

    monkeypatch.undo()
    save_pretrained(build_model(tokenizer, size="100k", seed=1), tokenizer, out)
    after = folder_digest(out)
    assert "notes.txt" not in after and after["model.safetensors"] != before["model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["final"]  # no .tmp- or .old- sibling left
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    expected = build_model(tokenizer, size="100k", seed=1).state_dict()
    assert all(torch.equal(reloaded.state_dict()[name], expected[name]) for name in expected)


def test_save_pretrained_refuses_a_file_path(tmp_path, tokenizer):
    (tmp_path / "final").write_text("not a folder")
    with pytest.raises(AlignkitError, match="it is a file; choose a folder path"):
        save_pretrained(build_model(tokenizer, size="100k"), tokenizer, tmp_path / "final")


def test_unwrap_strips_data_parallel_and_compile(tokenizer, tmp_path):
    model = build_model(tokenizer, size="100k")
    assert unwrap(model) is model
    assert unwrap(torch.nn.DataParallel(model)) is model
    assert unwrap(torch.compile(model)) is model
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        assert unwrap(torch.compile(ddp)) is model
    finally:
        torch.distributed.destroy_process_group()


def test_save_pretrained_unwraps_before_saving(tmp_path, tokenizer):
    model = build_model(tokenizer, size="100k", seed=2)
    out = save_pretrained(torch.compile(model), tokenizer, tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert set(reloaded.state_dict()) == set(model.state_dict())  # no "_orig_mod." prefixes
    assert torch.equal(reloaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_readable_errors_keep_unrelated_value_errors():
    with pytest.raises(ValueError, match="something else"), load._readable_errors("x"):
        raise ValueError("something else")
