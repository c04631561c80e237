"""Fault injection: the distillation teacher endpoint answering errors or garbage (issue 9).

The real distill task (``vlthinker.tasks.data.distill``) on the smoke config's synthetic train set,
against the scripted OpenAI-compatible server of ``test_backends`` over HTTP on 127.0.0.1. Each
record's teacher prompt is mapped to one behaviour: a correct chain, persistent HTTP 500, malformed
JSON, an empty ``choices`` list, or nonsense text. Failures and garbage must be counted in the
step's stats, bounded by ``distill.max_failed_share`` (past it: a clear error, nothing written, the
journal kept) and a re-run after the teacher is fixed resumes, asking only what is missing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from test_backends import FakeServer, Reply, completion, last_text

from vlthinker.config import load_config
from vlthinker.records import read_records
from vlthinker.steps.chain_sources import teacher_prompt
from vlthinker.steps.journal import journal_path
from vlthinker.steps.sft_data import SourceFailureError
from vlthinker.tasks.data import distill, make_sources

ROOT = Path(__file__).resolve().parents[1]
K = 2
BATCH = 16


@pytest.fixture(scope="module")
def smoke_train(tmp_path_factory):
    """The smoke config's synthetic train set (exact captions: the text teacher can read them)."""
    root = tmp_path_factory.mktemp("teacher-faults")
    make_sources(load_config(ROOT / "recipes" / "smoke.yaml"), str(root / "train"), str(root / "heldout"))
    return root / "train"


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.stop()


class Teacher:
    """Answers each record's prompt per ``plan`` (record id -> behaviour); the rest get a correct chain."""

    def __init__(self, server: FakeServer, records, plan: dict[str, str]):
        self.server = server
        self.by_text = {last_text({"messages": teacher_prompt(r)}): r for r in records}
        self.plan = plan
        self.asked: Counter = Counter()
        server.default = self.reply

    def reply(self, body) -> Reply:
        record = self.by_text[last_text(body)]
        self.asked[record.id] += 1
        behaviour = self.plan.get(record.id, "good")
        if behaviour == "http500":
            return Reply(status=500, body={"error": {"message": "teacher overloaded"}})
        if behaviour == "not_json":
            return Reply(body=b"<html>502 Bad Gateway</html>")
        if behaviour == "empty_choices":
            return Reply(body={"object": "chat.completion", "choices": []})
        if behaviour == "nonsense":
            return Reply(body=completion(["lorem ipsum dolor sit amet"] * body["n"]))
        chain = f"<think>Reading the description, the answer is {record.answer}.</think> \\boxed{{{record.answer}}}"
        return Reply(body=completion([chain] * body["n"]))


def teacher_config(base_url: str, max_failed_share: float = 0.2):
    return load_config(
        ROOT / "recipes" / "smoke.yaml",
        {
            "distill.teacher": "backend",
            "distill.backend": {
                "kind": "openai",
                "model": "r1-test",
                "base_url": base_url,
                "max_retries": 1,
                "backoff_base_s": 0.01,
                "backoff_max_s": 0.02,
                "timeout_s": 20,
                "max_concurrency": 4,
            },
            "distill.k": K,
            "distill.batch_size": BATCH,
            "distill.max_failed_share": max_failed_share,
        },
    )


def plan_of(records, counts: dict[str, int]) -> dict[str, str]:
    """The first records get the faulty behaviours, ``counts[behaviour]`` records each (only records
    whose prompt no other record shares: the server tells records apart by their prompt)."""
    texts = Counter(last_text({"messages": teacher_prompt(r)}) for r in records)
    unique = [r.id for r in records if texts[last_text({"messages": teacher_prompt(r)})] == 1]
    plan, ids = {}, iter(unique)
    for behaviour, n in counts.items():
        for _ in range(n):
            plan[next(ids)] = behaviour
    return plan


def leftovers(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.tmp-"))


def test_errors_and_garbage_within_the_bound_are_counted_and_reported(smoke_train, server, tmp_path):
    records = read_records(smoke_train)
    counts = {"http500": 4, "not_json": 3, "empty_choices": 2, "nonsense": 3}
    teacher = Teacher(server, records, plan_of(records, counts))
    output = tmp_path / "sft"

    stats = distill(teacher_config(server.base_url), str(smoke_train), str(output))

    failures = stats["failures"]
    assert failures["failed_items"] == 9
    assert failures["failed_by_kind"] == {"malformed_response": 5, "request_failed": 4}
    assert failures["garbage_items"] == 3
    assert failures["share"] == round(12 / len(records), 4)
    assert any("HTTP 500" in e and "127.0.0.1" in e for e in failures["examples"])
    assert failures["requests"]["retries"] == 4, "each HTTP 500 was retried once (max_retries=1)"
    assert failures["requests"]["failed"] == 4 and failures["requests"]["malformed"] == 5
    assert stats["items"]["dropped"]["request_failed"] == 9
    assert stats["chains"]["dropped"]["no_think_block"] == 3 * K
    # every answered, non-garbage item is kept; the failed and garbage ones are not
    kept = {r.id for r in read_records(output)}
    assert len(kept) == stats["items"]["kept"] == len(records) - 12
    assert not kept & set(teacher.plan)
    assert teacher.asked[next(i for i, b in teacher.plan.items() if b == "http500")] == 2
    assert not journal_path(output, "chains").exists() and not leftovers(output)


def test_past_the_bound_the_step_stops_clearly_and_a_rerun_resumes(smoke_train, server, tmp_path):
    records = read_records(smoke_train)
    # 12 failed + 20 garbage = 32 of 120 items (27 %) > 20 %; failures alone (10 %) are within it
    counts = {"http500": 6, "empty_choices": 6, "nonsense": 20}
    teacher = Teacher(server, records, plan_of(records, counts))
    output = tmp_path / "sft"
    output.mkdir()
    (output / "records.jsonl").write_text("")  # a previous dataset stays as it was

    with pytest.raises(SourceFailureError) as err:
        distill(teacher_config(server.base_url), str(smoke_train), str(output))
    message = str(err.value)
    assert "32 of 120 items" in message and "distill.max_failed_share = 20.0%" in message
    assert "12 failed request(s) (6 malformed_response, 6 request_failed)" in message
    assert "20 garbage item(s)" in message and server.base_url in message
    assert "re-run resumes" in message and str(journal_path(output, "chains")) in message
    assert sorted(p.name for p in output.iterdir()) == ["records.jsonl"] and not leftovers(output)
    assert journal_path(output, "chains").is_file()

    # the teacher is fixed: only the items without a journaled answer are asked again
    fixed = Teacher(server, records, {})
    stats = distill(teacher_config(server.base_url), str(smoke_train), str(output))
    assert set(fixed.asked) == {i for i, b in teacher.plan.items() if b != "nonsense"}
    assert stats["failures"]["failed_items"] == 0
    assert stats["failures"]["garbage_items"] == 20, "journaled garbage is judged again, not re-asked"
    assert len(read_records(output)) == len(records) - 20


def test_a_dead_teacher_stops_the_step_early(smoke_train, server, tmp_path):
    records = read_records(smoke_train)
    teacher = Teacher(server, records, {r.id: "http500" for r in records})
    output = tmp_path / "sft"

    with pytest.raises(SourceFailureError) as err:
        distill(teacher_config(server.base_url), str(smoke_train), str(output))
    # 0.2 x 120 = 24 failures allowed: the second batch of 16 passes it, the other 88 are never asked
    assert sum(teacher.asked.values()) == 2 * BATCH * 2, "two batches, each request tried twice"
    assert f"stopped after asking for {2 * BATCH} of 120 items" in str(err.value)
    assert "failed after 2 attempt(s)" in str(err.value)
    assert not output.exists() and not leftovers(output)


def test_a_zero_bound_refuses_any_failure(smoke_train, server, tmp_path):
    records = read_records(smoke_train)
    Teacher(server, records, plan_of(records, {"nonsense": 1}))
    with pytest.raises(SourceFailureError, match="1 of 120 items"):
        distill(teacher_config(server.base_url, 0.0), str(smoke_train), str(tmp_path / "sft"))
