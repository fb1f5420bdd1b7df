"""The `alignkit` command line: one Typer app; each command is a thin call into a recipe or module.

No heavy import at module level, so `alignkit --help` answers at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from alignkit.errors import AlignkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Align language models with preferences: pretraining, SFT, reward models, DPO and its "
                  "variants, KTO, PPO, GRPO, evaluation, reports and the demo pipeline.")

CONFIG = typer.Argument(..., help="YAML config (write a starter with `alignkit init RECIPE`)")
OVERRIDES = typer.Argument(None, help="dotted overrides, e.g. train.lr=3e-4 data.max_length=256")
JUDGE_URL = typer.Option(None, "--judge-url", help="an OpenAI-compatible endpoint's base URL (e.g. "
                         "http://127.0.0.1:8000/v1); without it the judge model is a local folder")
JUDGE_KEY = typer.Option(None, "--judge-api-key-env", help="name of the environment variable holding the API key")
JUDGE_CACHE = typer.Option(None, "--judge-cache", help="folder of cached judge answers (reruns ask nothing twice)")
JUDGE_RUBRIC = typer.Option(None, "--judge-rubric", help="a text file replacing the default rubric "
                            "(helpful, honest, harmless)")
JUDGE_BARE = typer.Option(False, "--judge-bare", help="ask the task alone, no system message or rubric: for "
                          "a judge trained on `alignkit convert judge-sft` data")
PROCS = typer.Option(1, "--procs", min=1, help="data-parallel processes on this machine (runs torchrun for you)")


def _train(recipe: str, config: Path, overrides: Optional[list[str]], procs: int) -> None:
    if procs > 1 and "WORLD_SIZE" not in os.environ:
        # Same as `torchrun --nproc_per_node N -m alignkit ...`: replace this process with torchrun.
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                "-m", "alignkit", recipe, str(config), *(overrides or [])]
        os.execv(sys.executable, args)
    import alignkit

    alignkit.run(recipe, config, *(overrides or []))


@app.command()
def pretrain(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES, procs: int = PROCS) -> None:
    """Causal language modelling on raw text (a `text` column), packed into blocks."""
    _train("pretrain", config, overrides, procs)


@app.command()
def sft(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES, procs: int = PROCS) -> None:
    """Supervised fine-tuning on demonstrations (prompt+completion or messages); loss on responses only."""
    _train("sft", config, overrides, procs)


@app.command()
def reward(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES, procs: int = PROCS) -> None:
    """A reward model from preference pairs or rankings: Bradley-Terry on a scalar head."""
    _train("reward", config, overrides, procs)


@app.command()
def dpo(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES, procs: int = PROCS) -> None:
    """Direct preference optimisation and variants (dpo.loss: sigmoid, ipo, conservative, robust, hinge, simpo, orpo)."""
    _train("dpo", config, overrides, procs)


@app.command()
def kto(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES, procs: int = PROCS) -> None:
    """Kahneman-Tversky optimisation from unpaired desirable / undesirable completions."""
    _train("kto", config, overrides, procs)


@app.command()
def ppo(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """PPO against a reward model with a KL penalty to a frozen reference (policy, reference, reward, value)."""
    _train("ppo", config, overrides, 1)


@app.command()
def grpo(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """GRPO / Dr. GRPO / DAPO / RLOO: G samples per prompt, reward functions, a group baseline, no critic."""
    _train("grpo", config, overrides, 1)


@app.command()
def prm(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES, procs: int = PROCS) -> None:
    """A process reward model from stepwise rows: a correctness score for every step, read at its last token."""
    _train("prm", config, overrides, procs)


@app.command()
def cai(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Constitutional AI data: critique -> revise rows for sft, and AI-judged preference pairs (RLAIF) for
    reward / dpo, under the principles of a constitution (cai.phase: sft, prefs or both)."""
    _train("cai", config, overrides, 1)


@app.command()
def init(
    recipe: str = typer.Argument(..., help="pretrain, sft, reward, ..."),
    directory: Path = typer.Argument(Path("."), help="where to write RECIPE.yaml"),
    force: bool = typer.Option(False, help="overwrite an existing file"),
) -> None:
    """Write a commented starter config for RECIPE."""
    from alignkit.starters import write_starter

    print(f"wrote {write_starter(recipe, directory, force)}")


@app.command()
def validate(config: Path = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Check a config and its data without training: counts, lengths, truncation, empty and identical rows."""
    from alignkit.validate import validate_config_and_data

    problems = validate_config_and_data(config, overrides or [])
    raise typer.Exit(code=1 if problems else 0)


@app.command()
def convert(
    format: str = typer.Argument(..., help="hh-rlhf, ultrafeedback, oasst, dolly, ultrachat; or judge-sft "
                                           "(our preference rows -> a pairwise judge's training chats)"),
    source: Path = typer.Argument(..., help="the dataset in its original format (JSONL, Parquet, CSV, folder)"),
    out: Path = typer.Argument(..., help="output JSONL in alignkit's (TRL-compatible) rows"),
) -> None:
    """Convert a public dataset's rows to ours; every row left out is counted with its reason."""
    from alignkit.data.convert import convert_file

    print(convert_file(format, source, out).summary())


@app.command()
def score(
    source: Path = typer.Argument(..., help="rows with prompt and completion (or response)"),
    out: Path = typer.Argument(..., help="output JSONL: each row plus its score"),
    model: list[str] = typer.Option(..., "--model", help="a reward model folder; repeat for an ensemble"),
    ensemble: str = typer.Option("mean", help="mean, min or mean_minus_std (several --model)"),
    k: float = typer.Option(1.0, help="the k of mean_minus_std"),
    max_length: int = typer.Option(1024, help="longest prompt+response in tokens (longer rows are an error)"),
    reduce: Optional[str] = typer.Option(None, help="a process reward model (prm.json): min (default), "
                                                    "product or last of its step scores"),
) -> None:
    """Score prompt/response rows with a reward model or an ensemble of them, or every step of each response
    with a process reward model."""
    from alignkit.score import score_file

    summary = score_file(model, str(source), str(out), ensemble, k, max_length, reduce=reduce)
    unscored = summary.get("unscored")
    unscored = f" ({unscored:,} without a step that fits: score null)" if unscored else ""
    print(f"scored {summary['rows']:,} rows{unscored}: mean {summary['mean']:.4f}, std {summary['std']:.4f} "
          f"-> {out}")


@app.command("best-of-n")
def best_of_n_cmd(
    model: str = typer.Argument(..., help="the policy: a causal LM folder (e.g. runs/sft/final)"),
    prompts: Path = typer.Argument(..., help="rows with a `prompt` column (string or message list)"),
    out: Path = typer.Argument(..., help="output JSONL: each row plus the chosen completion, its score, all scores"),
    reward: str = typer.Option(..., "--reward", help="a reward model or a PRM folder (detected by its prm.json)"),
    n: int = typer.Option(8, help="samples per prompt"),
    reduce: Optional[str] = typer.Option(None, help="PRM only: min (default), product or last"),
    gold: bool = typer.Option(False, help="demo-world prompts: also report the gold judge's scores"),
    temperature: float = typer.Option(1.0),
    top_p: float = typer.Option(1.0),
    max_new_tokens: int = typer.Option(64),
    seed: Optional[int] = typer.Option(0, help="sampling seed"),
    batch_size: int = typer.Option(16, help="prompts sampled together"),
) -> None:
    """Sample N responses per prompt and keep the one the reward scores highest; report the gain over one sample."""
    from alignkit.best_of_n import best_of_n
    from alignkit.generation.sampler import SamplingSettings

    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    s = best_of_n(model, str(prompts), str(out), reward, n, reduce, gold, settings, batch_size)
    print(f"best of {n} for {s['prompts']:,} prompts -> {out} (sampling {s['sampling_s']:.1f} s, "
          f"scoring {s['scoring_s']:.1f} s)")
    if s["scored_prompts"]:
        print(f"reward: chosen {s['reward_chosen']:.4f} vs first sample {s['reward_first']:.4f} "
              f"({s['reward_chosen'] - s['reward_first']:+.4f}) over {s['scored_prompts']:,} scored prompts")
    if "gold_chosen" in s:
        print(f"gold judge: chosen {s['gold_chosen']:.4f} vs first sample {s['gold_first']:.4f} "
              f"({s['gold_chosen'] - s['gold_first']:+.4f})")


@app.command()
def pipeline(
    config: Path = typer.Argument(..., help="pipeline YAML: name, output_dir, stages (name, recipe, config, overrides)"),
    force: Optional[list[str]] = typer.Option(None, "--force", help="rerun this stage even if done (repeatable; 'all')"),
) -> None:
    """Run named stages in order (sft -> reward -> ppo -> eval ...); a stage refers to an earlier one as {name}."""
    from alignkit.pipeline import run_pipeline

    run_pipeline(config, force or [])


@app.command()
def overopt(
    run_dir: Path = typer.Argument(..., help="a ppo or grpo run folder with several checkpoints"),
    prompts: Path = typer.Argument(..., help="held-out demo-world prompts (e.g. data/demo/prompts_eval.jsonl)"),
    reward_model: str = typer.Option(..., "--reward-model", help="the proxy reward the run optimised"),
    limit: int = typer.Option(200, help="prompts sampled per checkpoint"),
    max_new_tokens: int = typer.Option(64),
) -> None:
    """Proxy and gold reward of every checkpoint against KL to the start: writes RUN_DIR/overoptimization.json."""
    from alignkit.eval.overopt import write_overoptimization

    path = write_overoptimization(run_dir, str(prompts), reward_model, limit=limit, max_new_tokens=max_new_tokens)
    print(f"wrote {path}; `alignkit report {run_dir}` plots it")


@app.command("generate")
def generate_cmd(
    model: str = typer.Argument(..., help="a causal LM folder (e.g. runs/sft/final)"),
    prompts: Path = typer.Argument(..., help="rows with a `prompt` column (string or message list)"),
    out: Path = typer.Argument(..., help="output JSONL: each row plus completion, sample, truncated"),
    n: int = typer.Option(1, help="samples per prompt"),
    temperature: float = typer.Option(1.0, help="0 is greedy"),
    top_p: float = typer.Option(1.0),
    top_k: int = typer.Option(0, help="0: off"),
    max_new_tokens: int = typer.Option(128),
    stop: Optional[list[str]] = typer.Option(None, help="stop string (repeatable)"),
    seed: Optional[int] = typer.Option(None),
    batch_size: int = typer.Option(64, help="prompts sampled together"),
) -> None:
    """Sample completions with a KV cache: batched, n per prompt, top-k / top-p, stop strings."""
    from alignkit.generation.jsonl import generate_file
    from alignkit.generation.sampler import SamplingSettings

    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                n=n, stop_strings=tuple(stop or ()), seed=seed)
    summary = generate_file(model, str(prompts), str(out), settings, batch_size)
    print(f"wrote {summary['rows']:,} completions to {out} ({summary['tokens_per_s']:,.0f} tokens/s; "
          f"{summary['truncated']:,} cut at max_new_tokens)")


@app.command("eval")
def eval_cmd(
    policy: str = typer.Argument(..., help="the model folder to evaluate (e.g. runs/dpo/final)"),
    prompts: Path = typer.Argument(..., help="held-out prompts: rows with `prompt` (and `category`), "
                                             "e.g. the demo's prompts_eval.jsonl"),
    baseline: Optional[str] = typer.Option(None, help="a model folder to compare against (e.g. runs/sft/final)"),
    baseline_column: Optional[str] = typer.Option(None, help="or: a column of PROMPTS with reference responses"),
    judge: str = typer.Option("gold", help="gold (the demo world's judge), reward-model, or llm (an LLM judge: "
                                           "--judge-model, and --judge-url for an endpoint)"),
    judge_model: Optional[str] = typer.Option(None, help="--judge llm: a local model folder, or with --judge-url "
                                                         "the endpoint's model name"),
    judge_url: Optional[str] = JUDGE_URL,
    judge_api_key_env: Optional[str] = JUDGE_KEY,
    judge_cache: Optional[Path] = JUDGE_CACHE,
    judge_rubric: Optional[Path] = JUDGE_RUBRIC,
    judge_bare: bool = JUDGE_BARE,
    reward_model: Optional[str] = typer.Option(None, help="a reward model folder: judges with --judge "
                                                          "reward-model; otherwise adds mean reward"),
    reference: Optional[str] = typer.Option(None, help="a model folder to measure KL(policy || reference) against"),
    out: Path = typer.Option(Path("runs/eval"), help="folder for eval.json and samples.jsonl"),
    n: int = typer.Option(1, help="samples per prompt"),
    temperature: float = typer.Option(0.0, help="0 is greedy"),
    top_p: float = typer.Option(1.0),
    max_new_tokens: int = typer.Option(128),
    seed: int = typer.Option(0, help="sampling seed"),
    limit: Optional[int] = typer.Option(None, help="evaluate the first LIMIT prompts only"),
    world_seed: int = typer.Option(0, help="seed of the demo world the prompts come from (gold judge)"),
    batch_size: int = typer.Option(64, help="prompts sampled together"),
    max_length: int = typer.Option(1024, help="longest prompt+response the reward model scores, in tokens"),
) -> None:
    """A policy against a baseline on held-out prompts: win rate with a 95% interval, per category and
    length-controlled; KL, lengths, distinct-n and reward-hacking diagnostics. Writes eval.json, samples.jsonl."""
    from alignkit.eval.run import EvalSettings, evaluate

    llm = None
    if judge == "llm":
        if judge_model is None:
            raise AlignkitError("eval: --judge llm needs --judge-model (a model folder, or a name with --judge-url)")
        llm = _make_judge(judge_model, judge_url, judge_api_key_env, judge_cache, judge_rubric,
                          bare=judge_bare)
    evaluate(EvalSettings(
        policy=policy, prompts=str(prompts), out=str(out), baseline=baseline, baseline_column=baseline_column,
        judge=judge, reward_model=reward_model, reference=reference, world_seed=world_seed, n=n,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, limit=limit,
        batch_size=batch_size, max_length=max_length,
    ), llm_judge=llm)
    if llm is not None and llm.counts.unparsed + llm.counts.request_failed:
        print(f"llm judge: {llm.counts.unparsed + llm.counts.request_failed:,} of {llm.counts.questions:,} "
              "judgments failed and were read as ties (eval.json: judge_failures)")


def _make_judge(model: str, url, api_key_env, cache, rubric: Optional[Path], **options):
    from alignkit.rewards.judge import make_judge

    return make_judge(model, url, api_key_env, None if cache is None else str(cache),
                      None if rubric is None else rubric.read_text(encoding="utf-8"), **options)


@app.command()
def judge(
    pairs: Path = typer.Argument(..., help="rows with prompt and a/b (or chosen/rejected)"),
    model: str = typer.Option(..., "--model", help="the judge: a local model folder, or with --judge-url the "
                                                   "endpoint's model name"),
    out: Path = typer.Option(Path("judge.json"), help="results JSON: summary and one row per pair"),
    against: Optional[str] = typer.Option(None, help="gold: agreement with the demo world's gold judge"),
    world_seed: Optional[int] = typer.Option(None, help="the demo world's seed [default: from manifest.json "
                                                        "next to PAIRS]"),
    judge_url: Optional[str] = JUDGE_URL,
    judge_api_key_env: Optional[str] = JUDGE_KEY,
    judge_cache: Optional[Path] = JUDGE_CACHE,
    judge_rubric: Optional[Path] = JUDGE_RUBRIC,
    judge_bare: bool = JUDGE_BARE,
    limit: Optional[int] = typer.Option(None, help="the first LIMIT pairs only"),
    prefs_out: Optional[Path] = typer.Option(None, help="also write the decided pairs as preference rows "
                                                        "(RLAIF labels for alignkit reward / dpo)"),
    max_tokens: int = typer.Option(256, help="longest judge answer, in tokens"),
    temperature: float = typer.Option(0.0, help="0 is greedy"),
    parse_retries: int = typer.Option(2, help="asks again after an answer without a verdict line"),
    timeout: float = typer.Option(60.0, help="seconds per endpoint request"),
    max_retries: int = typer.Option(4, help="retries of a request that timed out or got 429 / 5xx"),
    concurrency: int = typer.Option(4, help="endpoint requests in flight at once"),
) -> None:
    """An LLM judge on pairs, both ways round: verdicts, failures, position-bias and tie rates, and with
    --against gold its agreement with the demo world's gold judge."""
    from alignkit.eval.judge_run import judge_file

    llm = _make_judge(model, judge_url, judge_api_key_env, judge_cache, judge_rubric, bare=judge_bare,
                      max_tokens=max_tokens, temperature=temperature, parse_retries=parse_retries,
                      timeout_s=timeout, max_retries=max_retries, concurrency=concurrency)
    s = judge_file(llm, str(pairs), str(out), against, world_seed, limit,
                   None if prefs_out is None else str(prefs_out))
    rate = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"{s['judge']}: {s['judged']:,} of {s['pairs']:,} pairs judged ({s['failures']['unparsed']:,} answers "
          f"never parsed, {s['failures']['request_failed']:,} requests failed); position bias "
          f"{rate(s['position_bias_rate'])}, ties {rate(s['tie_rate'])}")
    if "gold" in s:
        print(f"agreement with gold: {rate(s['gold']['agreement'])} of judged pairs, "
              f"{rate(s['gold']['agreement_on_all_pairs'])} of all pairs")
    if "prefs" in s:
        p = s["prefs"]
        print(f"preference rows: {p['rows']:,} -> {p['path']} ({p['ties_left_out']:,} ties and "
              f"{p['failures_left_out']:,} failed judgments left out)")
    print(f"results: {out}")


@app.command()
def serve(
    model_dir: str = typer.Argument(..., help="a causal LM folder with a chat template (e.g. runs/sft/final)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8000),
    max_batch: int = typer.Option(16, min=1, help="most sequences sampled together"),
    model_name: Optional[str] = typer.Option(None, help="the name clients ask for [default: the folder's name]"),
) -> None:
    """An OpenAI-compatible server (/v1/chat/completions, /v1/completions, /v1/models; streaming or not) over a
    local model, sampling concurrent requests together. Needs fastapi and uvicorn (the serve extra)."""
    try:
        from alignkit.serve.app import serve as run_server
    except ImportError as err:
        raise AlignkitError(f"alignkit serve needs fastapi and uvicorn ({err}): pip install 'alignkit[serve]'")
    run_server(model_dir, host, port, max_batch, model_name)


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="training run folders (metrics.jsonl), `alignkit eval` output "
                                                   "folders (eval.json), or a folder above them (e.g. runs/demo)"),
    out: Optional[Path] = typer.Option(None, help="the HTML file; report.md and plots/ go next to it "
                                                  "[default: RUN_DIR/report.html for one folder, else ./report.html]"),
) -> None:
    """One self-contained report.html (curves, win rates with intervals, diagnostics, samples side by side)
    and a markdown summary, report.md, printed here too."""
    from alignkit.eval.report import build_report

    result = build_report(run_dirs, out)
    print("read:\n" + "\n".join(f"  {line}" for line in result.found) + "\n")
    print(result.summary)
    print(f"report: {result.html}   summary: {result.markdown}   plots: {result.html.parent / 'plots'}")


@app.command("tiny-model")
def tiny_model(
    texts: Path = typer.Argument(..., help="JSONL with a `text` column (or .txt, one text per line)"),
    out: Path = typer.Argument(..., help="output model folder"),
    size: str = typer.Option("1m", help="preset: 100k, 1m, 5m, 40m"),
    vocab_size: int = typer.Option(1024, help="BPE vocabulary size"),
    seed: int = typer.Option(0),
) -> None:
    """Build a small Llama-style model (random init) and train a byte-level BPE tokenizer for it."""
    from alignkit.models.tiny import count_parameters, make_tiny_model

    path = make_tiny_model(texts, out, size=size, vocab_size=vocab_size, seed=seed)
    from transformers import AutoModelForCausalLM

    print(f"wrote {path} ({count_parameters(AutoModelForCausalLM.from_pretrained(path)):,} parameters)")


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="folder for the demo world's data files"),
    seed: int = typer.Option(0),
    scale: float = typer.Option(1.0, help="multiplies every row count"),
) -> None:
    """Write the bundled synthetic assistant task: corpus, demonstrations, preferences, prompts, ..."""
    from alignkit.demo.build import write_demo_data

    for name, path in write_demo_data(out, seed=seed, scale=scale).items():
        print(f"{name:>14}  {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="folder for the demo's data, models and runs"),
    quick: bool = typer.Option(False, help="a smaller, faster version"),
    rlaif: bool = typer.Option(False, help="also RLAIF (configs/demo_rlaif.yaml): a judge trained on "
                                           "gold-labelled pairs relabels the human-labelled ones, DPO learns "
                                           "from its labels; the report is then report_rlaif/report.html"),
) -> None:
    """The whole pipeline on the bundled task, offline (`alignkit pipeline` on configs/demo.yaml): data -> tiny
    model -> pretrain -> SFT -> reward model -> DPO, PPO, GRPO -> a reward-hacking run -> gold win rates against
    SFT -> report/report.html. Finished stages are skipped on a rerun."""
    from alignkit.demo.pipeline import run_demo

    run_demo(out, quick=quick, rlaif=rlaif)


from alignkit.annotate.cli import app as annotate_app  # noqa: E402 - typer only; the app loads on use

app.add_typer(annotate_app, name="annotate", help="The preference-annotation web app: init, serve, import, "
              "export, users.")


def main() -> None:
    from alignkit.malloc import rerun_with_tcmalloc

    rerun_with_tcmalloc()  # returns at once when tcmalloc is absent, off, or already loaded
    # transformers 5 draws a progress bar for every model load and save; our own bar is the one to watch.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except AlignkitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
