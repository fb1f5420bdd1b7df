"""`alignkit report`: training runs and evaluations on one self-contained HTML page, plus a markdown summary.

The story: find the folders (training runs with metrics.jsonl, `alignkit eval` outputs with eval.json,
over-optimisation curves in overoptimization.json) -> pair each evaluation with the run it evaluated ->
draw the plots (PNG files in plots/, and the same bytes inlined as data: URIs) -> report.html and report.md,
both written atomically. The page loads nothing from anywhere: no scripts, no fonts, no external URL.
Every string that comes from a file (prompts, responses, paths, category names) is HTML-escaped.
The figures are drawn by eval/plots.py, which imports matplotlib only when it draws.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from alignkit.errors import AlignkitError
from alignkit.eval.plots import (
    check_overoptimization_points,
    curve_series,
    overoptimization_plot,  # noqa: F401 - part of this module's API, for the later checkpoint-sweep command
    overoptimization_png,
    training_curves_png,
    win_rates_png,
)

FILES = ("metrics.jsonl", "eval.json", "overoptimization.json")
SEARCH_DEPTH = 3  # a folder holding none of FILES is searched this deep (e.g. the demo's runs/demo)
SAMPLES_SHOWN = 8  # per evaluation: decisive pairs first, then ties
LONGEST_TEXT = 1500  # characters of a prompt or response shown in the samples table

# The diagnostics table: (row label, path into eval.json's responses.<side>, format).
DIAGNOSTICS = [
    ("gold score (0-1)", ("gold_score",), ".3f"),
    ("mean reward (reward model)", ("mean_reward",), ".3f"),
    ("mean characters", ("mean_chars",), ".1f"),
    ("mean tokens", ("mean_tokens",), ".1f"),
    ("no-EOS rate (truncated)", ("no_eos_rate",), ".3f"),
    ("distinct-1", ("distinct_1",), ".3f"),
    ("distinct-2", ("distinct_2",), ".3f"),
    ("list overuse rate", ("list_overuse_rate",), ".3f"),
    ("refusal rate", ("refusal_rate",), ".3f"),
    ("reward vs length (Spearman)", ("reward_vs_length", "spearman"), "+.3f"),
    ("gold vs length (Spearman)", ("gold_vs_length", "spearman"), "+.3f"),
    ("over-refusal rate (benign prompts)", ("demo", "over_refusal_rate", "rate"), ".3f"),
    ("sycophancy rate (false premises)", ("demo", "sycophancy_rate", "rate"), ".3f"),
    ("unsafe refusal rate (higher is better)", ("demo", "unsafe_refusal_rate", "rate"), ".3f"),
    ("fabrication rate (unanswerable)", ("demo", "fabrication_rate", "rate"), ".3f"),
]
VERDICT_ORDER = {"policy": 0, "baseline": 1, "tie": 2}


@dataclass(eq=False)
class Entry:
    """One run on the page: its training metrics, evaluation and over-optimisation curve (any of these)."""

    label: str
    folders: list[Path]
    found: list[str] = field(default_factory=list)  # what was read, in words, for the page and the terminal
    recipe: str | None = None
    metrics: list[dict] | None = None
    eval: dict | None = None
    samples: list[dict] | None = None
    overoptimization: list[dict] | None = None


@dataclass
class Report:
    html: Path
    markdown: Path
    plots: list[Path]
    summary: str  # the markdown, as printed
    found: list[str]  # what was read from each folder, in words


def build_report(paths: list[str | Path], out: str | Path | None = None) -> Report:
    """Read the folders, write report.html, report.md and plots/ (next to `out`), return their paths.

    `out` defaults to report.html inside the folder when one folder is given, else ./report.html.
    """
    from alignkit.data.io import write_bytes, write_text

    if not paths:
        raise AlignkitError("report: give at least one folder (a training run or an `alignkit eval` output)")
    first = Path(paths[0]).parent if Path(paths[0]).is_file() else Path(paths[0])
    html_path = Path(out) if out is not None else (
        first / "report.html" if len(paths) == 1 else Path("report.html"))
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise AlignkitError(f"--out {html_path}: the report is an HTML file; give a path ending in .html")
    entries = pair_evaluations([read_folder(folder) for folder in find_folders(paths)])
    plots_dir = html_path.parent / "plots"

    figures = draw_figures(entries)
    for name, png in figures.items():
        write_bytes(plots_dir / name, png)
    write_text(html_path, render_html(entries, figures))
    summary = render_markdown(entries)
    md_path = write_text(html_path.with_suffix(".md"), summary)
    return Report(html_path, md_path, [plots_dir / name for name in figures], summary,
                  [line for e in entries for line in e.found])


# ---------------------------------------------------------------- reading


def find_folders(paths: list[str | Path]) -> list[Path]:
    """The folders to read: each path itself if it holds one of FILES, else its subfolders that do."""
    folders: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file() and path.name in FILES:
            path = path.parent
        if not path.is_dir():
            raise AlignkitError(f"report: {given} is not a folder; give a training run folder (runs/NAME, "
                                "with metrics.jsonl) or an `alignkit eval` output folder (with eval.json)")
        found = [path] if holds_results(path) else sorted(
            p for depth in range(1, SEARCH_DEPTH + 1) for p in path.glob("/".join(["*"] * depth))
            if p.is_dir() and holds_results(p))
        if not found:
            raise AlignkitError(
                f"report: {given} holds no {', '.join(FILES)} (nor do its subfolders): give a training run "
                "folder (runs/NAME), an `alignkit eval` output folder (its --out) or a folder above them")
        folders += [f for f in found if f not in folders]
    return folders


def holds_results(folder: Path) -> bool:
    return any((folder / name).is_file() for name in FILES)


def read_folder(folder: Path) -> Entry:
    entry = Entry(label=folder.resolve().name, folders=[folder])
    if (folder / "metrics.jsonl").is_file():
        entry.metrics = read_metrics(folder / "metrics.jsonl")
        entry.recipe = read_recipe(folder / "config.yaml")
        steps = [row["step"] for row in entry.metrics if isinstance(row.get("step"), (int, float))]
        panels = list(curve_series(entry.metrics))
        curves = ", ".join(panels) or "none (no loss, reward, accuracy or KL key in metrics.jsonl)"
        entry.found.append(
            f"{folder}: training run{f' ({entry.recipe})' if entry.recipe else ''}, {len(entry.metrics)} "
            f"metric rows{f' up to step {max(steps)}' if steps else ''}; curves: {curves}")
    if (folder / "eval.json").is_file():
        entry.eval = read_json(folder / "eval.json")
        for key in ("policy", "baseline", "judge", "win_rate", "responses"):
            if key not in entry.eval:
                raise AlignkitError(f"{folder / 'eval.json'}: no {key!r}; this file is not an "
                                    "`alignkit eval` output (write one with `alignkit eval ... --out DIR`)")
        samples_path = folder / "samples.jsonl"
        entry.samples = read_jsonl(samples_path) if samples_path.is_file() else None
        e = entry.eval
        entry.found.append(
            f"{folder}: evaluation of {e['policy']} against {e['baseline']}, "
            f"{e.get('num_prompts', '?')} prompts x {e.get('samples_per_prompt', 1)}, judge: {e['judge']}; "
            + (f"{len(entry.samples)} samples" if entry.samples is not None else "no samples.jsonl"))
    if (folder / "overoptimization.json").is_file():
        path = folder / "overoptimization.json"
        entry.overoptimization = check_overoptimization_points(read_json(path), str(path))
        entry.found.append(f"{path}: over-optimisation curve, {len(entry.overoptimization)} checkpoints")
    return entry


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AlignkitError(f"{path} line {err.lineno}, column {err.colno}: {err.msg}; "
                            "the file is not valid JSON (was its writer interrupted?)") from None


def read_jsonl(path: Path, tolerate_cut_last_line: bool = False) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if tolerate_cut_last_line and number == len(lines):
                break  # a run killed while it appended its last line
            raise AlignkitError(f"{path} line {number}, column {err.colno}: {err.msg} "
                                "(each line must be one JSON object)") from None
        if not isinstance(row, dict):
            raise AlignkitError(f"{path} line {number}: expected a JSON object, got {line[:60]!r}")
        rows.append(row)
    return rows


def read_metrics(path: Path) -> list[dict]:
    return read_jsonl(path, tolerate_cut_last_line=True)


def read_recipe(config_path: Path) -> str | None:
    """The recipe recorded in a run's config.yaml (`_meta.recipe`), or None."""
    if not config_path.is_file():
        return None
    import yaml

    try:
        meta = (yaml.safe_load(config_path.read_text()) or {}).get("_meta") or {}
    except yaml.YAMLError:
        return None
    return meta.get("recipe") if isinstance(meta, dict) else None


def pair_evaluations(entries: list[Entry]) -> list[Entry]:
    """Fold each evaluation into the training run it evaluated (its policy is that run's final/ or one of its
    checkpoints), so that a run's curves and its win rate sit together; then make every label unique."""
    runs = [e for e in entries if e.metrics is not None and e.eval is None]
    folded = []
    for entry in entries:
        if entry.eval is None or entry.metrics is not None:
            continue
        policy = Path(entry.eval["policy"]).resolve()
        run = next((r for r in runs if r.folders[0].resolve() in policy.parents), None)
        if run is None:
            continue
        runs.remove(run)  # a second evaluation of the same run stays an entry of its own
        run.folders += entry.folders
        run.found += entry.found
        run.eval, run.samples = entry.eval, entry.samples
        run.overoptimization = run.overoptimization or entry.overoptimization
        folded.append(entry)
    kept = [e for e in entries if not any(e is f for f in folded)]
    counts = Counter(e.label for e in kept)
    for entry in kept:  # two folders of one name (a/dpo, b/dpo): name them by their parent too
        if counts[entry.label] > 1:
            entry.label = f"{entry.folders[0].resolve().parent.name}/{entry.label}"
    seen: set[str] = set()
    for entry in kept:
        base, i = entry.label, 2
        while entry.label in seen:
            entry.label, i = f"{base} ({i})", i + 1
        seen.add(entry.label)
    return kept


# ---------------------------------------------------------------- figures


def draw_figures(entries: list[Entry]) -> dict[str, bytes]:
    """{file name in plots/: PNG bytes}, in page order."""
    figures = {}
    evaluated = [e for e in entries if e.eval is not None]
    if evaluated:
        figures["win_rates.png"] = win_rates_png(
            [(e.label, e.eval["win_rate"], (e.eval.get("length_controlled") or {}).get("win_rate"))
             for e in evaluated])
    for entry in entries:
        if entry.metrics is not None:
            panels = curve_series(entry.metrics)
            if panels:
                title = entry.label if entry.recipe in (None, entry.label) else (
                    f"{entry.label} ({entry.recipe})")
                figures[f"{slug(entry.label)}-curves.png"] = training_curves_png(title, panels)
        if entry.overoptimization is not None:
            figures[f"{slug(entry.label)}-overoptimization.png"] = overoptimization_png(
                entry.overoptimization, f"{entry.label}: proxy and gold reward against sqrt(KL)")
    return figures


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "run"


# ---------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; color: #1f2328; line-height: 1.45; }
h1 { margin-bottom: 0.1em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
.muted { color: #656d76; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border-bottom: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 0.8em 0 1.6em; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #656d76; }
table.samples { table-layout: fixed; width: 100%; }
table.samples td { white-space: pre-wrap; overflow-wrap: anywhere; }
.verdict-policy { color: #1a7f37; font-weight: 600; } .verdict-baseline { color: #cf222e; font-weight: 600; }
.verdict-tie { color: #656d76; }
code { background: #f6f8fa; padding: 0 0.25em; border-radius: 3px; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def num(x, spec=".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def model_name(path: str) -> str:
    """A short name for a model path: runs/dpo/final -> dpo, runs/ppo/checkpoints/step-40 -> ppo@step-40."""
    parts = Path(str(path)).parts
    if len(parts) >= 2 and parts[-1] == "final":
        return parts[-2]
    if len(parts) >= 3 and parts[-2] == "checkpoints":
        return f"{parts[-3]}@{parts[-1]}"
    return parts[-1] if parts else str(path)


def table(header: list[str], rows: list[list[str]], numeric_from: int = 1, css: str = "") -> str:
    """Rows of already-escaped cells; columns from `numeric_from` on are right-aligned numbers."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class=\"num\">{c}</td>" if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table{f' class={chr(34)}{css}{chr(34)}' if css else ''}><tr>{head}</tr>{body}</table>"


def figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{esc(caption)}\">"
            f"<figcaption>{esc(caption)} (also <a href=\"plots/{esc(name)}\">plots/{esc(name)}</a>)"
            "</figcaption></figure>")


def render_html(entries: list[Entry], figures: dict[str, bytes]) -> str:
    evaluated = [e for e in entries if e.eval is not None]
    parts = [f"<h1>alignkit report</h1><p class=\"muted\">{len(entries)} run(s), written "
             f"{datetime.now().strftime('%Y-%m-%d %H:%M')}</p>", "<h2>What was read</h2><ul>"]
    parts += [f"<li><b>{esc(e.label)}</b><ul>" + "".join(f"<li>{esc(line)}</li>" for line in e.found)
              + "</ul></li>" for e in entries]
    parts.append("</ul>")
    if evaluated:
        parts += ["<h2>Win rates</h2>", win_rate_table(evaluated),
                  figure("win_rates.png", figures["win_rates.png"],
                         "win rate against the baseline with its 95% interval; the dotted line is a tie")]
        parts += ["<h2>Win rate per category</h2>", category_table(evaluated),
                  "<h2>Diagnostics</h2>", diagnostics_table(evaluated)]
    else:
        parts.append("<h2>Win rates</h2><p>No eval.json among these folders: evaluate a run with <code>"
                     "alignkit eval POLICY PROMPTS --baseline MODEL --out DIR</code>, then add DIR.</p>")
    curves = [e for e in entries if f"{slug(e.label)}-curves.png" in figures]
    if curves:
        parts.append("<h2>Training curves</h2>")
        parts += [figure(f"{slug(e.label)}-curves.png", figures[f"{slug(e.label)}-curves.png"],
                         f"{e.label}: metrics.jsonl by step; dashed = held-out evaluation") for e in curves]
    for e in entries:
        if e.overoptimization is not None:
            parts += [f"<h2>Over-optimisation: {esc(e.label)}</h2>", overoptimization_section(e, figures)]
    for e in evaluated:
        if e.samples:
            parts += [f"<h2>Samples: {esc(e.label)}</h2>", samples_table(e)]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>alignkit report</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def win_rate_table(evaluated: list[Entry]) -> str:
    """One row per evaluation; a position-bias column when a judge was asked both ways round."""
    swapped = any((e.eval.get("position_swap") or {}).get("swapped") for e in evaluated)
    rows = []
    for e in evaluated:
        r, w = e.eval, e.eval["win_rate"]
        lc = (r.get("length_controlled") or {}).get("win_rate")
        kl = (r.get("kl") or {}).get("mean")
        gold = [r["responses"][side].get("gold_score") for side in ("policy", "baseline")]
        rows.append([esc(e.label), esc(model_name(r["baseline"])), esc(r["judge"]),
                     f"{r.get('num_prompts', '?')} x {r.get('samples_per_prompt', 1)}",
                     f"<b>{pct(w['win_rate'])}</b>", f"[{pct(w['ci_low'])}, {pct(w['ci_high'])}]", pct(lc),
                     f"{w['wins']} / {w['ties']} / {w['losses']}", num(kl, ".2f"),
                     f"{num(gold[0])} vs {num(gold[1])}"])
        if swapped:
            rows[-1].append(pct((r.get("position_swap") or {}).get("position_bias_rate")))
    return table(["run", "baseline", "judge", "prompts x n", "win rate", "95% CI", "length-controlled",
                  "wins / ties / losses", "KL to reference", "gold score (policy vs baseline)",
                  *(["position bias"] if swapped else [])], rows, numeric_from=3)


def category_table(evaluated: list[Entry]) -> str:
    categories = list(dict.fromkeys(c for e in evaluated for c in (e.eval.get("per_category") or {})))
    rows = []
    for category in categories:
        cells = [esc(category)]
        for e in evaluated:
            c = (e.eval.get("per_category") or {}).get(category)
            cells.append("-" if c is None else
                         f"{pct(c['win_rate'])} [{pct(c['ci_low'])}, {pct(c['ci_high'])}], n={c['units']}")
        rows.append(cells)
    return table(["category", *(esc(e.label) for e in evaluated)], rows)


def dig(d, path):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def diagnostics_table(evaluated: list[Entry]) -> str:
    """Each evaluated policy, then each distinct baseline once (several runs usually share one)."""
    columns = [(esc(e.label), e.eval["responses"]["policy"]) for e in evaluated]
    baselines = {}
    for e in evaluated:
        baselines.setdefault(e.eval["baseline"], e.eval["responses"]["baseline"])
    columns += [(f"{esc(model_name(name))} (baseline)", side) for name, side in baselines.items()]
    rows = [[esc(label), *(num(dig(side, path), spec) for _, side in columns)]
            for label, path, spec in DIAGNOSTICS if any(dig(side, path) is not None for _, side in columns)]
    return table(["", *(label for label, _ in columns)], rows)


def pick_samples(samples: list[dict], k: int = SAMPLES_SHOWN) -> list[dict]:
    """Up to k samples: policy wins, then baseline wins (they show what changed), then ties; file order."""
    wins = [s for s in samples if s.get("verdict") == "policy"][: k // 2]
    losses = [s for s in samples if s.get("verdict") == "baseline"][: k - len(wins)]
    chosen = wins + losses
    chosen += [s for s in samples if s not in chosen][: k - len(chosen)]
    return sorted(chosen, key=lambda s: VERDICT_ORDER.get(s.get("verdict"), 3))


def clip(text) -> str:
    text = str(text)
    if len(text) <= LONGEST_TEXT:
        return text
    return text[:LONGEST_TEXT] + f" … [{len(text) - LONGEST_TEXT} more characters]"


def samples_table(e: Entry) -> str:
    policy, baseline = model_name(e.eval["policy"]), model_name(e.eval["baseline"])
    rows = []
    for s in pick_samples(e.samples):
        verdict = s.get("verdict", "?")
        scores = "".join(f"<br><span class=\"muted\">{name}: {esc(baseline)} "
                         f"{num(s.get(f'baseline_{name}'))}, {esc(policy)} "
                         f"{num(s.get(f'policy_{name}'))}</span>"
                         for name in ("gold", "reward") if s.get(f"policy_{name}") is not None)
        rows.append([f"{esc(clip(s.get('prompt', '')))}<br><span class=\"muted\">{esc(s.get('category', ''))}"
                     "</span>", esc(clip(s.get("baseline", ""))), esc(clip(s.get("policy", ""))),
                     f"<span class=\"verdict-{esc(verdict) if verdict in VERDICT_ORDER else 'tie'}\">"
                     f"{esc(verdict)}</span>{scores}"])
    shown = f"{len(rows)} of {len(e.samples)} samples, decisive verdicts first"
    return (f"<p class=\"muted\">{esc(shown)}; the verdict names the side the judge preferred.</p>"
            + table(["prompt", f"baseline: {esc(baseline)}", f"policy: {esc(policy)}", "verdict"],
                    rows, numeric_from=4, css="samples"))


def overoptimization_section(e: Entry, figures: dict[str, bytes]) -> str:
    name = f"{slug(e.label)}-overoptimization.png"
    points = sorted(e.overoptimization, key=lambda p: p["step"])
    rows = [[str(p["step"]), num(p["kl"]), num(math.sqrt(max(p["kl"], 0.0))), num(p["proxy"]), num(p["gold"])]
            for p in points]
    return (figure(name, figures[name], f"{e.label}: proxy reward keeps rising while the gold reward peaks; "
                                        "x is sqrt(KL) to the reference (Gao et al. 2022)")
            + table(["step", "KL", "sqrt(KL)", "proxy reward", "gold reward"], rows, numeric_from=0))


# ---------------------------------------------------------------- markdown


def md(value) -> str:
    """A markdown table cell: no pipes or line breaks from the data."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(entries: list[Entry]) -> str:
    lines = [f"## alignkit report: {len(entries)} run(s)", ""]
    evaluated = [e for e in entries if e.eval is not None]
    if evaluated:
        lines += ["| run | vs | judge | win rate (95% CI) | length-controlled | wins / ties / losses | KL |",
                  "|---|---|---|---|---|---|---|"]
        for e in evaluated:
            w = e.eval["win_rate"]
            lc = (e.eval.get("length_controlled") or {}).get("win_rate")
            kl = (e.eval.get("kl") or {}).get("mean")
            lines.append(f"| {md(e.label)} | {md(model_name(e.eval['baseline']))} | {md(e.eval['judge'])} | "
                         f"{pct(w['win_rate'])} [{pct(w['ci_low'])}, {pct(w['ci_high'])}] | {pct(lc)} | "
                         f"{w['wins']} / {w['ties']} / {w['losses']} | {num(kl, '.2f')} |")
        lines.append("")
    trained = [e for e in entries if e.metrics]
    if trained:
        lines += ["| run | recipe | last step | loss (first -> last) | last eval loss |",
                  "|---|---|---|---|---|"]
        for e in trained:
            losses = [r["loss"] for r in e.metrics if isinstance(r.get("loss"), (int, float))]
            evals = [r["eval/loss"] for r in e.metrics if isinstance(r.get("eval/loss"), (int, float))]
            steps = [r["step"] for r in e.metrics if isinstance(r.get("step"), (int, float))]
            lines.append(f"| {md(e.label)} | {md(e.recipe or '-')} | {max(steps) if steps else '-'} | "
                         f"{f'{num(losses[0])} -> {num(losses[-1])}' if losses else '-'} | "
                         f"{num(evals[-1]) if evals else '-'} |")
        lines.append("")
    for e in entries:
        if e.overoptimization is not None:
            points = sorted(e.overoptimization, key=lambda p: p["kl"])
            peak = max(points, key=lambda p: p["gold"])
            last = points[-1]
            lines.append(f"Over-optimisation ({md(e.label)}): gold reward peaks at step {peak['step']} "
                         f"(sqrt KL {math.sqrt(max(peak['kl'], 0)):.2f}, gold {peak['gold']:.3f}); at the "
                         f"largest KL the proxy is {last['proxy']:.3f} and the gold {last['gold']:.3f}.")
    return "\n".join(lines).rstrip() + "\n"
