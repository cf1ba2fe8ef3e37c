"""Oracle-file mode: the prompt shows exactly the gold patch's files at the base commit; SEARCH/REPLACE
answers become patches that ``git apply`` takes, and the gold change written as SEARCH/REPLACE resolves
its task through the real grading."""

from __future__ import annotations

import json
import subprocess

import pytest
from unidiff import PatchSet

from srl_agent.evaluation.oracle import (
    Edit,
    answer_to_patch,
    apply_edits,
    make_patch,
    oracle_files,
    parse_search_replace,
)
from srl_agent.tasks import load_dataset

ROWS = {r["instance_id"]: r for r in load_dataset()}
TWO = ["more-itertools__more-itertools.10.5.0.nth-combination-negative-index", "jpvanhal__inflection.0.5.1.ordinal-hundred-teens"]


def gold_files(patch: str) -> list[str]:
    """The files a patch changes that exist before it, as unidiff reads them."""
    return [f.path for f in PatchSet(patch) if not f.is_added_file]


def gold_answer(patch: str) -> str:
    """The gold change written as SEARCH/REPLACE blocks, one per hunk (straight from unidiff's hunks)."""
    blocks = []
    for f in PatchSet(patch):
        for hunk in f:
            search = "".join(line.value for line in hunk if not line.is_added)
            replace = "".join(line.value for line in hunk if not line.is_removed)
            blocks.append(f"```python\n### {f.path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```")
    return "<think>The gold change.</think>\n" + "\n".join(blocks)


class OraclePolicy:
    """Answers each oracle prompt with the gold change of the task whose issue it shows."""

    name = "oracle-gold"

    def __init__(self):
        self.prompts = []

    def generate(self, batch, *, max_new_tokens, temperature, seed):
        self.prompts += batch
        return [gold_answer(next(r["patch"] for r in ROWS.values() if r["problem_statement"].strip() in m[1]["content"]))
                for m in batch]


@pytest.fixture
def labels(run_label):
    key, value = run_label.split("=", 1)
    return {key: value}


@pytest.fixture(scope="module")
def task_images(docker_client):
    from srl_agent.images import build_images

    build_images(progress=False)


# ----------------------------------------------------------------------------- pure


def test_oracle_files_match_unidiff_on_real_patches(shared_data):
    lite = json.loads((shared_data / "instances" / "sweagent" / "swe-bench-lite-test.json").read_text())
    patches = [r[k] for r in [*ROWS.values(), *lite] for k in ("patch", "test_patch") if r[k]]
    assert len(patches) > 15
    for patch in patches:
        assert oracle_files(patch) == gold_files(patch)
    # A removed line that starts with "--" is body, not a header.
    tricky = "diff --git a/q.sql b/q.sql\n--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,2 @@\n--- old comment\n+++ new\n x\n"
    assert oracle_files(tricky) == ["q.sql"] == gold_files(tricky)


def test_parsing_is_lenient_where_it_is_unambiguous():
    text = """<think>Maybe:
### a.py
<<<<<<< SEARCH
x
=======
y
>>>>>>> REPLACE
</think>
I will change two places.

```python
### /testbed/a.py
<<<<<<<< SEARCH
def f():   
    return 1
========
def f():
    return 2
>>>>>>>> REPLACE
```
`b/pkg/b.py`
<<<<<<< SEARCH
=======
NEW = True
>>>>>>> REPLACE
"""
    edits = parse_search_replace(text)
    assert edits == [Edit("a.py", "def f():   \n    return 1\n", "def f():\n    return 2\n"),
                     Edit("pkg/b.py", "", "NEW = True\n")]
    files = {"a.py": "import os\n\ndef f():\n    return 1\n"}
    after, errors = apply_edits(files, edits)
    assert errors == [] and after == {"a.py": "import os\n\ndef f():\n    return 2\n", "pkg/b.py": "NEW = True\n"}


def test_edits_that_cannot_apply_are_reported_and_skipped():
    files = {"a.py": "x = 1\nx = 1\ny = 2\n"}
    after, errors = apply_edits(files, [
        Edit("a.py", "x = 1\n", "x = 3\n"),  # twice in the file
        Edit("a.py", "z = 9\n", "z = 0\n"),  # nowhere
        Edit("c.py", "q\n", "r\n"),  # not a given file
        Edit("", "y = 2\n", "y = 3\n"),  # no file named
        Edit("a.py", "y = 2\n", "y = 4\n"),  # fine
    ])
    assert after == {"a.py": "x = 1\nx = 1\ny = 4\n"}
    assert errors == ["a.py: SEARCH occurs 2 times; it must be unique", "a.py: SEARCH does not occur in the file",
                      "c.py: not one of the given files", "a SEARCH/REPLACE block names no file"]
    assert answer_to_patch(files, "no blocks at all").patch == ""


def test_patches_apply_with_git(tmp_path):
    before = {"keep.py": "a\nb\nc\n", "end.py": "def g():\n    pass", "mid.txt": "".join(f"{i}\n" for i in range(30))}
    after = {**before, "end.py": "def g():\n    return 2", "mid.txt": before["mid.txt"].replace("15\n", "fifteen\n"),
             "new/n.py": "print(1)\n"}
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, text in before.items():
        (repo / name).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    patch = make_patch(before, after)
    assert "keep.py" not in patch and "\\ No newline at end of file" in patch
    subprocess.run(["git", "apply", "-"], cwd=repo, input=patch, text=True, check=True)
    for name, text in after.items():
        assert (repo / name).read_text() == text


# ----------------------------------------------------------------------------- real tasks


def test_oracle_prompt_holds_exactly_the_gold_files_at_base(task_images, labels):
    from srl_agent.evaluation.oracle import oracle_messages, read_files

    for iid in TWO:
        row = ROWS[iid]
        files = read_files(row, oracle_files(row["patch"]), labels=labels)
        system, user = oracle_messages(row["problem_statement"], files)
        assert "<<<<<<< SEARCH" in system["content"] and row["problem_statement"].strip() in user["content"]
        shown = [line[len("[start of "):-1] for line in user["content"].splitlines() if line.startswith("[start of ")]
        assert shown == gold_files(row["patch"])
        # Each file is shown whole at the base commit: every gold hunk's old lines sit at its stated line.
        for f in PatchSet(row["patch"]):
            body = user["content"].split(f"[start of {f.path}]\n", 1)[1].split(f"[end of {f.path}]", 1)[0]
            lines = body.splitlines(keepends=True)
            for hunk in f:
                old = [line.value for line in hunk if not line.is_added]
                assert lines[hunk.source_start - 1 : hunk.source_start - 1 + len(old)] == old


def test_gold_change_as_search_replace_resolves(task_images, labels):
    from srl_agent.evaluation.oracle import read_files
    from srl_agent.grading import evaluate

    for iid in TWO:
        row = ROWS[iid]
        files = read_files(row, oracle_files(row["patch"]), labels=labels)
        result = answer_to_patch(files, gold_answer(row["patch"]))
        assert result.errors == [] and len(result.edits) == sum(len(f) for f in PatchSet(row["patch"]))
        verdict = evaluate(row, result.patch, labels=labels)
        assert verdict["resolved"], (iid, verdict["reason"])
    assert not evaluate(ROWS[TWO[0]], "", labels=labels)["resolved"]


def test_oracle_mode_end_to_end_through_the_harness(task_images, labels, tmp_path):
    from srl_agent.evaluation import run_eval

    policy = OraclePolicy()
    summary = run_eval(policy=policy, mode="oracle", instance_ids=TWO, output_dir=tmp_path, labels=labels)
    assert len(policy.prompts) == 2
    assert summary["resolved"] == summary["total"] == 2 and summary["resolve_rate"] == 1.0
    assert summary["generation"] == {"edits": sum(len(f) for i in TWO for f in PatchSet(ROWS[i]["patch"])),
                                     "edit_errors": 0}
    record = json.loads((tmp_path / "oracle" / f"{TWO[0]}.json").read_text())
    assert record["files"] == gold_files(ROWS[TWO[0]]["patch"]) and record["errors"] == []


def test_oracle_mode_with_the_tiny_model(task_images, labels, tmp_path):
    from srl_agent.agent import AgentConfig
    from srl_agent.evaluation import run_eval

    summary = run_eval(None, mode="oracle", instance_ids=TWO[1:], output_dir=tmp_path, labels=labels,
                       agent_config=AgentConfig(max_new_tokens=16))
    assert summary["model"] == "tiny" and summary["total"] == 1
    (pred,) = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert pred["instance_id"] == TWO[1] and isinstance(pred["model_patch"], str)
