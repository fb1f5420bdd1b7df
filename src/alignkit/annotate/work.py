"""The annotation workflow on the database: projects, imports, assignment, the queue, labels, gold scores.

Assignment: each ordinary item goes to `per_item` annotators of the project (the least loaded first), gold
items to every annotator, never the same item twice to one person (a unique key enforces it). Each
assignment shuffles the responses and records the order it showed (`shown`), and a random queue position
mixes gold items in among the rest. Labels are turned back into the item's own response order on arrival.
"""

from __future__ import annotations

import random
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alignkit.annotate.db import TASKS, Assignment, Item, Label, Member, Project, User
from alignkit.annotate.security import hash_password
from alignkit.errors import AlignkitError

RATINGS = range(1, 8)  # the 1-7 scale of rating tasks
PAIRWISE_CHOICES = {"A": 0, "B": 1, "tie": "tie", "both_bad": "both_bad"}
GUIDELINES = """\
Choose the response a careful, expert assistant would have written.

Helpful: it answers the question that was asked, completely and to the point; it follows the instructions; \
it is no longer than it needs to be.
Honest: what it states is true; it says so when it does not know or is unsure; it does not make up facts, \
sources or numbers.
Harmless: it does not help anyone hurt people; it refuses what is dangerous, but does not refuse or lecture \
when a request only looks alarming.

Weigh them in this order: harmless, then honest, then helpful. Judge the content, not the length or the \
tone. Tie when the two are equally good; both bad when neither is acceptable.
"""


class Conflict(Exception):
    """The request clashes with what is stored (a label given twice)."""


def create_user(session: Session, username: str, password: str, role: str) -> User:
    username = username.strip()
    if role not in ("admin", "annotator"):
        raise AlignkitError(f"role {role!r} is unknown; use admin or annotator")
    if not username or len(username) > 80 or "," in username:
        raise AlignkitError("a username needs 1 to 80 characters and no comma "
                            "(commas separate names in lists)")
    if session.scalar(select(User).where(User.username == username)):
        raise AlignkitError(f"user {username!r} exists already; choose another name")
    try:
        password_hash = hash_password(password)
    except ValueError as err:
        raise AlignkitError(str(err)) from None
    user = User(username=username, password_hash=password_hash, role=role, active=True)
    session.add(user)
    session.flush()
    return user


def create_project(session: Session, name: str, task: str, per_item: int = 3, guidelines: str = "",
                   gold_threshold: float = 0.7) -> Project:
    name = name.strip()
    if task not in TASKS:
        raise AlignkitError(f"task {task!r} is unknown; tasks are {', '.join(TASKS)}")
    if not name or len(name) > 200:
        raise AlignkitError("a project name needs 1 to 200 characters")
    if per_item < 1:
        raise AlignkitError(f"per_item is {per_item}; each item needs at least 1 annotator")
    if not 0 <= gold_threshold <= 1:
        raise AlignkitError(f"gold_threshold is {gold_threshold}; give a share between 0 and 1")
    if session.scalar(select(Project).where(Project.name == name)):
        raise AlignkitError(f"project {name!r} exists already; choose another name")
    project = Project(name=name, task=task, per_item=per_item, guidelines=guidelines.strip() or GUIDELINES,
                      gold_threshold=gold_threshold)
    session.add(project)
    session.flush()
    return project


def find_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        known = ", ".join(session.scalars(select(Project.name))) or "none yet"
        raise AlignkitError(f"no project named {name!r} (projects: {known})")
    return project


def add_items(session: Session, project: Project, items: list[dict], source: str) -> int:
    """Store parsed items (importing.parse_items); ids already in the project are an error, nothing stored."""
    taken = set(session.scalars(select(Item.external_id).where(Item.project_id == project.id)))
    clashes = [item for item in items if item["external_id"] in taken]
    if clashes:
        listed = ", ".join(f"line {item['line']} ({item['external_id']!r})" for item in clashes[:10])
        raise AlignkitError(f"{source}: {len(clashes)} item id(s) already in project {project.name!r}: "
                            f"{listed}; nothing was imported. Give these items new ids")
    session.add_all(
        Item(project_id=project.id, external_id=item["external_id"], prompt=item["prompt"],
             responses=item["responses"], gold=item["gold"], extra=item["extra"])
        for item in items
    )
    session.flush()
    return len(items)


def add_members(session: Session, project: Project, usernames: list[str]) -> list[User]:
    users = []
    for name in usernames:
        user = session.scalar(select(User).where(User.username == name.strip()))
        if user is None or user.role != "annotator":
            raise AlignkitError(f"{name.strip()!r} is not an annotator; create it first with "
                                "`alignkit annotate users add NAME --role annotator`")
        if session.get(Member, (project.id, user.id)) is None:
            session.add(Member(project_id=project.id, user_id=user.id))
        users.append(user)
    session.flush()
    return users


def assign(session: Session, project: Project, seed: int | None = None) -> int:
    """Top up every item to its number of annotators; returns the assignments made. Safe to run again."""
    rng = random.Random(seed)
    members = list(session.scalars(select(Member.user_id).where(Member.project_id == project.id)))
    if not members:
        raise AlignkitError(f"project {project.name!r} has no annotators; add some first")
    held: dict[int, set[int]] = {}
    load = Counter({user: 0 for user in members})
    for item_id, user_id in session.execute(
        select(Assignment.item_id, Assignment.user_id).where(Assignment.project_id == project.id)
    ):
        held.setdefault(item_id, set()).add(user_id)
        load[user_id] += 1
    made = []
    for item_id, gold in session.execute(select(Item.id, Item.gold).where(Item.project_id == project.id)):
        already = held.get(item_id, set())
        wanted = len(members) if gold is not None else min(project.per_item, len(members))
        free = [user for user in members if user not in already]
        rng.shuffle(free)  # equal loads are broken at random
        for user in sorted(free, key=load.__getitem__)[: max(0, wanted - len(already))]:
            made.append((item_id, user))
            load[user] += 1
    sizes = {item_id: len(responses) for item_id, responses in
             session.execute(select(Item.id, Item.responses).where(Item.project_id == project.id))}
    session.add_all(
        Assignment(project_id=project.id, item_id=item_id, user_id=user, status="pending",
                   shown=rng.sample(range(sizes[item_id]), sizes[item_id]), position=rng.random())
        for item_id, user in made
    )
    session.flush()
    return len(made)


def next_assignment(session: Session, user: User, project: Project) -> Assignment | None:
    """The annotator's next item: pending ones in queue order, then the skipped ones again."""
    query = select(Assignment).where(Assignment.user_id == user.id, Assignment.project_id == project.id)
    for status in ("pending", "skipped"):
        found = session.scalar(
            query.where(Assignment.status == status).order_by(Assignment.position).limit(1))
        if found is not None:
            return found
    return None


def progress(session: Session, project_id: int, user_id: int | None = None) -> dict[int, Counter]:
    """Assignments per annotator by status: {user_id: Counter(pending=, skipped=, done=)}."""
    query = (select(Assignment.user_id, Assignment.status, func.count())
             .where(Assignment.project_id == project_id).group_by(Assignment.user_id, Assignment.status))
    if user_id is not None:
        query = query.where(Assignment.user_id == user_id)
    counts: dict[int, Counter] = {}
    for user, status, count in session.execute(query):
        counts.setdefault(user, Counter())[status] = count
    return counts


def label_value(task: str, shown: list[int], form: dict) -> dict:
    """A submitted form, in the displayed order, as a label in the item's own response order.

    pairwise: choice A / B / tie / both_bad (A is responses[shown[0]]); ranking: "2,1,3", displayed numbers
    best first; rating: rating_1 .. rating_K, each 1-7. Raises ValueError naming the field and the fix.
    """
    k = len(shown)
    if task == "pairwise":
        choice = PAIRWISE_CHOICES.get(form.get("choice", ""))
        if choice is None:
            raise ValueError("choice must be A, B, tie or both_bad")
        return {"choice": shown[choice] if isinstance(choice, int) else choice}
    if task == "ranking":
        try:
            numbers = [int(part) for part in str(form.get("ranking", "")).replace(" ", "").split(",") if part]
        except ValueError:
            numbers = []
        if sorted(numbers) != list(range(1, k + 1)):
            raise ValueError(f"ranking must list the responses 1..{k}, each once, best first (e.g. 2,1,3)")
        return {"ranking": [shown[number - 1] for number in numbers]}
    ratings = [0] * k
    for number in range(1, k + 1):
        value = str(form.get(f"rating_{number}", ""))
        if not value.isdigit() or int(value) not in RATINGS:
            raise ValueError(f"rating_{number} must be a whole number from 1 to 7")
        ratings[shown[number - 1]] = int(value)
    return {"ratings": ratings}


def submit(session: Session, assignment: Assignment, task: str, form: dict) -> Label:
    """Store the label of an assignment once; a second label for it raises Conflict."""
    value = label_value(task, assignment.shown, form)
    if assignment.status == "done":
        raise Conflict("this item is labelled already")
    label = Label(assignment_id=assignment.id, value=value, reason=str(form.get("reason", ""))[:5000])
    try:
        with session.begin_nested():
            session.add(label)
            assignment.status = "done"
            session.flush()
    except IntegrityError:
        raise Conflict("this item is labelled already") from None
    return label


def skip(session: Session, assignment: Assignment) -> None:
    if assignment.status == "done":
        raise Conflict("this item is labelled already")
    assignment.status = "skipped"
    assignment.position += 1.0  # to the back of the skipped ones
    session.flush()
