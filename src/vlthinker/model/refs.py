"""Model references passed between steps: a model directory, or a pointer file naming a hub id.

A pipeline's base model may be a hub id (``Qwen/Qwen2.5-VL-7B-Instruct``): instead of copying tens
of GB into a pipeline artifact, the artifact holds ``model_ref.json`` naming it, and every step
resolves it to the id and loads it through the one loader.
"""

from __future__ import annotations

import json
from pathlib import Path

REF_FILE = "model_ref.json"


def write_model_ref(directory: str | Path, ref: str) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / REF_FILE).write_text(json.dumps({"ref": ref}) + "\n", encoding="utf-8")
    return path


def resolve_model_ref(directory: str | Path) -> str:
    """The directory itself when it holds a model, else the ref its pointer file names."""
    path = Path(directory)
    pointer = path / REF_FILE
    if pointer.is_file() and not (path / "config.json").is_file():
        return str(json.loads(pointer.read_text(encoding="utf-8"))["ref"])
    return str(path)
