"""End-to-end pretrain and SFT on the demo world with a ~100k-parameter model."""

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

import alignkit
from cli_runner import cli


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_lowers_loss_and_saves_a_loadable_model(tmp_path, tiny_model, world_dir):
    result = alignkit.run(
        "pretrain", None, f"name=pt", f"output_dir={tmp_path}", f"model.path={tiny_model}",
        f"data.train={world_dir / 'pretrain.jsonl'}", "data.max_length=64", "data.eval_fraction=0.05",
        "train.lr=3e-3", "train.batch_size=16", "train.max_steps=60", "train.warmup_steps=5", "train.threads=1",
    )
    losses = [m["loss"] for m in metrics(result.path) if "loss" in m]
    assert losses[-1] < losses[0] - 1.0
    assert result.metrics["eval/loss"] < losses[0]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(result.path / "final")
    assert model.config.vocab_size == 512 or model.config.vocab_size > 256


def sft_settings(tmp_path, tiny_model, world_dir, **extra):
    base = {"name": "sft", "output_dir": str(tmp_path), "model.path": str(tiny_model),
            "data.train": str(world_dir / "sft.jsonl"), "data.eval": str(world_dir / "sft_eval.jsonl"),
            "data.max_length": 128, "train.lr": 3e-3, "train.batch_size": 16, "train.threads": 1,
            "train.warmup_steps": 5}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_sft_learns_the_format_and_to_stop(tmp_path, tiny_model, world_dir):
    from alignkit.demo.pipeline import judge_model

    prompts = [json.loads(x) for x in (world_dir / "prompts_eval.jsonl").read_text().splitlines()][:60]
    before = judge_model(tiny_model, prompts, seed=0, max_new_tokens=40)
    result = alignkit.run("sft", None, *sft_settings(tmp_path, tiny_model, world_dir, **{
        "train.max_steps": 300, "train.eval_every": 100}))
    evals = [m["eval/loss"] for m in metrics(result.path) if "eval/loss" in m]
    assert evals[-1] < evals[0] - 0.5, evals  # held-out loss falls
    after = judge_model(result.path / "final", prompts, seed=0, max_new_tokens=40)
    assert after["eos_rate"] > 0.9  # the SFT model stops on its own
    # + 0.1 measured: the demonstrations carry their writers' habits, which SFT learns along with the format
    assert after["gold_score"] > before["gold_score"] + 0.05
    answers = [s["answer"] for s in after["samples"]]
    assert not any("User:" in a for a in answers)  # answers one turn, does not write the next question


def test_resume_after_5_of_10_steps_gives_identical_weights(tmp_path, tiny_model, world_dir, monkeypatch):
    settings = sft_settings(tmp_path, tiny_model, world_dir, **{"train.max_steps": 10, "train.save_every": 5})
    straight = alignkit.run("sft", None, *settings, "name=straight")

    from alignkit.recipes import sft

    real_step, calls = sft.sft_loss_step, {"n": 0}

    def interrupted_step(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # SIGTERM arrives during step 5: the loop saves step-5 and exits cleanly
            signal.raise_signal(signal.SIGTERM)
        return real_step(model, batch)

    monkeypatch.setattr(sft, "sft_loss_step", interrupted_step)
    first = alignkit.run("sft", None, *settings, "name=split")
    assert first.stopped == "interrupted" and not (first.path / "final").exists()
    monkeypatch.setattr(sft, "sft_loss_step", real_step)
    resumed = alignkit.run("sft", None, *settings, "name=split", "train.resume=true")
    assert resumed.stopped == "done"
    a = load_file(straight.path / "final" / "model.safetensors")
    b = load_file(resumed.path / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_model_cli_and_init(tmp_path, world_dir):
    out = cli("tiny-model", str(world_dir / "pretrain.jsonl"), str(tmp_path / "m"), "--size", "100k",
              "--vocab-size", "400")
    assert "parameters" in out.stdout and (tmp_path / "m" / "model.safetensors").exists()
    cli("init", "sft", str(tmp_path))
    assert (tmp_path / "sft.yaml").read_text().startswith("# alignkit sft")
    with pytest.raises(AssertionError):
        cli("init", "sft", str(tmp_path))


def test_lora_sft_trains_adapters_only_and_saves_a_merged_model(tmp_path, tiny_model, world_dir):
    from transformers import AutoModelForCausalLM

    settings = sft_settings(tmp_path, tiny_model, world_dir, **{
        "train.max_steps": 6, "train.save_every": 3, "model.lora": "{r: 4, alpha: 8}", "train.lr": 1e-2})
    result = alignkit.run("sft", None, *settings)
    trained = load_file(result.path / "checkpoints" / "step-6" / "trainable.safetensors")
    assert trained and all("lora_" in name for name in trained)  # only adapters are trained and checkpointed
    merged = AutoModelForCausalLM.from_pretrained(result.path / "final")  # plain transformers, no peft
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [n for n, p in merged.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed and all("proj" in n for n in changed)  # LoRA updates merged into the linear layers
    losses = [m["loss"] for m in metrics(result.path) if "loss" in m]
    assert losses[-1] < losses[0]


def test_unavailable_tracker_is_a_config_time_error(tmp_path, tiny_model, world_dir):
    import importlib.util

    from alignkit.errors import AlignkitError

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(AlignkitError, match="wandb, which is not installed"):
        alignkit.run("sft", None, *sft_settings(tmp_path, tiny_model, world_dir, **{"train.trackers": "[wandb]"}))


def test_generate_command_writes_n_samples_per_prompt(tmp_path, tiny_model, world_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(["Hi", "What is 2 + 2?"])))
    out = cli("generate", str(tiny_model), str(prompts), str(tmp_path / "out.jsonl"), "--n", "3",
              "--temperature", "0.8", "--max-new-tokens", "8", "--seed", "1")
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["id"], r["sample"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(isinstance(r["completion"], str) and isinstance(r["truncated"], bool) for r in rows)
    assert "wrote 6 completions" in out.stdout
    again = cli("generate", str(tiny_model), str(prompts), str(tmp_path / "again.jsonl"), "--n", "3",
                "--temperature", "0.8", "--max-new-tokens", "8", "--seed", "1")
    assert again.returncode == 0 and (tmp_path / "again.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()
