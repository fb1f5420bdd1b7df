"""Every recipe option changes what it says it changes (STYLE habit 6), shown on one step of a tiny model."""

import json

import pytest

import alignkit


def first_loss(run) -> float:
    return json.loads((run.path / "metrics.jsonl").read_text().splitlines()[0])["loss"]


def one_step(recipe, tmp_path, name, model, data, *extra):
    return alignkit.run(recipe, None, f"name={name}", f"output_dir={tmp_path}", f"model.path={model}",
                        f"data.train={data}", "data.max_length=160", "train.max_steps=1", "train.batch_size=8",
                        "train.threads=1", "train.lr=1e-4", *extra)


def test_reward_margin_and_centring_change_the_loss(tmp_path, tiny_model, world_dir):
    prefs = world_dir / "prefs.jsonl"
    plain = first_loss(one_step("reward", tmp_path, "plain", tiny_model, prefs))
    margin = first_loss(one_step("reward", tmp_path, "margin", tiny_model, prefs, "reward.margin_column=votes_chosen"))
    centred = first_loss(one_step("reward", tmp_path, "centred", tiny_model, prefs, "reward.center_coef=10.0"))
    # a positive margin inside -log sigmoid(r_c - r_r - m) raises the loss; the centring penalty adds to it
    assert margin > plain + 0.5 and centred > plain


def test_dpo_nll_weight_adds_the_chosen_nll(tmp_path, tiny_model, world_dir):
    prefs = world_dir / "prefs.jsonl"
    plain = first_loss(one_step("dpo", tmp_path, "plain", tiny_model, prefs))
    with_nll = first_loss(one_step("dpo", tmp_path, "nll", tiny_model, prefs, "dpo.nll_weight=1.0"))
    assert plain == pytest.approx(0.693147, abs=1e-5)  # policy == reference at step 1
    assert with_nll > plain + 1.0  # + the per-token NLL of an untrained model (several nats)


def test_dpo_reference_path_is_used(tmp_path, tiny_model, world_dir):
    from alignkit.models.tiny import make_tiny_model

    other = make_tiny_model(world_dir / "pretrain.jsonl", tmp_path / "other", size="100k", vocab_size=512, seed=7)
    prefs = world_dir / "prefs.jsonl"
    loss = first_loss(one_step("dpo", tmp_path, "ref", tiny_model, prefs, f"dpo.reference_path={other}"))
    assert abs(loss - 0.693147) > 1e-3  # a different reference: the implicit rewards are no longer 0


def test_kto_weights_scale_the_loss(tmp_path, tiny_model, world_dir):
    data = world_dir / "unpaired.jsonl"
    plain = first_loss(one_step("kto", tmp_path, "plain", tiny_model, data))
    heavy = first_loss(one_step("kto", tmp_path, "heavy", tiny_model, data, "kto.desirable_weight=2.0",
                                "kto.undesirable_weight=2.0"))
    assert heavy == pytest.approx(2 * plain, rel=1e-5)  # both weights doubled: the loss doubles


def test_sft_packing_off_trains_the_same(tmp_path, tiny_model, world_dir):
    data = world_dir / "sft.jsonl"
    packed = one_step("sft", tmp_path, "packed", tiny_model, data, "train.max_steps=3")
    padded = one_step("sft", tmp_path, "padded", tiny_model, data, "train.max_steps=3", "data.packing=false")
    losses = [[json.loads(x)["loss"] for x in (r.path / "metrics.jsonl").read_text().splitlines()]
              for r in (packed, padded)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
