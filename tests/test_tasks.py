"""Task helpers the components call."""

from __future__ import annotations

import json

from kfp import dsl

from vlthinker.tasks.model import record_metrics


def test_record_metrics_logs_and_writes_the_artifact_file(tmp_path):
    artifact = dsl.Metrics(name="metrics", uri=str(tmp_path / "step" / "metrics"))
    record_metrics(artifact, {"heldout_accuracy": 0.25, "loss": 1.5})
    assert artifact.metadata == {"heldout_accuracy": 0.25, "loss": 1.5}
    assert json.loads((tmp_path / "step" / "metrics").read_text()) == artifact.metadata
