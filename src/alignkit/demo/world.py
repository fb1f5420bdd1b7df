"""The demo world: a seeded fictional knowledge base, seven kinds of prompt with a known best
behaviour, and reference responses of graded quality. Every prompt comes from a small closed set
of templates, so a model of a few million parameters can learn the language on a CPU in minutes,
and every prompt can be parsed back into a `Task` so the gold judge can score any free text.
This module holds the knowledge base, parsing and sampling; the vocabularies and phrasings live in
templates.py and the graded replies in responses.py. Standard library only: importing this module
must stay instant.
"""
import operator
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

# Besides what this module uses, these imports re-export the names that lived here before the
# tables moved to templates.py and the replies to responses.py: `from alignkit.demo.world import X`
# keeps working for every one of them.
from alignkit.demo.responses import (  # noqa: F401
    BEST_WRITERS,
    VARIANT_WRITERS,
    answerable_variants,
    arithmetic_variants,
    benign_variants,
    best_unanswerable,
    best_unsafe,
    correction,
    fabrication,
    false_premise_variants,
    knowledge_variants,
    list_mistake,
    list_variants,
    padded,
    truncate,
    unanswerable_variants,
    unsafe_variants,
)
from alignkit.demo.templates import (  # noqa: F401
    ARITHMETIC_PHRASINGS,
    ATTRIBUTE_BY_KEY,
    ATTRIBUTES,
    BENIGN_BY_KEY,
    BENIGN_FRAMES,
    BENIGN_REFUSALS,
    BENIGN_REQUESTS,
    CLOSERS,
    COLOURS,
    DODGES,
    FOODS,
    KINDS,
    LECTURE,
    LIST_LABELS,
    LIST_PHRASINGS,
    LIST_REPLIES,
    MULTI_STEP_PHRASINGS,
    NUMBER_WORDS,
    OPENERS,
    PEOPLE,
    PREMISE_REASONS,
    RAMBLES,
    REFUSALS,
    ROLES,
    SAFE_REFUSALS,
    UNKNOWABLE_BY_KEY,
    UNKNOWABLE_QUESTIONS,
    UNKNOWN_ENTITY_REPLIES,
    UNSAFE_BY_KEY,
    UNSAFE_REQUESTS,
    WEATHER,
    WORDS,
    Attribute,
    BenignRequest,
    UnknowableQuestion,
    UnsafeRequest,
    everyday_sentence,
    fact_sentence,
    pick,
    plain_value,
    render_value,
    stable_fraction,
    typed_value,
)

CATEGORIES = (
    "arithmetic",
    "list_string",
    "knowledge",
    "unsafe",
    "unanswerable",
    "benign_looks_unsafe",
    "false_premise",
)

# Share of prompts held out for evaluation, chosen by a stable hash of the prompt text so that
# every file built from the same seed agrees on which prompts are held out.
EVAL_FRACTION = 0.2

ENTITIES_PER_KIND = 20
UNKNOWN_PER_KIND = 8
OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str
    facts: dict[str, object]  # attribute key -> value (int for number attributes, str otherwise)


@dataclass(frozen=True)
class Task:
    """A parsed prompt: what is asked and what a correct reply must contain."""

    prompt: str
    category: str
    family: str  # "arithmetic", "sort", "planet.sky", "break_in", ...
    slots: dict[str, str]  # the values read out of the prompt
    answer: str | None = None  # the verifiable answer ("42", "green", "1, 3, 4"), None where none exists
    wrong: str | None = None  # the false value a false-premise prompt asserts


def invent_name(rng: random.Random) -> str:
    onsets = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "br", "dr", "gr", "kr", "tr", "st")
    vowels = ("a", "e", "i", "o", "u", "ai", "ou")
    codas = ("", "", "n", "r", "l", "th", "x", "m")
    return "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(2)) + rng.choice(codas)


def invent_names(rng: random.Random, count: int) -> list[str]:
    """Distinct pseudo-words that never collide with the world's English vocabulary."""
    taken = {w.lower() for w in COLOURS + FOODS + PEOPLE + WEATHER + NUMBER_WORDS + WORDS}
    names: list[str] = []
    while len(names) < count:
        name = invent_name(rng)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def display_name(name: str, kind: str) -> str:
    """Places are proper nouns; creatures are common nouns ("a glimmet")."""
    return name if kind == "creature" else name.capitalize()


def number_value(text: str) -> int:
    return NUMBER_WORDS.index(text) if text in NUMBER_WORDS else int(text)


def compile_phrasing(phrasing: str, slot_patterns: dict[str, str]) -> re.Pattern:
    """Turns "What is {a} {op} {b}?" into a regex with one named group per slot."""
    parts = re.split(r"\{(\w+)\}", phrasing)
    pieces = [f"(?P<{part}>{slot_patterns[part]})" if i % 2 else re.escape(part)
              for i, part in enumerate(parts)]
    return re.compile("".join(pieces))


def alternatives(values) -> str:
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


# ---------------------------------------------------------------- parsing: prompt text -> Task

def evaluation_order(a: int, op1: str, b: int, op2: str, c: int, bracketed: bool) -> list[tuple]:
    """The two steps of a three-number expression, honouring brackets and * before + and -.

    Each step is (left, op, right) where None stands for the previous step's result."""
    if not bracketed and op2 == "*" and op1 != "*":
        return [(b, op2, c), (a, op1, None)]
    return [(a, op1, b), (None, op2, c)]


def run_steps(steps: list[tuple]) -> list[int]:
    results: list[int] = []
    for left, op, right in steps:
        left = results[-1] if left is None else left
        right = results[-1] if right is None else right
        results.append(OPERATIONS[op](left, right))
    return results


def resolve_arithmetic(world, prompt, slots):
    a, b = int(slots["a"]), int(slots["b"])
    expr = f"{a} {slots['op']} {b}"
    answer = OPERATIONS[slots["op"]](a, b)
    return Task(prompt, "arithmetic", "arithmetic", {**slots, "expr": expr}, str(answer))


def resolve_multi_step(world, prompt, slots):
    a, b, c = int(slots["a"]), int(slots["b"]), int(slots["c"])
    bracketed = "(" in prompt
    expr = f"{a} {slots['op1']} {b}"
    expr = f"({expr}) {slots['op2']} {c}" if bracketed else f"{expr} {slots['op2']} {c}"
    answer = run_steps(evaluation_order(a, slots["op1"], b, slots["op2"], c, bracketed))[-1]
    return Task(prompt, "arithmetic", "multi_step", {**slots, "expr": expr}, str(answer))


def list_answer(family: str, slots: dict[str, str]) -> str:
    if family in ("reverse", "count", "upper"):
        word = slots["word"]
        return {"reverse": word[::-1], "count": str(len(word)), "upper": word.upper()}[family]
    numbers = [int(n) for n in slots["nums"].split(", ")]
    return {"sort": ", ".join(map(str, sorted(numbers))), "largest": str(max(numbers)),
            "smallest": str(min(numbers))}[family]


def list_resolver(family: str) -> Callable:
    def resolve(world, prompt, slots):
        return Task(prompt, "list_string", family, slots, list_answer(family, slots))
    return resolve


def question_resolver(attribute: Attribute) -> Callable:
    """A question about a known entity is knowledge; about anything else it is unanswerable."""
    def resolve(world, prompt, slots):
        entity = world.entities.get(slots["name"].lower())
        if entity is None or entity.kind != attribute.kind:
            return Task(prompt, "unanswerable", attribute.key, slots)
        return Task(prompt, "knowledge", attribute.key, slots, str(entity.facts[attribute.key]))
    return resolve


def premise_resolver(attribute: Attribute) -> Callable:
    def resolve(world, prompt, slots):
        entity = world.entities.get(slots["name"].lower())
        if entity is None or entity.kind != attribute.kind:
            return Task(prompt, "unanswerable", attribute.key, slots)
        right = entity.facts[attribute.key]
        wrong = number_value(slots["wrong"]) if attribute.domain == "number" else slots["wrong"]
        if wrong == right:
            raise ValueError(f"prompt {prompt!r} asserts a true premise ({attribute.key} = {right}); "
                             "the demo world only asks false-premise questions with a false premise")
        return Task(prompt, "false_premise", attribute.key, slots, str(right), str(wrong))
    return resolve


def fixed_resolver(category: str, family: str) -> Callable:
    def resolve(world, prompt, slots):
        return Task(prompt, category, family, slots)
    return resolve


PLACE = r"[A-Z][a-z]+"
CREATURE = r"[a-z]+"
NUMBER_SLOT = r"\d+|" + alternatives(NUMBER_WORDS)
WRONG_SLOT = {"colour": alternatives(COLOURS), "number": NUMBER_SLOT, "capital": PLACE, "person": PLACE,
              "food": r"[a-z]+"}


def build_patterns() -> list[tuple[re.Pattern, Callable]]:
    """Every prompt template of the world, each with the function that turns its slots into a Task."""
    patterns = []
    arithmetic_slots = {"a": r"\d+", "b": r"\d+", "c": r"\d+",
                        "op": r"[-+*]", "op1": r"[-+*]", "op2": r"[-+*]"}
    patterns += [(compile_phrasing(p, arithmetic_slots), resolve_arithmetic) for p in ARITHMETIC_PHRASINGS]
    patterns += [(compile_phrasing(p, arithmetic_slots), resolve_multi_step) for p in MULTI_STEP_PHRASINGS]
    list_slots = {"nums": r"\d+(?:, \d+)+", "word": r"[a-z]+"}
    for family, phrasings in LIST_PHRASINGS.items():
        patterns += [(compile_phrasing(p, list_slots), list_resolver(family)) for p in phrasings]
    for attribute in ATTRIBUTES:
        name_slot = {"name": CREATURE if attribute.kind == "creature" else PLACE}
        resolve = question_resolver(attribute)
        patterns += [(compile_phrasing(q, name_slot), resolve) for q in attribute.questions]
        premise_slots = {**name_slot, "wrong": WRONG_SLOT[attribute.domain]}
        patterns.append((compile_phrasing(attribute.premise, premise_slots), premise_resolver(attribute)))
    for request in UNSAFE_REQUESTS:
        slots = {slot: alternatives(values) for slot, values in request.slots.items()}
        patterns.append((compile_phrasing(request.phrasing, slots), fixed_resolver("unsafe", request.key)))
    for request in BENIGN_REQUESTS:
        for frame in BENIGN_FRAMES:
            pattern = compile_phrasing(frame.format(task=request.task), {})
            patterns.append((pattern, fixed_resolver("benign_looks_unsafe", request.key)))
    for question in UNKNOWABLE_QUESTIONS:
        slots = {"place": PLACE, **{slot: alternatives(values) for slot, values in question.slots.items()}}
        resolve = fixed_resolver("unanswerable", question.key)
        patterns.append((compile_phrasing(question.phrasing, slots), resolve))
    return patterns


PATTERNS = build_patterns()


# ---------------------------------------------------------------- sampling: category -> prompt text

MULTI_STEP_SHARE = 0.15  # of arithmetic prompts: the three-number ones that also feed stepwise.jsonl


def sample_multi_step(rng: random.Random) -> str:
    while True:
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        op1, op2, bracketed = rng.choice("+-*"), rng.choice("+-*"), rng.random() < 0.3
        if min(run_steps(evaluation_order(a, op1, b, op2, c, bracketed))) >= 0:
            return MULTI_STEP_PHRASINGS[bracketed].format(a=a, op1=op1, b=b, op2=op2, c=c)


def sample_arithmetic(world, rng):
    if rng.random() < MULTI_STEP_SHARE:
        return sample_multi_step(rng)
    # One-digit operands: a model of a million parameters learns these tables from a few thousand examples,
    # so the demo can show methods keeping (or losing) right answers rather than a model that never has them.
    op = rng.choice("+-*")
    a = rng.randint(2 if op == "-" else 1, 9)
    b = rng.randint(1, a) if op == "-" else rng.randint(1, 9)  # differences stay non-negative
    return rng.choice(ARITHMETIC_PHRASINGS).format(a=a, op=op, b=b)


def sample_list_task(world, rng):
    family = rng.choice(tuple(LIST_PHRASINGS))
    nums = ", ".join(str(n) for n in rng.sample(range(10), rng.randint(3, 5)))  # one-digit numbers
    return rng.choice(LIST_PHRASINGS[family]).format(nums=nums, word=rng.choice(WORDS))


def sample_knowledge(world, rng):
    entity = rng.choice(world.known)
    attribute = rng.choice(world.attributes_of(entity.kind))
    return rng.choice(attribute.questions).format(name=entity.name)


def sample_unanswerable(world, rng):
    if rng.random() < 0.5:
        kind = rng.choice(KINDS)
        attribute = rng.choice(world.attributes_of(kind))
        return rng.choice(attribute.questions).format(name=rng.choice(world.unknown[kind]))
    question = rng.choice(UNKNOWABLE_QUESTIONS)
    values = {slot: rng.choice(options) for slot, options in question.slots.items()}
    return question.phrasing.format(place=rng.choice(world.places), **values)


def sample_unsafe(world, rng):
    request = rng.choice(UNSAFE_REQUESTS)
    return request.phrasing.format(**{slot: rng.choice(options) for slot, options in request.slots.items()})


def sample_benign(world, rng):
    return rng.choice(BENIGN_FRAMES).format(task=rng.choice(BENIGN_REQUESTS).task)


def sample_false_premise(world, rng):
    entity = rng.choice(world.known)
    attribute = rng.choice(world.attributes_of(entity.kind))
    right = entity.facts[attribute.key]
    # "one moons" reads badly, so a false count is always plural
    categorical = attribute.domain != "number"
    options = [v for v in world.domain_values(attribute) if v != right and (categorical or v >= 2)]
    wrong = rng.choice(options)
    wrong_text = NUMBER_WORDS[wrong] if attribute.domain == "number" else wrong
    return attribute.premise.format(name=entity.name, wrong=wrong_text)


SAMPLERS = {
    "arithmetic": sample_arithmetic,
    "list_string": sample_list_task,
    "knowledge": sample_knowledge,
    "unsafe": sample_unsafe,
    "unanswerable": sample_unanswerable,
    "benign_looks_unsafe": sample_benign,
    "false_premise": sample_false_premise,
}


# ---------------------------------------------------------------- the world

def strip_chat_markup(prompt: str) -> str:
    """Accepts "User: <prompt>\\nAssistant:" as well as the bare prompt."""
    text = prompt.strip()
    text = text.removeprefix("User:").strip()
    return text.removesuffix("Assistant:").strip()


class World:
    """The knowledge base and prompt index for one seed; cheap to build (a few milliseconds)."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        rng = random.Random(f"alignkit-demo-world|{seed}")
        names = invent_names(rng, ENTITIES_PER_KIND * (len(KINDS) + 1) + UNKNOWN_PER_KIND * len(KINDS))
        self.capitals = tuple(name.capitalize() for name in names[:ENTITIES_PER_KIND])
        self.entities: dict[str, Entity] = {}  # lower-case name -> entity
        self.unknown: dict[str, tuple[str, ...]] = {}  # kind -> names that are NOT in the knowledge base
        rest = names[ENTITIES_PER_KIND:]
        for kind in KINDS:
            chosen, rest = rest[:ENTITIES_PER_KIND], rest[ENTITIES_PER_KIND:]
            for i, name in enumerate(chosen):
                facts = {a.key: self._draw_fact(a, rng, i) for a in self.attributes_of(kind)}
                self.entities[name] = Entity(display_name(name, kind), kind, facts)
        for kind in KINDS:
            chosen, rest = rest[:UNKNOWN_PER_KIND], rest[UNKNOWN_PER_KIND:]
            self.unknown[kind] = tuple(display_name(name, kind) for name in chosen)
        self.known = tuple(self.entities.values())
        self.places = tuple(e.name for e in self.known if e.kind != "creature")
        self._tasks: dict[str, Task] = {}

    def _draw_fact(self, attribute: Attribute, rng: random.Random, index: int) -> object:
        if attribute.domain == "capital":
            return self.capitals[index]  # one capital per planet, never shared
        return rng.choice(self.domain_values(attribute))

    @staticmethod
    def attributes_of(kind: str) -> tuple[Attribute, ...]:
        return tuple(a for a in ATTRIBUTES if a.kind == kind)

    def domain_values(self, attribute: Attribute) -> tuple:
        """Every value the attribute can take: what a wrong or hedged answer is drawn from."""
        return {"number": attribute.numbers, "colour": COLOURS, "capital": self.capitals, "person": PEOPLE,
                "food": FOODS}[attribute.domain]

    def sample_prompt(self, rng: random.Random, category: str) -> str:
        if category not in SAMPLERS:
            raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
        return SAMPLERS[category](self, rng)

    def split_of(self, prompt: str) -> str:
        """'eval' or 'train', fixed by the seed and the prompt text alone."""
        held_out = stable_fraction(f"{self.seed}|{strip_chat_markup(prompt)}") < EVAL_FRACTION
        return "eval" if held_out else "train"

    def sample_task(self, rng: random.Random, category: str, split: str = "train") -> Task:
        """A prompt of the category from one split (rejection sampling on the stable hash)."""
        for _ in range(10_000):
            prompt = self.sample_prompt(rng, category)
            if self.split_of(prompt) == split:
                task = self.parse(prompt)
                if task.category != category:
                    raise RuntimeError(f"world bug: sampler for {category} made {prompt!r}, "
                                       f"parsed as {task.category}")
                return task
        raise RuntimeError(f"no {split} prompt of category {category} found in 10,000 draws")

    def parse(self, prompt: str) -> Task:
        """Reads a prompt back into a Task; a prompt the world cannot have made raises ValueError."""
        text = strip_chat_markup(prompt)
        if text in self._tasks:
            return self._tasks[text]
        found = [(match, resolve) for pattern, resolve in PATTERNS if (match := pattern.fullmatch(text))]
        if not found:
            raise ValueError(f"{prompt!r} is not a prompt of the demo world (seed={self.seed}); "
                             "only prompts made by World.sample_prompt can be judged")
        if len(found) > 1:
            raise ValueError(f"world bug: {prompt!r} matches {len(found)} prompt templates")
        match, resolve = found[0]
        task = resolve(self, text, match.groupdict())
        self._tasks[text] = task
        return task

    def best_response(self, task: Task) -> str:
        return BEST_WRITERS[task.category](task)

    def responses(self, task: Task, rng: random.Random) -> dict[str, str]:
        """Candidate replies by flaw name; "best" is always there and every text is distinct."""
        variants = VARIANT_WRITERS[task.category](self, task, rng)
        seen: set[str] = set()
        distinct = {}
        for name, text in variants.items():
            if text not in seen:
                seen.add(text)
                distinct[name] = text
        return distinct

    def fact_sentences(self) -> list[str]:
        """The whole knowledge base as prose, each fact in both of its phrasings."""
        sentences = []
        for entity in self.known:
            kind_sentence = f"A {entity.name} is a creature." if entity.kind == "creature" else \
                f"{entity.name} is a {entity.kind}."
            sentences.append(kind_sentence)
            for attribute in self.attributes_of(entity.kind):
                for prose in (False, True):
                    value = entity.facts[attribute.key]
                    sentences.append(fact_sentence(attribute, entity.name, value, prose))
        return sentences

    def worked_steps(self, task: Task, rng: random.Random,
                     slip_at: int | None = None) -> tuple[list[str], list[bool]]:
        """A step-by-step solution of a three-number prompt, for process reward models.

        With slip_at=k the k-th of the three steps is wrong and later steps carry the mistake on;
        labels are True up to the first wrong step and False from it on (the TRL stepwise format)."""
        if task.family != "multi_step":
            raise ValueError(f"worked steps exist only for three-number prompts, not {task.family!r}")
        s = task.slots
        a, b, c, op1, op2 = int(s["a"]), int(s["b"]), int(s["c"]), s["op1"], s["op2"]
        order = evaluation_order(a, op1, b, op2, c, "(" in task.prompt)
        left_to_right = evaluation_order(a, op1, b, op2, c, True)
        # only where reading left to right changes the result, so a False label always means a wrong answer
        changes_result = run_steps(left_to_right)[-1] != run_steps(order)[-1]
        precedence_slip = slip_at == 0 and changes_result and rng.random() < 0.5
        if precedence_slip:
            order = left_to_right  # the classic mistake: ignoring * before + and -
        lines, results = [], []
        for i, (left, op, right) in enumerate(order):
            left = results[-1] if left is None else left
            right = results[-1] if right is None else right
            value = OPERATIONS[op](left, right)
            if i == slip_at and not precedence_slip:
                value += rng.choice((-2, -1, 1, 2))
            results.append(value)
            lines.append(f"{left} {op} {right} = {value}.")
        final = results[-1] + (rng.choice((-1, 1)) if slip_at == 2 else 0)
        lines.append(f"The answer is {final}.")
        return lines, [slip_at is None or i < slip_at for i in range(3)]
