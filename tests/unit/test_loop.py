"""The shared training loop on a toy model: accumulation maths, NaN guard, exact resume, signals, checkpoints."""

import json
import signal
from types import SimpleNamespace

import pytest
import torch

from alignkit.config import SFTConfig
from alignkit.errors import AlignkitError
from alignkit.losses.sft import nll_sum
from alignkit.ops.logprobs import shifted_logps
from alignkit.train.checkpoint import list_checkpoints, load_checkpoint
from alignkit.train.distributed import Dist
from alignkit.train.loop import _accumulate, build_optimizer, fit
from alignkit.train.run import Run

CPU = Dist(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class ToyLM(torch.nn.Module):
    def __init__(self, vocab: int = 13, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.head(torch.tanh(self.emb(input_ids))))


def examples(n: int = 24) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        length = 3 + i % 5
        start = int(torch.randint(1, 13, (1,), generator=g))
        ids = [1 + (start + j) % 12 for j in range(length)]  # learnable: each token follows the previous
        out.append({"input_ids": ids, "labels_mask": [j >= 1 for j in range(length)]})
    return out


def collate(batch: list[dict]) -> dict:
    width = max(len(e["input_ids"]) for e in batch)
    ids = torch.tensor([e["input_ids"] + [0] * (width - len(e["input_ids"])) for e in batch])
    mask = torch.tensor([e["labels_mask"] + [False] * (width - len(e["labels_mask"])) for e in batch])
    attention = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in batch])
    return {"input_ids": ids, "attention_mask": attention, "labels_mask": mask, "num_tokens": int(mask[:, 1:].sum())}


def lm_loss(model, batch):
    logps = shifted_logps(model(batch["input_ids"]).logits, batch["input_ids"])
    return nll_sum(logps, batch["labels_mask"][:, 1:].float()), {}


def make_run(tmp_path, name="r", data=None, **train) -> Run:
    settings = {"batch_size": 4, "max_steps": 10, "lr": 1e-2, "save_every": 5, **train}
    cfg = SFTConfig(name=name, output_dir=str(tmp_path), model={"path": "unused"},
                    data={"train": "unused", **(data or {})}, train=settings)
    return Run.create("sft", cfg, CPU)


def test_accumulation_divides_by_tokens_of_the_whole_step():
    # parameter p = 1; micro-batch A has 1 token of loss 2p, B has 3 tokens of loss p each.
    # global mean: (2p + 3p) / 4 tokens = 1.25 p -> gradient 1.25 (a mean of means would give (2 + 1) / 2 = 1.5)
    p = torch.nn.Parameter(torch.tensor(1.0))
    batches = [{"num_tokens": 1, "scale": 2.0}, {"num_tokens": 3, "scale": 3.0}]
    loss, _, _ = _accumulate(p, batches, lambda m, b: (b["scale"] * m, {}), "num_tokens", CPU)
    assert loss == pytest.approx(1.25)
    assert p.grad.item() == pytest.approx(1.25)


def test_accumulated_gradient_equals_one_big_batch():
    data = examples(8)
    big, small = ToyLM(), ToyLM()
    whole = collate(data)
    (lm_loss(big, whole)[0] / whole["num_tokens"]).backward()
    _accumulate(small, [collate(data[:3]), collate(data[3:])], lm_loss, "num_tokens", CPU)
    for a, b in zip(big.parameters(), small.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_group_by_length_reaches_the_loop(tmp_path):
    def padding(run):  # padded positions over one epoch (24 examples of 3-7 tokens, batches of 4)
        seen = []
        fit(run, ToyLM(), examples(), lambda batch: seen.append(collate(batch)) or seen[-1], lm_loss)
        return sum(int((b["attention_mask"] == 0).sum()) for b in seen[:6])

    plain = padding(make_run(tmp_path, "plain", max_steps=6))
    grouped = padding(make_run(tmp_path, "grouped", {"group_by_length": True}, max_steps=6))
    assert grouped < plain / 2, (grouped, plain)


def test_weight_decay_skips_vectors():
    cfg = SFTConfig(name="x", model={"path": "m"}, data={"train": "d"}, train={"weight_decay": 0.1}).train
    groups = build_optimizer(ToyLM(), cfg).param_groups
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(0.1, 2), (0.0, 1)]


def test_loss_falls_and_metrics_logged(tmp_path):
    run = make_run(tmp_path, max_steps=30, save_every=0)
    result = fit(run, ToyLM(), examples(), collate, lm_loss, eval_examples=examples(8))
    lines = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [x["loss"] for x in lines if "loss" in x]
    assert train_losses[-1] < train_losses[0] - 0.3
    assert {"lr", "grad_norm", "tokens_per_s", "epoch"} <= set(lines[0])
    assert "eval/loss" in result.metrics and result.steps == 30
    assert [p.name for p in list_checkpoints(run.dir)] == ["step-30"]


def test_resume_after_signal_is_bit_identical(tmp_path):
    straight = ToyLM()
    fit(make_run(tmp_path, "straight"), straight, examples(), collate, lm_loss)

    calls = {"n": 0}

    def interrupting_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # during step 5 (one micro-batch per step): as if `kill -TERM` arrived
            signal.raise_signal(signal.SIGTERM)
        return lm_loss(model, batch)

    first = fit(make_run(tmp_path, "split"), ToyLM(), examples(), collate, interrupting_loss)
    assert first.stopped == "interrupted" and first.steps == 5
    assert [p.name for p in list_checkpoints(tmp_path / "split")] == ["step-5"]
    resumed = ToyLM()
    second = fit(make_run(tmp_path, "split", resume=True), resumed, examples(), collate, lm_loss)
    assert second.stopped == "done" and second.steps == 10
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))


def test_resume_refuses_changed_batch(tmp_path):
    fit(make_run(tmp_path, "a"), ToyLM(), examples(), collate, lm_loss)
    with pytest.raises(AlignkitError, match="cannot resume exactly"):
        fit(make_run(tmp_path, "a", resume=True, batch_size=3), ToyLM(), examples(), collate, lm_loss)


def test_existing_run_folder_is_not_overwritten(tmp_path):
    fit(make_run(tmp_path, "a"), ToyLM(), examples(), collate, lm_loss)
    with pytest.raises(AlignkitError, match="train.resume=true"):
        make_run(tmp_path, "a")
    with pytest.raises(AlignkitError, match="no checkpoint"):
        make_run(tmp_path, "b", resume=True)


def test_nan_step_is_skipped_and_training_continues(tmp_path):
    calls = {"n": 0}
    snapshot = {}

    def loss_with_nan(model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            snapshot["before"] = [p.detach().clone() for p in model.parameters()]
            return torch.tensor(float("nan")) * model.head.weight.sum(), {}
        if calls["n"] == 4:
            snapshot["after"] = [p.detach().clone() for p in model.parameters()]
        return lm_loss(model, batch)

    run = make_run(tmp_path, save_every=0)
    result = fit(run, ToyLM(), examples(), collate, loss_with_nan)
    assert result.steps == 10
    assert all(torch.equal(a, b) for a, b in zip(snapshot["before"], snapshot["after"]))
    lines = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x.get("skipped")] == [3]


def test_too_many_nan_steps_stop_with_a_message(tmp_path):
    def always_nan(model, batch):
        return torch.tensor(float("nan")) * model.head.weight.sum(), {}

    with pytest.raises(AlignkitError, match="NaN/Inf for 3 steps in a row"):
        fit(make_run(tmp_path, max_bad_steps=3), ToyLM(), examples(), collate, always_nan)


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    run = make_run(tmp_path, max_steps=10, save_every=5)
    model = ToyLM()
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies after its weights were written
            raise OSError("disk full")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        fit(run, model, examples(), collate, lm_loss)
    assert [p.name for p in list_checkpoints(run.dir)] == ["step-5"]
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(list_checkpoints(run.dir)[0], ToyLM(), build_optimizer(ToyLM(), run.cfg.train))
    assert state["step"] == 5
