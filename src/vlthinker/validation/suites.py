"""Run a suite of `Rule`s as Great Expectations expectations on the rows' DataFrame.

The only module that imports Great Expectations, and only inside functions: importing it costs
3-5 s, which only the validation step should pay. One ephemeral context serves the process
(analytics and progress bars off); each run adds a uniquely named suite and validation definition
and removes them afterwards. Failing records are identified by the ``ref`` column
(``"<id> (line N)"``), so GE's own results name them.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

from vlthinker.validation.rules import Rule

if TYPE_CHECKING:
    import pandas as pd

INDEX_COLUMN = "ref"


@functools.lru_cache(maxsize=1)
def _gx() -> Any:
    """The `great_expectations` module, imported quietly (every import of it goes through here).

    Importing GE logs ~240 INFO lines of its own bookkeeping ("Skipping registering function ..."),
    which under kfp.local's INFO logging buried each validation step's output: its loggers are
    raised to ERROR before the import.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import great_expectations as gx
    import great_expectations.expectations  # the submodule `expectation` reads
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # this module sets its own INFO level at import ("Created temporary directory ... for ephemeral docs")
    logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.ERROR)
    return gx


@functools.lru_cache(maxsize=1)
def _context() -> Any:
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("vlthinker")
    asset = source.add_dataframe_asset("records")
    return context, asset.add_batch_definition_whole_dataframe("all records")


def expectation(rule: Rule) -> Any:
    """The GE expectation object of a rule, carrying the rule name, description and severity."""
    cls = getattr(_gx().expectations, rule.expectation)
    kwargs = {k: v for k, v in rule.kwargs.items() if v is not None}
    return cls(
        **kwargs,
        meta={"rule": rule.name, "description": rule.description},
        description=f"{rule.name}: {rule.description}",
        severity=rule.severity,
    )


def run_suite(frame: pd.DataFrame, rules: list[Rule], kind: str, example_count: int = 20) -> dict[str, Any]:
    """Validate `frame` against `rules`; return GE's validation result as a JSON-ready dict."""
    gx = _gx()
    context, batch_definition = _context()
    tag = uuid.uuid4().hex[:12]
    suite = context.suites.add(gx.ExpectationSuite(name=f"vlthinker-{kind}-{tag}"))
    try:
        for rule in rules:
            suite.add_expectation(expectation(rule))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate-{kind}-{tag}", data=batch_definition, suite=suite)
        )
        try:
            result = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={
                    "result_format": "SUMMARY",
                    "unexpected_index_column_names": [INDEX_COLUMN],
                    "partial_unexpected_count": example_count,
                    "include_unexpected_rows": False,
                },
            )
        finally:
            context.validation_definitions.delete(definition.name)
    finally:
        context.suites.delete(suite.name)
    return result.to_json_dict()
