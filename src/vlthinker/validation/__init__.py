"""Data validation: Great Expectations suites per dataset kind, a contamination guard, bad-input safety.

No model is trained on data that did not pass validation. `validate_dataset(dir, kind, against=...)`
runs the row checks (parsing, fields, images, traces) in Python, the contamination guard against
evaluation sets, and then the kind's Great Expectations suite; it returns a `ValidationResult` whose
`success` is True iff every critical expectation passed, and which writes JSON + HTML reports.

Kinds: ``source`` (as generated/imported), ``captioned`` (+ caption), ``sft`` (+ prompt/completion/
reasoning, TRL conversational), ``rl`` (+ prompt, pass_rate), ``eval`` (held-out benchmark).
Great Expectations is imported lazily, by `suites`, when a suite runs.
"""

from vlthinker.validation.config import KINDS, Kind, ValidationConfig
from vlthinker.validation.report import RuleOutcome, ValidationResult
from vlthinker.validation.run import validate_dataset

__all__ = ["KINDS", "Kind", "RuleOutcome", "ValidationConfig", "ValidationResult", "validate_dataset"]
