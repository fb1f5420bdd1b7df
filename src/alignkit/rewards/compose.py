"""Load reward functions by name, call them defensively, and combine them with weights.

A failed reward is None, never 0: a function that raises or runs past its timeout gives None for every
row of that call, a non-finite score gives None for its row, and a row with any None is masked out of the
update (DESIGN section 1). The one exception is a fallback term, which scores the rows that a primary term
declined on purpose (returned None itself, as `verified` does for a prompt with no single answer).
Mistakes the user must fix (wrong output length, a bool or a string as a score, a missing module) are
AlignkitErrors. Standard library only.
"""

from __future__ import annotations

import importlib
import math
import numbers
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from alignkit.errors import AlignkitError
from alignkit.rewards.rules import exact_match, repetition_penalty

RewardFn = Callable[..., list]

# Usable by bare name in a config. Rewards that need settings (regex_format, length_penalty) are built in
# Python or wrapped in a user module and named as "module:function".
BUILTINS: dict[str, RewardFn] = {
    "exact_match": exact_match,
    "repetition_penalty": repetition_penalty(),
}


def load_reward_function(spec: str) -> RewardFn:
    """A reward function from its config name: a key of BUILTINS, or "module:function".

    A user module is imported only here, when a config names it, so user code runs only when asked for.
    """
    if ":" not in spec:
        if spec in BUILTINS:
            return BUILTINS[spec]
        raise AlignkitError(f"reward function {spec!r} is not a built-in ({', '.join(sorted(BUILTINS))}); "
                            "name your own as 'module:function', with the module importable (on PYTHONPATH)")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AlignkitError(f"reward function {spec!r}: write it as 'module:function', "
                            "e.g. 'my_rewards:score'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise AlignkitError(f"reward function {spec!r}: no module named {module_name!r}; run from the "
                                "folder that holds it or add that folder to PYTHONPATH") from err
        raise AlignkitError(f"reward function {spec!r}: importing {module_name!r} failed: {err}; "
                            "install what it imports") from err
    except Exception as err:
        raise AlignkitError(f"reward function {spec!r}: importing {module_name!r} raised "
                            f"{type(err).__name__}: {err}; fix the module") from err
    fn = getattr(module, attr, None)
    if fn is None:
        raise AlignkitError(f"reward function {spec!r}: module {module_name!r} has no attribute {attr!r}; "
                            "check the spelling after the ':'")
    if not callable(fn):
        raise AlignkitError(f"reward function {spec!r}: {module_name}.{attr} is a {type(fn).__name__}, not a "
                            "function; point at a function (prompts, completions, **columns) -> list[float]")
    return fn


def reward_name(fn: RewardFn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _call_with_timeout(fn: RewardFn, prompts, completions, columns, timeout_s: float):
    # A daemon thread reporting into a Future: on timeout we stop waiting. Python cannot kill a thread, so
    # a hung function keeps running in the background, but (unlike a ThreadPoolExecutor worker) it does
    # not keep the process alive at exit.
    future: Future = Future()

    def work():
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(prompts, completions, **columns))
        except BaseException as err:  # handed to the caller through the future
            future.set_exception(err)

    threading.Thread(target=work, name=f"reward-{reward_name(fn)}", daemon=True).start()
    return future.result(timeout=timeout_s)


def safe_call(fn: RewardFn, prompts: list[str], completions: list[str], columns: dict[str, list],
              timeout_s: float | None = None) -> tuple[list[float | None], int]:
    """Scores from `fn`, and how many rows failed (call_rows says which)."""
    scores, failed = call_rows(fn, prompts, completions, columns, timeout_s)
    return scores, sum(failed)


def call_rows(fn: RewardFn, prompts: list[str], completions: list[str], columns: dict[str, list],
              timeout_s: float | None = None) -> tuple[list[float | None], list[bool]]:
    """Scores from `fn`, and for each row whether it failed.

    Failed rows are None and counted: every row when `fn` raises or runs past `timeout_s` seconds, one row
    for each NaN or infinity. A None that `fn` returns itself (e.g. exact_match on a row with no answer)
    passes through as None but is not counted as a failure. An AlignkitError from `fn` is a user mistake
    and propagates, as do a wrong-length result and a score that is not a number (bools included).
    """
    name = reward_name(fn)
    try:
        if timeout_s is None:
            scores = fn(prompts, completions, **columns)
        else:
            scores = _call_with_timeout(fn, prompts, completions, columns, timeout_s)
    except AlignkitError:
        raise
    except Exception:  # includes the TimeoutError of future.result
        return [None] * len(completions), [True] * len(completions)
    if not isinstance(scores, (list, tuple)):
        raise AlignkitError(f"reward function {name!r} returned a {type(scores).__name__}; "
                            f"return a list of {len(completions)} floats (None for a row it cannot score)")
    if len(scores) != len(completions):
        raise AlignkitError(f"reward function {name!r} returned {len(scores)} scores for {len(completions)} "
                            "completions; return exactly one score (or None) per completion")
    out: list[float | None] = []
    failed = [False] * len(scores)
    for row, score in enumerate(scores):
        if score is None:
            out.append(None)
        elif isinstance(score, bool) or not isinstance(score, numbers.Real):
            raise AlignkitError(f"reward function {name!r}, row {row}: score {score!r} is a "
                                f"{type(score).__name__}, not a number; return a float "
                                "(1.0/0.0, not True/False)")
        elif not math.isfinite(score):
            out.append(None)
            failed[row] = True
        else:
            out.append(float(score))
    return out, failed


def weighted_sum(fns_and_weights: list[tuple[RewardFn, float]], prompts: list[str], completions: list[str],
                 columns: dict[str, list], timeout_s: float | None = None, fallback: Sequence[bool] = (),
                 ) -> tuple[list[float | None], dict[str, list[float | None]], dict[str, int]]:
    """Per-row totals sum(weight * score), plus each function's scores and failure count, keyed by its
    name (a repeated name gets "#2", "#3"). A row's total is None when any function gave it None: the
    sample is masked out rather than scored on the rewards that happened to work.

    `fallback` marks functions (True at their index) that score only the rows a primary function declined:
    returned None itself, not by failing. Such a row's total is the sum of the fallback terms alone, as
    DeepSeek-R1 scored with rules where an answer can be checked and with a reward model elsewhere. A
    failure of any primary term on a row, or a None from a fallback term where it is needed, still masks
    the row."""
    if len(prompts) != len(completions):
        raise AlignkitError(f"{len(prompts)} prompts for {len(completions)} completions; pass one prompt "
                            "per completion (repeat each prompt for its group)")
    is_fallback = list(fallback) or [False] * len(fns_and_weights)
    if len(is_fallback) != len(fns_and_weights):
        raise AlignkitError(f"{len(is_fallback)} fallback flags for {len(fns_and_weights)} reward functions")
    if is_fallback and all(is_fallback):
        raise AlignkitError("every reward is a fallback: mark the ones that score first as not fallback")
    per_function: dict[str, list[float | None]] = {}
    failures: dict[str, int] = {}
    primary: list[tuple[float, list[float | None], list[bool]]] = []
    backup: list[tuple[float, list[float | None]]] = []
    for (fn, weight), as_fallback in zip(fns_and_weights, is_fallback):
        name, copy = reward_name(fn), 1
        while name in per_function:
            copy += 1
            name = f"{reward_name(fn)}#{copy}"
        scores, failed = call_rows(fn, prompts, completions, columns, timeout_s)
        per_function[name], failures[name] = scores, sum(failed)
        if as_fallback:
            backup.append((weight, scores))
        else:
            primary.append((weight, scores, failed))
    totals: list[float | None] = []
    for row in range(len(completions)):
        terms = [(weight, scores[row]) for weight, scores, _ in primary]
        declined = any(score is None for _, score in terms)
        if declined and backup and not any(failed[row] for _, _, failed in primary):
            terms = [(weight, scores[row]) for weight, scores in backup]
        if any(score is None for _, score in terms):
            totals.append(None)
        else:
            totals.append(sum(weight * score for weight, score in terms))
    return totals, per_function, failures
