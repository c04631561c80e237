"""`validate_dataset`: row checks in Python, contamination guard, then the GE suite of the kind.

Flow: every line of records.jsonl -> `rows.inspect_record` (parse, fields, image, trace) -> task
balance -> (with evaluation sets) contamination columns -> one pandas DataFrame -> the kind's GE
suite -> `ValidationResult`. Cost is linear in the number of records (one pass over lines and images,
vectorised GE expectations, an exact but linear perceptual search).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from vlthinker.errors import DatasetError, VLThinkerError
from vlthinker.records import RECORDS_FILE
from vlthinker.validation import contamination, rows, suites
from vlthinker.validation.config import KINDS, ValidationConfig
from vlthinker.validation.report import ValidationResult, outcomes_from_gx
from vlthinker.validation.rules import Rule, frame_columns, rules_for

NUMERIC_COLUMNS = (
    "line",
    "image_min_side",
    "image_max_side",
    "image_aspect_ratio",
    "caption_words",
    "trace_words",
    "pass_rate",
)


def check_dataset_dir(dataset_dir: Path, what: str = "dataset") -> None:
    if not dataset_dir.is_dir():
        raise DatasetError(f"{what} {dataset_dir}: not a directory")
    records = dataset_dir / RECORDS_FILE
    if not records.is_file():
        raise DatasetError(
            f"{what} {dataset_dir}: no {RECORDS_FILE} (a dataset directory holds {RECORDS_FILE} and images/)"
        )


def build_frame(all_rows: list[rows.Row], rules: list[Rule]):  # -> pandas.DataFrame
    """One row per record, one column per value the suite reads (missing values are null)."""
    import pandas as pd

    columns = frame_columns(rules)
    data = {name: [row.values.get(name) for row in all_rows] for name in columns}
    frame = pd.DataFrame(
        {name: pd.Series(values, dtype="object") for name, values in data.items()}, columns=columns
    )
    for name in NUMERIC_COLUMNS:
        if name in frame.columns:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def validate_dataset(
    dataset_dir: str | Path,
    kind: str,
    against: Sequence[str | Path] = (),
    config: ValidationConfig | None = None,
) -> ValidationResult:
    """Validate one dataset directory as `kind`; with `against`, also guard against contamination.

    Raises VLThinkerError only for unusable arguments (unknown kind, a path that is not a dataset
    directory); everything wrong inside the data becomes a failed, named expectation.
    """
    started = time.perf_counter()
    config = config or ValidationConfig()
    if kind not in KINDS:
        raise VLThinkerError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(KINDS)}")
    dataset = Path(dataset_dir)
    check_dataset_dir(dataset)
    eval_dirs = [Path(a) for a in against]
    for directory in eval_dirs:
        check_dataset_dir(directory, "--against")
    all_rows = rows.inspect_dataset(dataset, kind, config, fingerprint=bool(eval_dirs))
    rows.mark_task_balance(all_rows, config)
    overlaps: list[dict[str, str]] = []
    skipped: dict[str, int] = {}
    if eval_dirs:
        index = contamination.build_index(eval_dirs, config)
        overlaps = [o.to_dict() for o in contamination.find_overlaps(all_rows, index, config)]
        skipped = index.skipped
    rules = rules_for(kind, config, contamination=bool(eval_dirs))
    gx_result = suites.run_suite(build_frame(all_rows, rules), rules, kind, config.example_count)
    counts = {name: rows.balance(all_rows, name) for name in ("task", "source", "split")}
    return ValidationResult(
        dataset=str(dataset),
        kind=kind,
        against=[str(d) for d in eval_dirs],
        records=len(all_rows),
        outcomes=outcomes_from_gx(
            gx_result, [r.name for r in rules], suites.INDEX_COLUMN, config.example_count
        ),
        counts=counts,
        overlaps=overlaps,
        skipped_eval_records=skipped,
        config=config.model_dump(),
        seconds=time.perf_counter() - started,
        gx_result=gx_result,
    )
