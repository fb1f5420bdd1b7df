"""`alignkit reward` on the demo world: held-out agreement with the gold judge rises well above chance."""

import json

import pytest

import alignkit
from alignkit.errors import AlignkitError


def test_reward_model_learns_the_gold_preferences(tmp_path, tiny_model, world_dir):
    result = alignkit.run(
        "reward", None, "name=rm", f"output_dir={tmp_path}", f"model.path={tiny_model}",
        f"data.train={world_dir / 'prefs.jsonl'}", f"data.eval={world_dir / 'prefs_eval.jsonl'}",
        "data.max_length=160", "train.lr=3e-3", "train.batch_size=16", "train.max_steps=120",
        "train.eval_every=40", "train.threads=1", "train.warmup_steps=5",
    )
    lines = [json.loads(x) for x in (result.path / "metrics.jsonl").read_text().splitlines()]
    accuracy = [x["eval/accuracy"] for x in lines if "eval/accuracy" in x]
    assert accuracy[-1] > 0.65, accuracy  # prefs_eval.jsonl is labelled by the gold judge; chance is 0.5
    stats = json.loads((result.path / "final" / "reward_stats.json").read_text())
    assert stats["count"] > 0 and stats["std"] > 0

    from alignkit.config import ModelSettings
    from alignkit.models.heads import load_scalar_model

    load_scalar_model(ModelSettings(path=str(result.path / "final")), new_head=False)  # a reward model loads
    with pytest.raises(AlignkitError, match="is not a reward model"):
        load_scalar_model(ModelSettings(path=str(tiny_model)), new_head=False)


def test_margin_column_need_not_be_in_the_eval_file(tmp_path, tiny_model, world_dir):
    common = ["name=rm_margin", f"output_dir={tmp_path}", f"model.path={tiny_model}", "data.max_length=160",
              "train.batch_size=8", "train.max_steps=2", "train.threads=1", "reward.margin_column=votes_tie"]
    result = alignkit.run("reward", None, *common, f"data.train={world_dir / 'prefs.jsonl'}",
                          f"data.eval={world_dir / 'prefs_eval.jsonl'}")  # gold-labelled: no vote columns
    assert result.metrics["eval/accuracy"] >= 0
    with pytest.raises(AlignkitError, match="margin column 'votes_tie'"):  # a training file must have it
        alignkit.run("reward", None, *common, f"data.train={world_dir / 'prefs_eval.jsonl'}")


def test_lm_coef_trains_the_backbone_as_a_language_model_too(tmp_path, tiny_model, world_dir):
    result = alignkit.run(
        "reward", None, "name=rm_lm", f"output_dir={tmp_path}", f"model.path={tiny_model}",
        f"data.train={world_dir / 'prefs.jsonl'}", "data.max_length=160", "data.group_by_length=true",
        "train.lr=3e-3", "train.batch_size=16", "train.max_steps=40", "train.log_every=10", "train.threads=1",
        "reward.lm_coef=1.0",
    )
    nll = [x["lm_nll"] for x in map(json.loads, (result.path / "metrics.jsonl").read_text().splitlines())
           if "lm_nll" in x]
    assert len(nll) == 4 and nll[-1] < nll[0] - 0.5, nll  # the chosen replies' NLL falls (from ~ln 1024)

    from alignkit.config import ModelSettings
    from alignkit.models.heads import load_scalar_model

    model, _ = load_scalar_model(ModelSettings(path=str(result.path / "final")), new_head=False)
    assert not any("lm_head" in name for name, _ in model.named_parameters())  # saved as a plain reward model


def test_ranked_rows_keep_their_pairs_together(world_dir, tiny_model):
    from alignkit.data.io import read_rows
    from alignkit.data.tokenize import tokenize_preference
    from alignkit.models.load import load_tokenizer
    from alignkit.config import ModelSettings
    from alignkit.recipes.reward import collate_reward, group_by_prompt

    rows = read_rows(world_dir / "ranked.jsonl")
    pairs, _ = tokenize_preference(rows.select(range(5)), load_tokenizer(ModelSettings(path=str(tiny_model))),
                                   512, "error")
    groups = group_by_prompt(pairs)
    assert len(groups) == 5 and all(len(g) == 6 for g in groups)  # K=4 -> 4*3/2 pairs per prompt
    batch = collate_reward(groups[:2], pad_id=0)
    assert batch["num_pairs"] == 12 and batch["input_ids"].shape[0] == 8  # each response scored once
    rows = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(batch["input_ids"].tolist(),
                                                                     batch["attention_mask"].tolist())]
    for k, pair in enumerate(groups[0] + groups[1]):  # the indices lead back to every pair's two sequences
        assert rows[batch["chosen_index"][k]] == pair["prompt_ids"] + pair["chosen_ids"]
        assert rows[batch["rejected_index"][k]] == pair["prompt_ids"] + pair["rejected_ids"]


def test_score_command_single_and_ensemble(tmp_path, tiny_model, world_dir):
    from cli_runner import cli

    members = []
    for seed in (0, 1):
        run = alignkit.run(
            "reward", None, f"name=rm{seed}", f"output_dir={tmp_path}", f"model.path={tiny_model}", f"seed={seed}",
            f"data.train={world_dir / 'prefs.jsonl'}", "data.max_length=160", "train.max_steps=5",
            "train.batch_size=8", "train.threads=1",
        )
        members.append(str(run.path / "final"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": "What is 2 + 3?", "completion": c}) + "\n"
                            for c in ["2 + 3 = 5.", "I can't help with that."]))
    cli("score", str(rows), str(tmp_path / "one.jsonl"), "--model", members[0])
    cli("score", str(rows), str(tmp_path / "ens.jsonl"), "--model", members[0], "--model", members[1],
        "--ensemble", "min")
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    ens = [json.loads(x) for x in (tmp_path / "ens.jsonl").read_text().splitlines()]
    assert len(one) == 2 and all(isinstance(r["score"], float) for r in one)
    assert all(r["score"] == pytest.approx(min(r["scores"]), abs=1e-6) for r in ens)
    assert ens[0]["scores"][0] == pytest.approx(one[0]["score"], abs=1e-5)  # member 0 alone scores the same


def test_reward_trains_data_parallel_with_procs_2(tmp_path, tiny_model, world_dir):
    # The reward model runs inside DDP's forward (SequenceScorer): calling the backbone of a DDP-wrapped
    # model directly used to fail with "'DistributedDataParallel' object has no attribute 'model'".
    from cli_runner import cli

    cli("reward", "--procs", "2", *_reward_args(tmp_path, tiny_model, world_dir))
    assert (tmp_path / "rm2" / "final" / "reward_stats.json").is_file()


def _reward_args(tmp_path, tiny_model, world_dir):
    from alignkit.starters import write_starter

    config = write_starter("reward", tmp_path)
    return [str(config), "name=rm2", f"output_dir={tmp_path}", f"model.path={tiny_model}",
            f"data.train={world_dir / 'prefs.jsonl'}", "data.eval=null", "data.max_length=160", "train.max_steps=4",
            "train.batch_size=4", "train.threads=1", "train.save_every=0", "train.eval_every=0"]
