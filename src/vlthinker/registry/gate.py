"""The promotion gate: a paired test of candidate vs champion (or base) on identical items, under a lock.

Pure part (no MLflow): :func:`paired_test` pairs two ``item key -> correct`` maps on the keys both
hold and runs

* ``mcnemar`` — the exact McNemar test, one-sided: with b items only the candidate got right and c
  only the baseline got right, p = P(X >= b) for X ~ Binomial(b + c, 1/2) (p = 1 when b + c = 0); or
* ``bootstrap`` — the paired bootstrap of the accuracy difference (items resampled with their pair):
  p = (1 + #{resampled differences <= margin}) / (1 + samples), with the [alpha, 1 - alpha]
  percentile interval of the difference;

and :func:`decide` promotes iff ``difference > margin`` AND ``p < alpha`` (for McNemar the margin
applies to the observed difference; the bootstrap tests ``difference > margin`` itself).

Gate (:func:`gate_version`): the candidate's per-item results come from its evaluation run; the
gate takes the :class:`~vlthinker.registry.lock.GateLock`, re-reads the champion *under the lock*,
compares with it (or with the recorded base when there is no champion yet; benchmarks must carry the
same dataset hash on both sides), journals its intent, applies it (``champion`` alias ->
candidate, ``previous-champion`` alias -> the replaced version, decision tags ``vlt.gate`` (JSON:
decision, reasons, statistics, the version it replaced) and ``vlt.decision`` on the candidate), then
releases the lock. Gates running at once are serialised by the lock, and each decides against the
champion of the moment, so exactly one champion results and no promotion is lost. A gate that loses
MLflow after journaling is completed by the next lock holder (:func:`recover`, or any later gate or
rollback); one that fails before journaling changed nothing. :func:`rollback` restores the previous
champion the same way.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlthinker.registry.client import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    Registry,
    RegistryError,
    RegistryUnavailableError,
)
from vlthinker.registry.lock import GateLock
from vlthinker.registry.register import EVAL_ARTIFACTS

TestName = Literal["mcnemar", "bootstrap"]
Phase = Callable[[str], None]
GATE_TAG = "vlt.gate"
DECISION_TAG = "vlt.decision"
ROLLBACK_TAG = "vlt.rollback"


class GateError(RegistryError):
    """The gate cannot compare these two models (different items, missing scores, already gated)."""


@dataclass(frozen=True)
class GateSettings:
    """Decision rule and lock timing (from ``config.registry``)."""

    margin: float = 0.0
    alpha: float = 0.05
    test: TestName = "mcnemar"
    bootstrap_samples: int = 10_000
    seed: int = 0
    benchmarks: tuple[str, ...] = ("heldout",)
    lease_s: float = 120.0
    wait_s: float = 600.0

    @classmethod
    def from_config(cls, registry_config: Any) -> GateSettings:
        return cls(
            margin=registry_config.margin,
            alpha=registry_config.alpha,
            test=registry_config.test,
            bootstrap_samples=registry_config.bootstrap_samples,
            seed=registry_config.seed,
            benchmarks=tuple(registry_config.gate_benchmarks),
            lease_s=registry_config.lock_timeout_s,
            wait_s=registry_config.lock_wait_s,
        )


# --------------------------------------------------------------------------------------------------
# Paired statistics (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedResult:
    test: str
    n: int
    candidate_correct: int
    baseline_correct: int
    candidate_only: int
    baseline_only: int
    accuracy_candidate: float
    accuracy_baseline: float
    difference: float
    p_value: float
    ci: tuple[float, float] | None = None


def paired_vectors(
    candidate: Mapping[str, bool], baseline: Mapping[str, bool]
) -> tuple[list[bool], list[bool], list[str]]:
    """The two correctness vectors on the keys both hold (sorted), and those keys."""
    keys = sorted(set(candidate) & set(baseline))
    return [bool(candidate[k]) for k in keys], [bool(baseline[k]) for k in keys], keys


def mcnemar_exact_p(candidate_only: int, baseline_only: int) -> float:
    """One-sided exact McNemar: P(X >= b), X ~ Binomial(b + c, 1/2); 1.0 without discordant pairs."""
    b, c = candidate_only, baseline_only
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(b, n + 1))
    return min(1.0, tail / 2**n)


def bootstrap_difference(
    candidate: Sequence[bool], baseline: Sequence[bool], samples: int, seed: int, margin: float, alpha: float
) -> tuple[float, tuple[float, float]]:
    """Paired bootstrap: (p for H0 difference <= margin, [alpha, 1 - alpha] percentile interval)."""
    import numpy as np

    diff = np.asarray(candidate, dtype=np.int8) - np.asarray(baseline, dtype=np.int8)
    n = diff.size
    if n == 0:
        return 1.0, (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = []
    chunk = max(1, 2_000_000 // n)
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        means.append(diff[rng.integers(0, n, size=(size, n))].mean(axis=1))
    boot = np.concatenate(means)
    p = (1 + int(np.sum(boot <= margin))) / (1 + samples)
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return float(p), (float(low), float(high))


def paired_test(
    candidate: Mapping[str, bool], baseline: Mapping[str, bool], settings: GateSettings = GateSettings()
) -> PairedResult:
    """Pair on identical items and test whether the candidate is better than the baseline."""
    cand, base, keys = paired_vectors(candidate, baseline)
    n = len(keys)
    if n == 0:
        raise GateError("the candidate and the baseline share no evaluation item: nothing to compare")
    b = sum(c and not h for c, h in zip(cand, base, strict=True))
    c = sum(h and not c for c, h in zip(cand, base, strict=True))
    acc_c, acc_b = sum(cand) / n, sum(base) / n
    ci = None
    if settings.test == "mcnemar":
        p = mcnemar_exact_p(b, c)
    elif settings.test == "bootstrap":
        p, ci = bootstrap_difference(
            cand, base, settings.bootstrap_samples, settings.seed, settings.margin, settings.alpha
        )
    else:
        raise GateError(f"unknown test {settings.test!r}: expected 'mcnemar' or 'bootstrap'")
    return PairedResult(
        test=settings.test,
        n=n,
        candidate_correct=sum(cand),
        baseline_correct=sum(base),
        candidate_only=b,
        baseline_only=c,
        accuracy_candidate=acc_c,
        accuracy_baseline=acc_b,
        difference=acc_c - acc_b,
        p_value=p,
        ci=ci,
    )


def _pts(value: float) -> str:
    return f"{100 * value:+.1f} points"


def decide(
    result: PairedResult, settings: GateSettings, against: str = "the champion"
) -> tuple[bool, list[str]]:
    """Promote iff difference > margin and p < alpha; the reasons say why, with the numbers."""
    clears_margin = result.difference > settings.margin
    significant = result.p_value < settings.alpha
    reasons = [
        f"{result.n} paired items; accuracy {100 * result.accuracy_candidate:.1f}% vs {against} "
        f"{100 * result.accuracy_baseline:.1f}%: {_pts(result.difference)} "
        f"{'>' if clears_margin else '<='} margin {_pts(settings.margin)}",
    ]
    if result.test == "mcnemar":
        test = (
            f"exact McNemar (one-sided): {result.candidate_only} items only the candidate got right, "
            f"{result.baseline_only} only {against}; p = {result.p_value:.4g}"
        )
    else:
        low, high = result.ci or (0.0, 0.0)
        test = (
            f"paired bootstrap ({settings.bootstrap_samples} resamples): difference interval "
            f"[{100 * low:+.1f}, {100 * high:+.1f}] points; p = {result.p_value:.4g}"
        )
    reasons.append(f"{test} {'<' if significant else '>='} alpha {settings.alpha:g}")
    return clears_margin and significant, reasons


# --------------------------------------------------------------------------------------------------
# Scores stored in the registry
# --------------------------------------------------------------------------------------------------


@dataclass
class Scores:
    """One evaluation as the gate needs it: per-item correctness and benchmark dataset hashes."""

    correct: dict[str, bool]
    hashes: dict[str, str]
    by_benchmark: dict[str, int] = field(default_factory=dict)


def load_scores(registry: Registry, run_id: str) -> Scores:
    """Download an evaluation run's predictions and metrics."""
    with tempfile.TemporaryDirectory(prefix="vlthinker-gate-") as tmp:
        preds = registry.download(run_id, f"{EVAL_ARTIFACTS}/predictions.jsonl", tmp)
        metrics_path = registry.download(run_id, f"{EVAL_ARTIFACTS}/metrics.json", tmp)
        rows = [
            json.loads(line) for line in Path(preds).read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        metrics = json.loads(Path(metrics_path).read_text())
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["benchmark"]] = counts.get(row["benchmark"], 0) + 1
    hashes = {name: b.get("dataset_md5", "") for name, b in metrics["benchmarks"].items()}
    return Scores({row["key"]: bool(row["correct"]) for row in rows}, hashes, counts)


def restrict(scores: Scores, benchmarks: Sequence[str]) -> dict[str, bool]:
    prefixes = tuple(f"{b}/" for b in benchmarks)
    return {k: v for k, v in scores.correct.items() if k.startswith(prefixes)}


def check_comparable(candidate: Scores, baseline: Scores, benchmarks: Sequence[str], label: str) -> None:
    for name in benchmarks:
        if name not in candidate.hashes:
            raise GateError(f"the candidate was not evaluated on benchmark {name!r}")
        if name not in baseline.hashes:
            raise GateError(f"{label} was not evaluated on benchmark {name!r}")
        if candidate.hashes[name] != baseline.hashes[name]:
            raise GateError(
                f"benchmark {name!r}: the candidate was scored on dataset {candidate.hashes[name]}, {label} on "
                f"{baseline.hashes[name]}: different items, not comparable (re-evaluate on the same set)"
            )


def version_record(mv: Any, tag: str = GATE_TAG) -> dict[str, Any] | None:
    raw = (mv.tags or {}).get(tag)
    return json.loads(raw) if raw else None


# --------------------------------------------------------------------------------------------------
# Applying decisions (idempotent; shared by the gate, rollback and recovery)
# --------------------------------------------------------------------------------------------------


def apply_intent(registry: Registry, intent: Mapping[str, Any], before_write: Phase | None = None) -> None:
    """Carry out a journaled gate or rollback; every write is idempotent, so re-running it is safe."""
    step = before_write or (lambda _label: None)
    op = intent["op"]
    if op == "gate":
        version = int(intent["version"])
        if intent["decision"] == "promote":
            step("set-champion")
            registry.set_alias(CHAMPION, version)
            step("set-previous-champion")
            if intent.get("champion_before") is not None:
                registry.set_alias(PREVIOUS_CHAMPION, int(intent["champion_before"]))
            else:
                registry.delete_alias(PREVIOUS_CHAMPION)
        step("tag-gate")
        registry.set_version_tag(version, GATE_TAG, json.dumps(intent["record"], sort_keys=True))
        step("tag-decision")
        registry.set_version_tag(version, DECISION_TAG, intent["decision"])
    elif op == "rollback":
        target, previous = intent.get("to"), intent.get("new_previous")
        step("set-champion")
        if target is not None:
            registry.set_alias(CHAMPION, int(target))
        else:
            registry.delete_alias(CHAMPION)
        step("set-previous-champion")
        if previous is not None:
            registry.set_alias(PREVIOUS_CHAMPION, int(previous))
        else:
            registry.delete_alias(PREVIOUS_CHAMPION)
        step("tag-rollback")
        registry.set_version_tag(
            int(intent["from"]), ROLLBACK_TAG, json.dumps(intent["record"], sort_keys=True)
        )
        step("tag-decision")
        registry.set_version_tag(int(intent["from"]), DECISION_TAG, "rolled-back")
    else:
        raise RegistryError(f"unknown journaled operation {op!r}")


def make_lock(registry: Registry, settings: GateSettings) -> GateLock:
    return GateLock(
        registry,
        lease_s=settings.lease_s,
        wait_s=settings.wait_s,
        recover=lambda intent: apply_intent(registry, intent),
    )


# --------------------------------------------------------------------------------------------------
# Gate, rollback, recover
# --------------------------------------------------------------------------------------------------


@dataclass
class GateResult:
    model: str
    version: int
    decision: str
    reasons: list[str]
    record: dict[str, Any]
    champion_before: int | None
    champion_after: int | None

    def report(self) -> str:
        against = self.record["compared_with"]
        label = "the base" if against["kind"] == "base" else f"champion {self.model}/{against['version']}"
        lines = [
            f"gate {self.model}/{self.version} (iteration {self.record.get('iteration')}, "
            f"{self.record.get('stage')}) vs {label}: {self.decision.upper()}"
        ]
        lines += [f"  - {reason}" for reason in self.reasons]
        if self.decision == "promote":
            before = "none" if self.champion_before is None else f"{self.model}/{self.champion_before}"
            lines.append(f"  champion: {before} -> {self.model}/{self.version}")
        else:
            keep = (
                "none (the base stays the reference)"
                if self.champion_after is None
                else f"{self.model}/{self.champion_after}"
            )
            lines.append(f"  champion unchanged: {keep}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _baseline(registry: Registry, champion: int | None) -> tuple[str, dict[str, Any], Scores]:
    if champion is not None:
        mv = registry.require_version(champion)
        run_id = (mv.tags or {}).get("vlt.eval_run_id")
        if not run_id:
            raise GateError(
                f"champion {registry.model_name}/{champion} has no evaluation run (tag vlt.eval_run_id)"
            )
        return (
            f"champion v{champion}",
            {"kind": "version", "version": champion},
            load_scores(registry, run_id),
        )
    base = registry.base_record()
    if base is None:
        raise GateError(
            f"{registry.model_name} has no champion and no recorded base: record the base model's evaluation "
            "first (`vlthinker step record-base`), the first candidate is compared with it"
        )
    return (
        "the base",
        {"kind": "base", "version": None, "model": base.get("model")},
        load_scores(registry, base["run_id"]),
    )


def gate_version(
    registry: Registry,
    version: int,
    settings: GateSettings = GateSettings(),
    on_phase: Phase | None = None,
    regate: bool = False,
) -> GateResult:
    """Decide whether ``version`` replaces the champion, and apply the decision (see the module doc)."""
    phase = on_phase or (lambda _name: None)
    mv = registry.require_version(version)
    tags = dict(mv.tags or {})
    if tags.get(DECISION_TAG) and not regate:
        raise GateError(f"{registry.model_name}/{version} was already gated ({tags[DECISION_TAG]})")
    run_id = tags.get("vlt.eval_run_id")
    if not run_id:
        raise GateError(f"{registry.model_name}/{version} has no evaluation run (tag vlt.eval_run_id)")
    candidate = load_scores(registry, run_id)
    lock = make_lock(registry, settings)
    lease = lock.acquire({"op": "gate", "version": version})
    journaled: bool | None = False
    try:
        phase("locked")
        decided = (registry.require_version(version).tags or {}).get(DECISION_TAG)
        if decided and not regate:  # another gate of the same version may have finished meanwhile
            raise GateError(f"{registry.model_name}/{version} was already gated ({decided})")
        champion = registry.champion()  # re-read under the lock: the decision is against this one
        if champion == version:
            raise GateError(f"{registry.model_name}/{version} is already the champion")
        label, compared_with, baseline = _baseline(registry, champion)
        check_comparable(candidate, baseline, settings.benchmarks, label)
        result = paired_test(
            restrict(candidate, settings.benchmarks), restrict(baseline, settings.benchmarks), settings
        )
        promote, reasons = decide(result, settings, label)
        reasons.insert(
            0, "benchmarks " + ", ".join(f"{b} ({candidate.hashes[b]})" for b in settings.benchmarks)
        )
        decision = "promote" if promote else "reject"
        record = {
            "decision": decision,
            "reasons": reasons,
            "statistics": asdict(result),
            "margin": settings.margin,
            "alpha": settings.alpha,
            "compared_with": compared_with,
            "previous_champion": champion,
            "benchmarks": {b: candidate.hashes[b] for b in settings.benchmarks},
            "iteration": tags.get("vlt.iteration"),
            "stage": tags.get("vlt.stage"),
            "lock_epoch": lease.epoch,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        intent = {
            "op": "gate",
            "version": version,
            "decision": decision,
            "record": record,
            "champion_before": champion,
        }
        phase("decided")
        lock.check(lease)
        journaled = None  # unknown while the write is in flight (its response may be lost)
        lock.journal(lease, intent, check=False)
        journaled = True
        phase("journaled")

        def before_write(label: str) -> None:
            lock.check(lease)
            phase(label)

        apply_intent(registry, intent, before_write)
        lock.mark_applied(lease)
        phase("applied")
    except RegistryUnavailableError as exc:
        raise _outage(
            exc, f"the gate of {registry.model_name}/{version}", journaled, lease, settings
        ) from exc
    except BaseException:
        if journaled is False:
            _release_quietly(lock, lease, "aborted")
        raise
    _release_quietly(lock, lease, "released")
    return GateResult(
        model=registry.model_name,
        version=version,
        decision=decision,
        reasons=reasons,
        record=record,
        champion_before=champion,
        champion_after=version if promote else champion,
    )


def _outage(
    exc: RegistryUnavailableError, what: str, journaled: bool | None, lease: Any, settings: GateSettings
) -> RegistryUnavailableError:
    """The one clear message of an outage mid-gate: what state the registry is in, what to do."""
    if journaled is None:
        state = (
            f"{what} lost MLflow while journaling its decision in {lease.name}: either nothing changed or the "
            f"decision is completed as a whole; `vlthinker registry recover` settles which once MLflow is back "
            f"(after the lease expires, at most {settings.lease_s:.0f}s)"
        )
    elif journaled:
        state = (
            f"{what} had journaled its decision in {lease.name}, so it is not lost: once MLflow is back it is "
            f"completed by `vlthinker registry recover` (or the next gate or rollback), after its lease "
            f"expires (at most {settings.lease_s:.0f}s)"
        )
    else:
        state = (
            f"{what} stopped before journaling anything: the champion, aliases and decision tags are "
            f"unchanged; run it again when MLflow is back"
        )
    return RegistryUnavailableError(f"{exc}\n{state}")


def _release_quietly(lock: GateLock, lease: Any, status: str) -> None:
    """Release; if MLflow is gone the lease simply expires (nothing was journaled, or all was applied)."""
    try:
        lock.release(lease, status)
    except RegistryError as exc:
        lock.registry.log(f"registry: could not release {lease.name} ({exc}); it expires on its own")


def rollback(registry: Registry, settings: GateSettings = GateSettings(), reason: str = "") -> dict[str, Any]:
    """Make the previous champion the champion again (journaled like a gate); return what changed."""
    lock = make_lock(registry, settings)
    lease = lock.acquire({"op": "rollback"})
    journaled: bool | None = False
    try:
        current = registry.champion()
        if current is None:
            raise GateError(f"{registry.model_name} has no champion to roll back")
        record = version_record(registry.require_version(current)) or {}
        if "previous_champion" in record:
            target = record["previous_champion"]
        else:
            target = registry.alias_version(PREVIOUS_CHAMPION)
            if target is None:
                raise GateError(f"{registry.model_name}/{current} has no recorded previous champion")
        new_previous = None
        if target is not None:
            target_record = version_record(registry.require_version(target)) or {}
            new_previous = target_record.get("previous_champion")
        intent = {
            "op": "rollback",
            "from": current,
            "to": target,
            "new_previous": new_previous,
            "record": {
                "from": current,
                "to": target,
                "reason": reason,
                "lock_epoch": lease.epoch,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        lock.check(lease)
        journaled = None
        lock.journal(lease, intent, check=False)
        journaled = True
        apply_intent(registry, intent, lambda _label: lock.check(lease))
        lock.mark_applied(lease)
    except RegistryUnavailableError as exc:
        raise _outage(exc, f"the rollback of {registry.model_name}", journaled, lease, settings) from exc
    except BaseException:
        if journaled is False:
            _release_quietly(lock, lease, "aborted")
        raise
    _release_quietly(lock, lease, "released")
    return {"model": registry.model_name, "from": current, "to": target, "previous_champion": new_previous}


def recover(registry: Registry, settings: GateSettings = GateSettings()) -> dict[str, Any]:
    """Take the lock once: completes any gate or rollback that was journaled but not finished."""
    lock = make_lock(registry, settings)
    pending = lock.pending()
    lease = lock.acquire({"op": "recover"})
    _release_quietly(lock, lease, "released")
    return {"model": registry.model_name, "completed": pending if pending and pending.get("intent") else None}
