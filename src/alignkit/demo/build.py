"""Writes the demo world's data files: one JSONL file per pipeline stage plus a manifest.

Column names follow Hugging Face TRL's dataset formats (text; prompt/completion; prompt/chosen/
rejected; prompt/completion/label; prompt/completions/labels). Every file draws from its own
random stream seeded by (seed, file name), so the output is byte-for-byte the same for a given
seed and scale, and held-out prompts never reach a training file. Standard library only (plus
alignkit.data.io, which is too).
"""
import json
import os
import random
from pathlib import Path

from alignkit.data.io import write_jsonl
from alignkit.demo.annotators import DEFAULT_PANEL, LENGTH_BIASED_PANEL, borda_ranking, tally, thumbs_up, vote
from alignkit.demo.judge import gold_score, gold_verdict
from alignkit.demo.world import CATEGORIES, Task, World, everyday_sentence, sample_multi_step

ROWS_AT_SCALE_1 = {
    "pretrain": 20_000,
    "sft": 10_000,
    "sft_eval": 500,
    "prefs": 4_000,  # prefs_biased labels the same candidate pairs
    "prefs_eval": 500,
    "prefs_gold": 4_000,  # training pairs labelled by the gold judge: data for a generative judge (RLAIF)
    "ranked": 1_000,
    "unpaired": 4_000,
    "prompts": 2_000,
    "prompts_eval": 500,
    "stepwise": 1_000,
}
CATEGORY_WEIGHTS = {
    "arithmetic": 0.18, "list_string": 0.18, "knowledge": 0.18, "unsafe": 0.10,
    "unanswerable": 0.12, "benign_looks_unsafe": 0.12, "false_premise": 0.12,
}
# Demonstrations carry their writers' habits: a chatty opener and closer round every answer, and in the
# behaviour categories the most common demonstration is a helpful-at-all-costs one (complying, making an
# answer up, going along with a false premise) or an over-cautious refusal. The SFT model imitates the
# commonest habit; comparing replies (the preference pairs) is what shows a better one, as in InstructGPT
# (Ouyang et al. 2022). Each category's shares: the rest goes to its other flaws, evenly.
SFT_HABITS = {
    "arithmetic": {"best": 0.30, "chatty": 0.55},
    "list_string": {"best": 0.30, "chatty": 0.55},
    "knowledge": {"best": 0.30, "chatty": 0.55},
    "unsafe": {"best": 0.30, "comply": 0.55},
    "unanswerable": {"best": 0.30, "fabricate": 0.55},
    "benign_looks_unsafe": {"best": 0.30, "refuse": 0.55},
    "false_premise": {"best": 0.30, "agree": 0.55},
}
PRETRAIN_BEST_SHARE = 0.2  # dialogues found on the web: the best reply now and then, any flaw otherwise
PRETRAIN_MIX = {"dialogue": 0.4, "fact": 0.3, "everyday": 0.3}
BEST_PAIR_SHARE = 0.5  # preference pairs: best vs a flaw, otherwise flaw vs flaw
UNPAIRED_BEST_SHARE = 0.5
RANKED_K = 4
STEPWISE_CORRECT_SHARE = 0.4


def file_rng(seed: int, name: str) -> random.Random:
    return random.Random(f"alignkit-demo|{seed}|{name}")


def sized(name: str, scale: float) -> int:
    return max(1, round(ROWS_AT_SCALE_1[name] * scale))


def draw_category(rng: random.Random, allowed=CATEGORIES) -> str:
    return rng.choices(allowed, weights=[CATEGORY_WEIGHTS[c] for c in allowed])[0]


def dialogue(prompt: str, response: str) -> str:
    return f"User: {prompt}\nAssistant: {response}"


def draw_reply(world: World, task: Task, rng: random.Random, best_share: float) -> str:
    variants = world.responses(task, rng)
    if rng.random() < best_share:
        return variants["best"]
    return variants[rng.choice([name for name in variants if name != "best"])]


def draw_demonstration(world: World, task: Task, rng: random.Random) -> str:
    """A demonstration as the category's writers tend to write it (SFT_HABITS)."""
    variants = world.responses(task, rng)
    habits = SFT_HABITS[task.category]
    draw, cumulative = rng.random(), 0.0
    for name, share in habits.items():
        cumulative += share
        if draw < cumulative:
            return variants[name]
    return variants[rng.choice([name for name in variants if name not in habits])]


def draw_pair(world: World, task: Task, rng: random.Random) -> tuple[str, str]:
    """Two different replies in random order: best against a flaw, or two flaws."""
    variants = world.responses(task, rng)
    flawed = [name for name in variants if name != "best"]
    names = ["best", rng.choice(flawed)] if rng.random() < BEST_PAIR_SHARE else rng.sample(flawed, 2)
    rng.shuffle(names)
    return variants[names[0]], variants[names[1]]


def distinct_tasks(world: World, rng: random.Random, n: int, split: str) -> list[Task]:
    """Up to n different prompts of one split, categories by weight; a category whose prompts
    run out (a few hundred knowledge questions, ~60 benign ones) stops being drawn."""
    tasks, seen, misses = [], set(), {c: 0 for c in CATEGORIES}
    open_categories = list(CATEGORIES)
    while len(tasks) < n and open_categories:
        category = draw_category(rng, open_categories)
        prompt = world.sample_prompt(rng, category)
        if world.split_of(prompt) != split or prompt in seen:
            misses[category] += 1
            if misses[category] > 2_000:
                open_categories.remove(category)
            continue
        misses[category] = 0
        seen.add(prompt)
        tasks.append(world.parse(prompt))
    return tasks


def pretrain_rows(world: World, rng: random.Random, n: int) -> list[dict]:
    facts = world.fact_sentences()
    rows = []
    for _ in range(n):
        kind = rng.choices(tuple(PRETRAIN_MIX), weights=tuple(PRETRAIN_MIX.values()))[0]
        if kind == "dialogue":
            task = world.sample_task(rng, draw_category(rng))
            text = dialogue(task.prompt, draw_reply(world, task, rng, PRETRAIN_BEST_SHARE))
        else:
            text = rng.choice(facts) if kind == "fact" else everyday_sentence(rng)
        rows.append({"text": text})
    return rows


def sft_rows(world: World, rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        task = world.sample_task(rng, draw_category(rng))
        completion = draw_demonstration(world, task, rng)
        rows.append({"prompt": task.prompt, "completion": completion, "category": task.category})
    return rows


def preference_rows(world: World, rng: random.Random, n: int) -> tuple[list[dict], list[dict], dict]:
    """Pairs labelled by the default panel (until n are decisive) and, on the very same pairs, by
    the length-biased panel. Ties are dropped and counted."""
    rows, biased_rows = [], []
    stats = {"ties_dropped": 0, "biased_ties_dropped": 0, "gold_agree": 0, "gold_disagree": 0, "gold_tie": 0}
    biased_rng = random.Random(f"{rng.random()}|biased votes")  # its own stream: retuning one panel leaves
    while len(rows) < n:                                         # the other panel's labels as they were
        task = world.sample_task(rng, draw_category(rng))
        a, b = draw_pair(world, task, rng)
        for panel, kept, tie_key, votes_rng in ((DEFAULT_PANEL, rows, "ties_dropped", rng),
                                                (LENGTH_BIASED_PANEL, biased_rows, "biased_ties_dropped",
                                                 biased_rng)):
            votes = tally(vote(panel, world, task.prompt, a, b, votes_rng))
            if votes.winner == "tie":
                stats[tie_key] += 1
                continue
            chosen, rejected = (a, b) if votes.winner == "A" else (b, a)
            won, lost = (votes.a, votes.b) if votes.winner == "A" else (votes.b, votes.a)
            kept.append({"prompt": task.prompt, "chosen": chosen, "rejected": rejected,
                         "category": task.category, "votes_chosen": won, "votes_rejected": lost,
                         "votes_tie": votes.tie})
            if panel is DEFAULT_PANEL:
                verdict = gold_verdict(world, task.prompt, chosen, rejected)
                stats[{"A": "gold_agree", "B": "gold_disagree", "tie": "gold_tie"}[verdict]] += 1
    return rows, biased_rows, stats


def gold_preference_rows(world: World, rng: random.Random, tasks: list[Task],
                         n: int) -> tuple[list[dict], int]:
    """Pairs on `tasks` labelled by the gold judge itself, gold ties skipped and counted. On held-out prompts
    they are the yardstick for reward-model accuracy; on training prompts, a generative judge's lessons."""
    rows, ties = [], 0
    for i in range(n * 20):
        if len(rows) == n:
            break
        task = tasks[i % len(tasks)]
        a, b = draw_pair(world, task, rng)
        score_a, score_b = gold_score(world, task.prompt, a), gold_score(world, task.prompt, b)
        verdict = gold_verdict(world, task.prompt, a, b)
        if verdict == "tie":
            ties += 1
            continue
        (chosen, s_chosen), (rejected, s_rejected) = ((a, score_a), (b, score_b)) if verdict == "A" else \
            ((b, score_b), (a, score_a))
        rows.append({"prompt": task.prompt, "chosen": chosen, "rejected": rejected, "category": task.category,
                     "score_chosen": round(s_chosen, 4), "score_rejected": round(s_rejected, 4)})
    return rows, ties


def ranked_rows(world: World, rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        task = world.sample_task(rng, draw_category(rng))
        variants = world.responses(task, rng)
        responses = [variants[name] for name in rng.sample(list(variants), RANKED_K)]
        ranking = borda_ranking(DEFAULT_PANEL, world, task.prompt, responses, rng)
        rows.append({"prompt": task.prompt, "responses": responses, "ranking": ranking,
                     "category": task.category})
    return rows


def unpaired_rows(world: World, rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        task = world.sample_task(rng, draw_category(rng))
        completion = draw_reply(world, task, rng, UNPAIRED_BEST_SHARE)
        label = thumbs_up(DEFAULT_PANEL, world, task.prompt, completion, rng)
        rows.append({"prompt": task.prompt, "completion": completion, "label": label,
                     "category": task.category})
    return rows


def prompt_rows(tasks: list[Task]) -> list[dict]:
    return [{"prompt": t.prompt, "category": t.category, "answer": t.answer} for t in tasks]


def stepwise_rows(world: World, rng: random.Random, n: int) -> list[dict]:
    rows = []
    while len(rows) < n:
        prompt = sample_multi_step(rng)
        if world.split_of(prompt) != "train":
            continue
        slip_at = None if rng.random() < STEPWISE_CORRECT_SHARE else rng.randrange(3)
        steps, labels = world.worked_steps(world.parse(prompt), rng, slip_at)
        rows.append({"prompt": prompt, "completions": steps, "labels": labels})
    return rows


def write_atomically(path: Path, text: str) -> None:
    """Readers never see half a file: write name.tmp, then rename over the target."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)




def category_counts(rows: list[dict]) -> dict[str, int]:
    counts = {c: sum(row.get("category") == c for row in rows) for c in CATEGORIES}
    return {c: k for c, k in counts.items() if k}


def longer_chosen_share(rows: list[dict]) -> float:
    """Share of pairs (of unequal length) whose chosen reply is the longer one."""
    unequal = [row for row in rows if len(row["chosen"]) != len(row["rejected"])]
    return sum(len(row["chosen"]) > len(row["rejected"]) for row in unequal) / max(1, len(unequal))


def write_demo_data(out_dir, seed: int = 0, scale: float = 1.0) -> dict[str, Path]:
    """Builds every demo file under out_dir and returns {name: path}, "manifest" included."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = World(seed)
    eval_tasks = distinct_tasks(world, file_rng(seed, "eval_prompts"), sized("prompts_eval", scale), "eval")
    train_tasks = distinct_tasks(world, file_rng(seed, "prompts"), sized("prompts", scale), "train")
    prefs, prefs_biased, pref_stats = preference_rows(world, file_rng(seed, "prefs"), sized("prefs", scale))
    prefs_eval, gold_ties = gold_preference_rows(world, file_rng(seed, "prefs_eval"), eval_tasks,
                                                 sized("prefs_eval", scale))
    prefs_gold, _ = gold_preference_rows(world, file_rng(seed, "prefs_gold"), train_tasks,
                                         sized("prefs_gold", scale))
    files = {
        "pretrain": pretrain_rows(world, file_rng(seed, "pretrain"), sized("pretrain", scale)),
        "sft": sft_rows(world, file_rng(seed, "sft"), sized("sft", scale)),
        "sft_eval": [{"prompt": t.prompt, "completion": world.best_response(t), "category": t.category}
                     for t in eval_tasks[: sized("sft_eval", scale)]],
        "prefs": prefs,
        "prefs_eval": prefs_eval,
        "prefs_biased": prefs_biased,
        "prefs_gold": prefs_gold,
        "ranked": ranked_rows(world, file_rng(seed, "ranked"), sized("ranked", scale)),
        "unpaired": unpaired_rows(world, file_rng(seed, "unpaired"), sized("unpaired", scale)),
        "prompts": prompt_rows(train_tasks),
        "prompts_eval": prompt_rows(eval_tasks),
        "stepwise": stepwise_rows(world, file_rng(seed, "stepwise"), sized("stepwise", scale)),
    }
    paths = {}
    for name, rows in files.items():
        paths[name] = out / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    judged = pref_stats["gold_agree"] + pref_stats["gold_disagree"]
    manifest = {
        "seed": seed,
        "scale": scale,
        "rows": {name: len(rows) for name, rows in files.items()},
        "categories": {name: category_counts(rows) for name, rows in files.items()
                       if name not in ("pretrain", "stepwise")},
        "prefs_ties_dropped": pref_stats["ties_dropped"],
        "prefs_biased_ties_dropped": pref_stats["biased_ties_dropped"],
        "prefs_eval_gold_ties_skipped": gold_ties,
        "panel_gold_agreement": round(pref_stats["gold_agree"] / max(1, judged), 4),
        "panel_pairs_gold_tied": pref_stats["gold_tie"],
        "longer_chosen_share": {"prefs": round(longer_chosen_share(prefs), 4),
                                "prefs_biased": round(longer_chosen_share(prefs_biased), 4)},
    }
    paths["manifest"] = out / "manifest.json"
    write_atomically(paths["manifest"], json.dumps(manifest, indent=2) + "\n")
    return paths
