"""Where a run keeps its state: one directory (default ``.vlthinker/``) or explicit shared stores.

Layout of the state directory::

    mlflow.db        embedded MLflow tracking + registry store (SQLite)
    mlartifacts/     MLflow artifact root for the embedded store
    dvc-remote/      local DVC remote (content-addressed datasets)
    pipeline/        KFP local pipeline root
    cache/           content-keyed caches (e.g. base models)
    data/, models/   outputs of steps run by hand

``--tracking-uri`` / ``--dvc-remote`` point at shared stores instead (an ``mlflow server``, an S3
bucket); the state directory still holds caches and the pipeline root.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path(".vlthinker")


@dataclass(frozen=True)
class Stores:
    state_dir: Path
    tracking_uri: str
    registry_uri: str
    artifact_root: str
    dvc_remote: str

    @property
    def embedded_mlflow(self) -> bool:
        return self.tracking_uri.startswith("sqlite:")

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def pipeline_root(self) -> Path:
        return self.state_dir / "pipeline"

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"


def resolve_stores(
    state_dir: str | Path = DEFAULT_STATE_DIR, tracking_uri: str | None = None, dvc_remote: str | None = None
) -> Stores:
    """Stores for a state directory, with explicit shared stores taking precedence."""
    root = Path(state_dir).resolve()
    uri = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    return Stores(
        state_dir=root,
        tracking_uri=uri,
        registry_uri=uri,
        artifact_root=str(root / "mlartifacts"),
        dvc_remote=dvc_remote or str(root / "dvc-remote"),
    )


def embedded_database(tracking_uri: str) -> Path | None:
    """The SQLite file of an embedded MLflow store (``sqlite:///PATH``); None for any other URI."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


_initialized: set[str] = set()
_init_guard = threading.Lock()


def initialize_embedded_store(tracking_uri: str) -> None:
    """Create an embedded (SQLite) MLflow store's tables once, under a file lock beside the database.

    MLflow creates them on first use; two processes doing that at once on a new database make all but
    one fail with "table experiments already exists" (e.g. two ``vlthinker step`` commands started
    together on a fresh state directory). Other tracking URIs are left alone.
    """
    database = embedded_database(tracking_uri)
    if database is None:
        return
    with _init_guard:
        if tracking_uri in _initialized:
            return
        import fcntl

        from mlflow import MlflowClient

        database.parent.mkdir(parents=True, exist_ok=True)
        with open(database.with_name(database.name + ".init-lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        _initialized.add(tracking_uri)
