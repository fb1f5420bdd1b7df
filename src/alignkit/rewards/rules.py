"""Built-in rule rewards: exact answer match, output format, length and repetition penalties.

Each reward is `(prompts, completions, **columns) -> list[float | None]`; the factories
(`regex_format`, `length_penalty`, `repetition_penalty`) take their settings and return such a function.
Standard library only.
"""

from __future__ import annotations

import re

from alignkit.errors import AlignkitError

# A number as written in an answer: optional sign, optional thousands commas, optional decimals.
_NUMBER = re.compile(r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?")
_TRAILING = ".,;:!? \t\r\n"


def _as_number(text: str) -> float:
    return float(text.replace(",", ""))


def final_answer_matches(completion: str, answer: str) -> bool:
    """The rule `exact_match` scores with.

    Numeric answer (the whole answer, stripped, is a number such as "42", "-3.5" or "1,000"): the completion's
    final answer is the LAST number in it, and the two are compared as numbers ("42.0" matches "42";
    "17 + 25 = 42." gives 42). A completion without any number does not match.
    Text answer: the completion stripped of surrounding whitespace and trailing ".,;:!?" is compared with
    the answer stripped the same way, case-insensitively ("Paris." matches "paris").
    """
    answer = answer.strip()
    if _NUMBER.fullmatch(answer):
        numbers = _NUMBER.findall(completion)
        return bool(numbers) and _as_number(numbers[-1]) == _as_number(answer)
    return completion.strip().rstrip(_TRAILING).casefold() == answer.rstrip(_TRAILING).casefold()


def exact_match(prompts: list[str], completions: list[str], answer: list[str | None] | None = None,
                **_) -> list[float | None]:
    """1.0 where the completion's final answer equals the row's `answer` (rule: `final_answer_matches`),
    else 0.0; None where the answer is None (the row has nothing to verify, so it is masked out)."""
    if answer is None:
        raise AlignkitError("reward 'exact_match' needs an 'answer' column in the prompt data: add one "
                            "(null for rows without a verifiable answer) or drop exact_match from the "
                            "rewards")
    if len(answer) != len(completions):
        raise AlignkitError(f"reward 'exact_match': {len(answer)} answers for {len(completions)} "
                            "completions; pass the 'answer' column of the same rows")
    return [None if expected is None else float(final_answer_matches(completion, str(expected)))
            for completion, expected in zip(completions, answer)]


def regex_format(pattern: str):
    """A reward of 1.0 when the stripped completion matches `pattern` in full (re.DOTALL, so `.` spans
    lines), else 0.0. The pattern is compiled here, so a bad one fails at config time."""
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as err:
        raise AlignkitError(f"regex_format pattern {pattern!r} is not a valid regular expression: {err}; "
                            "fix the pattern") from err

    def regex_format(prompts: list[str], completions: list[str], **_) -> list[float | None]:
        return [float(compiled.fullmatch(completion.strip()) is not None) for completion in completions]

    return regex_format


def length_penalty(target: int, scale: float):
    """A reward of -scale * max(0, len(completion) - target) / target, lengths in characters: 0 up to the
    target, then falling linearly (-scale at twice the target)."""
    if target <= 0:
        raise AlignkitError(f"length_penalty target={target}: use a positive number of characters")

    def length_penalty(prompts: list[str], completions: list[str], **_) -> list[float | None]:
        return [-scale * max(0, len(completion) - target) / target for completion in completions]

    return length_penalty


def repetition_penalty(n: int = 3):
    """A reward of -(fraction of the completion's word n-grams that repeat an earlier one):
    -(total - distinct) / total over whitespace-split words; 0 when nothing repeats or there are
    fewer than n words."""
    if n < 1:
        raise AlignkitError(f"repetition_penalty n={n}: use n >= 1")

    def repetition_penalty(prompts: list[str], completions: list[str], **_) -> list[float | None]:
        scores = []
        for completion in completions:
            words = completion.split()
            ngrams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            if not ngrams:
                scores.append(0.0)
                continue
            scores.append(0.0 - (len(ngrams) - len(set(ngrams))) / len(ngrams))
        return scores

    return repetition_penalty
