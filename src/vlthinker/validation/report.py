"""Validation outcome: per-rule results, a short human summary, and JSON + HTML reports.

`ValidationResult.success` is True iff every critical expectation passed; warnings never fail.
The JSON report holds our per-rule digest, balance counts, every contamination overlap and GE's
full validation result; the HTML report is one self-contained page (no scripts, no external
assets) that KFP can show as an HTML artifact and MLflow can store as an artifact.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlthinker.validation.rules import CRITICAL, WARNING

SUMMARY_EXAMPLES = 3
JSON_SUFFIX = ".validation.json"
HTML_SUFFIX = ".validation.html"


@dataclass(frozen=True)
class RuleOutcome:
    """What one expectation found."""

    rule: str
    severity: str
    success: bool
    expectation: str
    description: str
    failing: int | None
    checked: int | None
    examples: list[dict[str, Any]]
    error: str | None = None
    observed: Any = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _example(item: dict[str, Any], index_column: str) -> dict[str, Any]:
    values = {k: v for k, v in item.items() if k != index_column}
    value: Any = next(iter(values.values())) if len(values) == 1 else values
    return {"record": item.get(index_column), "value": value}


def _exception(result: dict[str, Any]) -> str | None:
    info = result.get("exception_info") or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "expectation raised an exception")
    for nested in info.values():  # older layouts key the info by metric id
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return str(nested.get("exception_message") or "expectation raised an exception")
    return None


def outcomes_from_gx(
    gx_result: dict[str, Any], order: list[str], index_column: str = "ref", limit: int = 20
) -> list[RuleOutcome]:
    """Digest GE's validation result into one `RuleOutcome` per expectation, in suite order."""
    out = []
    for result in gx_result.get("results", []):
        config = result.get("expectation_config", {})
        meta = config.get("meta") or {}
        details = result.get("result") or {}
        examples = [
            _example(e, index_column) for e in (details.get("partial_unexpected_index_list") or [])[:limit]
        ]
        error = _exception(result)
        out.append(
            RuleOutcome(
                rule=str(meta.get("rule", config.get("type"))),
                severity=str(config.get("severity") or CRITICAL),
                success=bool(result.get("success")) and error is None,
                expectation=str(config.get("type")),
                description=str(meta.get("description", "")),
                failing=details.get("unexpected_count"),
                checked=details.get("element_count"),
                examples=examples,
                error=error,
                observed=details.get("observed_value"),
            )
        )
    rank = {name: position for position, name in enumerate(order)}
    return sorted(out, key=lambda o: rank.get(o.rule, len(rank)))


@dataclass
class ValidationResult:
    """Everything one validation found; `success` means every critical expectation passed."""

    dataset: str
    kind: str
    against: list[str]
    records: int
    outcomes: list[RuleOutcome]
    counts: dict[str, dict[str, int]]
    overlaps: list[dict[str, str]]
    skipped_eval_records: dict[str, int]
    config: dict[str, Any]
    seconds: float
    gx_result: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes if o.severity == CRITICAL)

    @property
    def failed(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    def outcome(self, rule: str) -> RuleOutcome:
        for item in self.outcomes:
            if item.rule == rule:
                return item
        raise KeyError(f"no rule {rule!r} in the {self.kind} suite")

    def failed_rules(self) -> set[str]:
        return {o.rule for o in self.failed}

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "kind": self.kind,
            "against": self.against,
            "success": self.success,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "failed_critical": sorted(self.failed_rules()),
            "warnings": sorted(o.rule for o in self.warnings),
            "rules": [o.to_dict() for o in self.outcomes],
            "counts": self.counts,
            "contamination": {"overlaps": self.overlaps, "skipped_eval_records": self.skipped_eval_records},
            "config": self.config,
            "great_expectations": self.gx_result,
        }

    def summary(self) -> str:
        return format_summary(self)

    def write(self, report_dir: str | Path | None = None) -> tuple[Path, Path]:
        """Write the JSON and HTML reports; default: beside the dataset as <name>.validation.{json,html}."""
        dataset = Path(self.dataset)
        if report_dir is None:
            json_path = dataset.parent / f"{dataset.name}{JSON_SUFFIX}"
            html_path = dataset.parent / f"{dataset.name}{HTML_SUFFIX}"
        else:
            Path(report_dir).mkdir(parents=True, exist_ok=True)
            json_path, html_path = Path(report_dir) / "validation.json", Path(report_dir) / "validation.html"
        _atomic_write(json_path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        _atomic_write(html_path, render_html(self))
        return json_path, html_path


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _describe(outcome: RuleOutcome) -> str:
    if outcome.error:
        return f"could not run: {outcome.error}"
    if outcome.failing is None:
        return f"observed {outcome.observed}"
    checked = f" of {outcome.checked}" if outcome.checked is not None else ""
    shown = "; ".join(_example_text(e) for e in outcome.examples[:SUMMARY_EXAMPLES])
    return f"{outcome.failing}{checked} records" + (f", e.g. {shown}" if shown else "")


def _example_text(example: dict[str, Any]) -> str:
    value = example["value"]
    text = value if isinstance(value, str) and value.strip() else json.dumps(value, default=str)
    if len(text) > 160:
        text = text[:159] + "…"
    return f"{example['record']}: {text}"


def format_summary(result: ValidationResult) -> str:
    """A few lines for people: verdict, then each failed critical rule and each warning."""
    n_critical = sum(o.severity == CRITICAL for o in result.outcomes)
    verdict = "PASSED" if result.success else "FAILED"
    against = f" against {len(result.against)} eval set(s)" if result.against else ""
    lines = [
        f"{result.kind} dataset {result.dataset} ({result.records} records){against}: {verdict} — "
        f"{len(result.failed)} of {n_critical} critical expectations failed, {len(result.warnings)} warning(s)"
    ]
    for outcome in result.failed:
        lines.append(f"  FAIL {outcome.rule} ({outcome.expectation}): {_describe(outcome)}")
    for outcome in result.warnings:
        lines.append(f"  WARN {outcome.rule} ({outcome.expectation}): {_describe(outcome)}")
    if result.overlaps:
        lines.append(
            f"  contamination: {len(result.overlaps)} overlap(s) with the evaluation sets (see report)"
        )
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}
.ok{color:#176f2c}.fail{color:#b00020;font-weight:bold}.warn{color:#a15c00;font-weight:bold}
code{font-size:.85em}
"""


def _cell(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, default=str))


def _status(outcome: RuleOutcome) -> str:
    if outcome.success:
        return '<span class="ok">pass</span>'
    return (
        '<span class="fail">FAIL</span>' if outcome.severity == CRITICAL else '<span class="warn">warn</span>'
    )


def _rules_table(result: ValidationResult) -> str:
    rows = []
    for o in result.outcomes:
        examples = "<br>".join(_cell(_example_text(e)) for e in o.examples) or (
            _cell(o.error) if o.error else ""
        )
        failing = "" if o.failing is None else f"{o.failing} / {o.checked}"
        if o.failing is None and o.observed is not None:
            failing = f"observed {_cell(o.observed)}"
        rows.append(
            f"<tr><td>{_status(o)}</td><td><b>{_cell(o.rule)}</b><br>{_cell(o.description)}</td>"
            f"<td>{_cell(o.severity)}</td><td><code>{_cell(o.expectation)}</code></td>"
            f"<td>{failing}</td><td>{examples}</td></tr>"
        )
    head = "<tr><th></th><th>rule</th><th>severity</th><th>expectation</th><th>failing</th><th>examples</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _counts_tables(counts: dict[str, dict[str, int]]) -> str:
    parts = []
    for name, table in counts.items():
        total = sum(table.values()) or 1
        body = "".join(
            f"<tr><td>{_cell(k)}</td><td>{v}</td><td>{v / total:.1%}</td></tr>" for k, v in table.items()
        )
        parts.append(
            f"<h3>per {_cell(name)}</h3><table><tr><th>{_cell(name)}</th><th>records</th><th>share</th></tr>{body}</table>"
        )
    return "".join(parts)


def _overlaps_table(overlaps: list[dict[str, str]]) -> str:
    if not overlaps:
        return "<p>No overlap with the evaluation sets.</p>"
    body = "".join(
        f"<tr><td>{_cell(o['rule'])}</td><td>{_cell(o['record'])}</td><td>{_cell(o['eval_id'])}</td>"
        f"<td>{_cell(o['eval_dataset'])}</td><td>{_cell(o['detail'])}</td></tr>"
        for o in overlaps
    )
    head = "<tr><th>rule</th><th>record</th><th>eval item</th><th>eval dataset</th><th>match</th></tr>"
    return f"<table>{head}{body}</table>"


def render_html(result: ValidationResult) -> str:
    verdict = '<span class="ok">PASSED</span>' if result.success else '<span class="fail">FAILED</span>'
    against = "".join(f"<li>{_cell(a)}</li>" for a in result.against) or "<li>none</li>"
    contamination = f"<h2>Contamination</h2>{_overlaps_table(result.overlaps)}" if result.against else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>validation: {_cell(result.dataset)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_cell(result.kind)} dataset validation: {verdict}</h1>"
        f"<p><code>{_cell(result.dataset)}</code> — {result.records} records, "
        f"{len(result.failed)} critical failure(s), {len(result.warnings)} warning(s), {result.seconds:.1f} s</p>"
        f"<p>Evaluation sets checked for contamination:</p><ul>{against}</ul>"
        f"<h2>Expectations</h2>{_rules_table(result)}{contamination}"
        f"<h2>Balance</h2>{_counts_tables(result.counts)}"
        f"<h2>Configuration</h2><pre>{_cell(json.dumps(result.config, indent=2))}</pre>"
        f"<p>Severity <b>{CRITICAL}</b> fails validation; <b>{WARNING}</b> is reported only.</p>"
        "</body></html>\n"
    )
