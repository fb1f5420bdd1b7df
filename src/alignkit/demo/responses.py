"""Reference replies of known quality for a parsed `Task`: the best reply of each category and,
around it, named flawed variants (wrong, hedged, padded, truncated, refused, complied...) that the
preference, ranking and stepwise files are built from. Standard library only; it reads the World
only through the object it is handed, so it imports nothing from world.py at run time.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from alignkit.demo.templates import (
    ATTRIBUTE_BY_KEY,
    BENIGN_BY_KEY,
    BENIGN_REFUSALS,
    CHATTY,
    CLOSERS,
    DODGES,
    FOODS,
    LECTURE,
    LIST_LABELS,
    LIST_REPLIES,
    OPENERS,
    PEOPLE,
    PREMISE_REASONS,
    RAMBLES,
    REFUSALS,
    SAFE_REFUSALS,
    UNKNOWABLE_BY_KEY,
    UNKNOWN_ENTITY_REPLIES,
    UNSAFE_BY_KEY,
    WEATHER,
    fact_sentence,
    pick,
    plain_value,
    render_value,
    typed_value,
)

if TYPE_CHECKING:
    from alignkit.demo.world import Task


def truncate(text: str) -> str:
    """The first half of the words, as a reply cut off before it reaches its answer."""
    words = text.split()
    return " ".join(words[: max(1, len(words) // 2)]).rstrip(".,!?:;")


def correction(task: Task) -> str:
    attribute = ATTRIBUTE_BY_KEY[task.family]
    right, wrong = typed_value(attribute, task.answer), typed_value(attribute, task.wrong)
    stated = fact_sentence(attribute, task.slots["name"], right)[:-1]
    return f"{stated}, not {plain_value(attribute, wrong)}."


def best_unanswerable(task: Task) -> str:
    question = UNKNOWABLE_BY_KEY.get(task.family)
    if question is not None:
        return question.honest
    return pick(UNKNOWN_ENTITY_REPLIES, task.prompt).format(name=task.slots["name"])


def best_unsafe(task: Task) -> str:
    offer = UNSAFE_BY_KEY[task.family].offer.format(**task.slots)
    return pick(REFUSALS, task.prompt).format(offer=offer)


BEST_WRITERS = {
    "arithmetic": lambda task: f"{task.slots['expr']} = {task.answer}.",
    "list_string": lambda task: LIST_REPLIES[task.family].format(answer=task.answer, **task.slots),
    "knowledge": lambda task: fact_sentence(ATTRIBUTE_BY_KEY[task.family], task.slots["name"],
                                            typed_value(ATTRIBUTE_BY_KEY[task.family], task.answer)),
    "unsafe": best_unsafe,
    "unanswerable": best_unanswerable,
    "benign_looks_unsafe": lambda task: BENIGN_BY_KEY[task.family].answer,
    "false_premise": correction,
}


def padded(rng: random.Random, best: str) -> dict[str, str]:
    """The right reply buried in filler: correct content, worse style."""
    return {
        "chatty": f"{CHATTY[0]} {best} {CHATTY[1]}",
        "verbose": f"{rng.choice(OPENERS)} {best} {rng.choice(CLOSERS)}",
        "rambling": f"{rng.choice(RAMBLES)} So here is the answer: {best} {rng.choice(CLOSERS)}",
    }


def answerable_variants(rng, best: str, short: str, label: str, mistakes: dict[str, str]) -> dict[str, str]:
    """The flaws shared by every question with one right answer, around the category's own mistakes."""
    return {
        "best": best,
        **mistakes,
        **padded(rng, best),
        "list_format": f"Here is my answer:\n- Question: {label}\n- Answer: {short}\n{rng.choice(CLOSERS)}",
        "hedge": f"I am not sure, but it might be {short}.",
        "dodge": rng.choice(DODGES),
        "unsure": "I don't know.",
        "truncated": truncate(best),
        "refuse_safe": rng.choice(SAFE_REFUSALS),
    }


def arithmetic_variants(world, task, rng):
    answer, expr = int(task.answer), task.slots["expr"]
    near = answer + 1 if answer == 0 or rng.random() < 0.5 else answer - 1
    far = rng.choice([n for n in range(max(0, answer - 20), answer + 21) if abs(n - answer) > 1])
    mistakes = {"off_by_one": f"{expr} = {near}.", "wrong": f"{expr} = {far}."}
    return answerable_variants(rng, world.best_response(task), task.answer, expr, mistakes)


def list_mistake(task: Task, rng: random.Random) -> str:
    """A plausible wrong answer: one swap, one off, one wrong pick, one half-done capitalisation."""
    family, answer = task.family, task.answer
    if family == "sort":
        numbers = answer.split(", ")
        i = rng.randrange(len(numbers) - 1)
        numbers[i], numbers[i + 1] = numbers[i + 1], numbers[i]
        return ", ".join(numbers)
    if family == "reverse":
        i = rng.choice([i for i in range(len(answer) - 1) if answer[i] != answer[i + 1]])
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2:]
    if family == "count":
        return str(int(answer) + rng.choice((-1, 1)))
    if family == "upper":
        return answer.capitalize()
    return rng.choice([n for n in task.slots["nums"].split(", ") if n != answer])


def list_variants(world, task, rng):
    wrong = LIST_REPLIES[task.family].format(answer=list_mistake(task, rng), **task.slots)
    short = f"'{task.answer}'" if task.family in ("reverse", "upper") else task.answer
    label = LIST_LABELS[task.family].format(**task.slots)
    return answerable_variants(rng, world.best_response(task), short, label, {"wrong": wrong})


def knowledge_variants(world, task, rng):
    attribute = ATTRIBUTE_BY_KEY[task.family]
    name, value = task.slots["name"], typed_value(attribute, task.answer)
    other = rng.choice([v for v in world.domain_values(attribute) if v != value])
    first, second = (value, other) if rng.random() < 0.5 else (other, value)
    mistakes = {
        "wrong": fact_sentence(attribute, name, other),
        "mixed_up": f"It might be {render_value(attribute, first)} or {render_value(attribute, second)}.",
    }
    label = f"{attribute.label} of {name}"
    short = render_value(attribute, value)
    return answerable_variants(rng, world.best_response(task), short, label, mistakes)


def unsafe_variants(world, task, rng):
    best = world.best_response(task)
    compliance = UNSAFE_BY_KEY[task.family].compliance.format(**task.slots)
    return {
        "best": best,
        "comply": compliance,
        "comply_polite": f"Sorry to hear that. {compliance}",
        "hint": "Hmm, I am not sure I should say, but maybe this: " + compliance.removeprefix("Sure! "),
        "lecture": LECTURE + best,
        "dodge": rng.choice(DODGES),
    }


def fabrication(world, task: Task, rng: random.Random) -> str:
    question = UNKNOWABLE_BY_KEY.get(task.family)
    if question is None:
        attribute = ATTRIBUTE_BY_KEY[task.family]
        return fact_sentence(attribute, task.slots["name"], rng.choice(world.domain_values(attribute)))
    return question.fabrication.format(n=rng.randint(2, 90), person=rng.choice(PEOPLE),
                                       weather=rng.choice(WEATHER), food=rng.choice(FOODS), **task.slots)


def unanswerable_variants(world, task, rng):
    best, made_up = world.best_response(task), fabrication(world, task, rng)
    return {
        "best": best,
        "fabricate": made_up,
        "guess": f"I am not sure, but I would guess this: {made_up}",
        "verbose": padded(rng, best)["verbose"],
        "refuse_safe": rng.choice(SAFE_REFUSALS),
    }


def benign_variants(world, task, rng):
    best = world.best_response(task)
    return {
        "best": best,
        "refuse": rng.choice(BENIGN_REFUSALS),
        **padded(rng, best),
        "list_format": f"Here are some steps:\n1. {best}\n2. Take your time.\n3. Practice makes perfect.",
        "dodge": "It depends on many things, so it is hard to say.",
        "truncated": truncate(best),
    }


def false_premise_variants(world, task, rng):
    attribute = ATTRIBUTE_BY_KEY[task.family]
    best = world.best_response(task)
    agree = fact_sentence(attribute, task.slots["name"], typed_value(attribute, task.wrong))[:-1]
    agree = f"{agree} {rng.choice(PREMISE_REASONS)}."
    return {
        "best": best,
        "agree": agree,
        "agree_yes": f"Yes. {agree}",
        **padded(rng, best),
        "dodge": "That is a good question, and nobody is quite sure why.",
        "unsure": "I don't know.",
        "refuse_safe": rng.choice(SAFE_REFUSALS),
    }


VARIANT_WRITERS = {
    "arithmetic": arithmetic_variants,
    "list_string": list_variants,
    "knowledge": knowledge_variants,
    "unsafe": unsafe_variants,
    "unanswerable": unanswerable_variants,
    "benign_looks_unsafe": benign_variants,
    "false_premise": false_premise_variants,
}
