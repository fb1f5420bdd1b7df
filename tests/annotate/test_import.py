"""Importing items: the accepted row shapes, and errors that name file, line, field and fix, storing nothing."""

import json

import pytest

pytest.importorskip("sqlalchemy", reason="the annotation app needs the `annotate` extra")
pytest.importorskip("fastapi", reason="the annotation app needs the `annotate` extra")

from sqlalchemy import func, select

from conftest import add_project, pair_items

from alignkit.annotate.db import Item, Project, make_engine, session_factory
from alignkit.annotate.importing import parse_items, read_items
from alignkit.errors import AlignkitError


def lines(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def test_generate_output_is_grouped_by_prompt():
    # `alignkit generate --n 3` writes one row per sample, the input's columns kept.
    text = lines(*({"prompt": p, "category": "c", "completion": f"{p} sample {s}", "sample": s, "truncated": False}
                   for p in ("first?", "second?") for s in range(3)))
    items = parse_items(text, "samples.jsonl", "ranking")
    assert [item["responses"] for item in items] == [[f"{p} sample {s}" for s in range(3)]
                                                    for p in ("first?", "second?")]
    assert items[0]["extra"] == {"category": "c"} and items[0]["external_id"] == "line-1"


def test_preference_rows_and_message_lists_are_items():
    chat = [{"role": "user", "content": "hi"}]
    text = lines({"prompt": "q", "chosen": "a", "rejected": "b"},
                 {"id": 7, "prompt": chat, "responses": [[{"role": "assistant", "content": "x"}],
                                                         [{"role": "assistant", "content": "y"}]], "gold": 1})
    first, second = parse_items(text, "p.jsonl", "pairwise")
    assert first["responses"] == ["a", "b"] and second["external_id"] == "7" and second["gold"] == 1


@pytest.mark.parametrize("row, task, message", [
    ("{not json", "pairwise", "items.jsonl line 2: not valid JSON"),
    ({"prompt": "q", "responses": ["only one"]}, "ranking",
     "items.jsonl line 2: field 'responses': a ranking item needs 2 to 9 responses, got 1"),
    ({"prompt": "q", "responses": ["a", "b", "c"]}, "pairwise",
     "field 'responses': a pairwise item needs exactly 2 responses, got 3; use a ranking project for more"),
    ({"prompt": "", "responses": ["a", "b"]}, "pairwise", "items.jsonl line 2: field 'prompt': 'prompt' is empty"),
    ({"prompt": "q", "responses": ["a", 5]}, "pairwise", "field 'responses': 'responses[1]' must be a string"),
    ({"prompt": "q", "responses": ["a", "b"], "gold": 2}, "pairwise",
     "field 'gold': a pairwise gold answer is 0 or 1 (the index of the better response)"),
    ({"prompt": "q", "responses": ["a", "b", "c"], "gold": [0, 0, 1]}, "ranking",
     "field 'gold': a ranking gold answer lists the response indices 0..2 best first"),
    ({"id": "q0", "prompt": "q", "responses": ["a", "b"]}, "pairwise",
     "items.jsonl line 2, field 'id': 'q0' is already used on line 1"),
    ({"text": "no responses"}, "pairwise", "items.jsonl line 2: no responses; give 'responses'"),
])
def test_bad_lines_are_named_with_field_and_fix(row, task, message):
    good = {"id": "q0", "prompt": "q", "responses": ["a", "b"]}
    with pytest.raises(AlignkitError) as err:
        parse_items(lines(good, row), "items.jsonl", task)
    assert message in str(err.value) and "nothing was imported" in str(err.value)


def test_a_bad_file_imports_nothing(instance, login, tmp_path):
    project = add_project(instance, "p", "pairwise", pair_items(2), ["ann1"], per_item=1)
    bad = lines(*pair_items(3, prefix="new"), {"id": "x", "prompt": "q", "responses": ["a"]})
    admin = login("admin")
    response = admin.post(f"/admin/projects/{project}/import", files={"file": ("bad.jsonl", bad.encode())})
    assert response.status_code == 400 and "bad.jsonl line 4: field &#39;responses&#39;" in response.text
    clash = lines(*pair_items(2, prefix="new"), *pair_items(1))  # q0 is in the project already
    response = admin.post(f"/admin/projects/{project}/import", files={"file": ("clash.jsonl", clash.encode())})
    assert response.status_code == 400 and "line 3 (&#39;q0&#39;)" in response.text
    with session_factory(make_engine(instance.database_url)).begin() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 2
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(AlignkitError, match="latin1.jsonl: not UTF-8 text"):
        read_items(path, "pairwise")


def test_cli_import_export_and_users(tmp_path):
    from cli_runner import cli

    folder = tmp_path / "inst"
    env = {"ALIGNKIT_ANNOTATE_PASSWORD": "admin password"}
    cli("annotate", "init", str(folder), env=env)
    assert (folder / "secret_key").stat().st_mode & 0o077 == 0  # the session key is private
    cli("annotate", "users", "add", str(folder), "ann1", env=env)
    items = tmp_path / "items.jsonl"
    items.write_text(lines(*pair_items(3)))
    out = cli("annotate", "import", str(folder), str(items), "--project", "p", "--task", "pairwise",
              "--per-item", "1", "--annotators", "ann1")
    assert "3 item(s) imported into 'p'; 3 new assignment(s)" in out.stdout
    again = cli("annotate", "import", str(folder), str(items), "--project", "p", check=False)
    assert again.returncode == 2 and "3 item id(s) already in project 'p'" in again.stderr
    assert "ann1\tannotator\tactive" in cli("annotate", "users", "list", str(folder)).stdout
    exported = cli("annotate", "export", str(folder), str(tmp_path / "out.jsonl"), "--project", "p")
    assert json.loads(exported.stdout)["unlabelled"] == 3 and (tmp_path / "out.jsonl").read_text() == ""
    with session_factory(make_engine(f"sqlite:///{folder / 'annotate.db'}")).begin() as session:
        assert session.scalar(select(Project.task)) == "pairwise"
