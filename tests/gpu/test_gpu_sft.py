"""Invariants on a real GPU (skipped without CUDA): dtype choice, SFT on cuda, CPU/GPU agreement."""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_dtype_is_bf16_on_capable_gpus():
    from alignkit.models.load import resolve_dtype

    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == expected


def test_logps_on_gpu_match_cpu():
    from alignkit.ops.logprobs import token_logps

    torch.manual_seed(0)
    logits = torch.randn(4, 16, 257)
    labels = torch.randint(0, 257, (4, 16))
    on_gpu = token_logps(logits.cuda(), labels.cuda()).cpu()
    assert torch.allclose(on_gpu, token_logps(logits, labels), atol=1e-5)


def test_sft_runs_on_gpu_and_lowers_loss(tmp_path):
    import json

    import alignkit
    from alignkit.demo.build import write_demo_data
    from alignkit.models.tiny import make_tiny_model

    write_demo_data(tmp_path / "w", scale=0.05)
    model = make_tiny_model(tmp_path / "w" / "pretrain.jsonl", tmp_path / "m", size="1m", vocab_size=512)
    result = alignkit.run("sft", None, "name=g", f"output_dir={tmp_path}", f"model.path={model}",
                          f"data.train={tmp_path / 'w' / 'sft.jsonl'}", "data.max_length=128",
                          "train.max_steps=40", "train.lr=3e-3", "train.batch_size=32")
    losses = [json.loads(x)["loss"] for x in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.5
