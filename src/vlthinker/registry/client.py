"""The registry client: MLflow calls with retries and backoff, and one clear error when MLflow is gone.

:class:`Registry` binds an MLflow client to the stores (:func:`vlthinker.state.resolve_stores`: the
embedded SQLite store of a state directory, or a shared ``mlflow server``) and to one registered
model. Every MLflow call goes through :meth:`Registry.call`:

* transient failures (connection refused or reset, timeouts, HTTP 429/5xx, SQLite "database is
  locked") are retried ``attempts`` times with exponential backoff and jitter; after the last one a
  :class:`RegistryUnavailableError` names the store, the operation and the cause;
* authentication failures (HTTP 401/403) fail at once with :class:`RegistryAuthError` (credentials
  come from MLflow's own ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``);
* anything else is MLflow's answer (not found, already exists, bad request) and is raised as is.

MLflow's own HTTP retries (7 by default, with long backoffs) are turned down to 0 through its
environment variables unless they are already set, so that this module alone decides how long an
outage is waited out. Calls that create something are made idempotent by their callers (a version
carries a unique ``vlt.candidate_id`` tag and is looked up before it is created again; a run carries a
unique ``vlt.run_token`` tag, :func:`create_run_once`; a lock epoch is created with its owner's id).

The same policy serves MLflow users without a registered model (the training steps' runs,
:class:`vlthinker.training.common.MLflowRun`) through :func:`call_with_retries` and :func:`retry_policy`.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vlthinker.errors import VLThinkerError
from vlthinker.state import Stores, initialize_embedded_store

T = TypeVar("T")
Log = Callable[[str], None]

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
TAG_PREFIX = "vlt."
BASE_TAG = "vlt.base"

_HTTP_CODE_RE = re.compile(r"error code (\d{3}) != 200")
_TRANSIENT_TEXT = (
    "failed with exception",
    "failed with timeout exception",
    "database is locked",
    "connection refused",
    "connection reset",
    "remote end closed",
    "max retries exceeded",
)


class RegistryError(VLThinkerError):
    """The registry refused an operation, or holds something the operation cannot work with."""


class RegistryUnavailableError(RegistryError):
    """MLflow could not be reached (or kept failing) for longer than the retry policy allows."""


class RegistryAuthError(RegistryError):
    """MLflow answered 401/403: missing or wrong credentials, or no permission."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long an MLflow outage is waited out: ``attempts`` tries, backoff doubling up to a cap."""

    attempts: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    request_timeout_s: int = 30

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Backoff before retry ``attempt`` (1-based): exponential, capped, with +-25 % jitter."""
        base = min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))
        return base * (0.75 + 0.5 * rng.random())


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def http_status(exc: BaseException) -> int | None:
    match = _HTTP_CODE_RE.search(str(exc))
    return int(match.group(1)) if match else None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the store was unreachable, slow, overloaded or locked — not a refusal."""
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with mlflow
        requests = None
    if requests is not None and isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
    ):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    status = http_status(exc)
    if status is not None:
        return status == 429 or status >= 500
    text = str(exc).lower()
    if any(marker in text for marker in _TRANSIENT_TEXT):
        return True
    return error_code(exc) in {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}


def is_auth_failure(exc: BaseException) -> bool:
    return http_status(exc) in (401, 403) or error_code(exc) in ("UNAUTHENTICATED", "PERMISSION_DENIED")


def is_not_found(exc: BaseException) -> bool:
    code = error_code(exc)
    if code == "RESOURCE_DOES_NOT_EXIST" or http_status(exc) == 404:
        return True
    # A missing alias is reported as INVALID_PARAMETER_VALUE by MLflow 3.17.
    return code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc).lower()


def is_already_exists(exc: BaseException) -> bool:
    return error_code(exc) == "RESOURCE_ALREADY_EXISTS"


def retry_policy(config: Any) -> RetryPolicy:
    """The retry policy of ``config.registry`` (every MLflow call of the project follows it)."""
    rc = config.registry
    return RetryPolicy(
        attempts=rc.retries,
        backoff_s=rc.backoff_s,
        backoff_max_s=rc.backoff_max_s,
        request_timeout_s=rc.request_timeout_s,
    )


def call_with_retries(
    where: str,
    what: str,
    fn: Callable[[], T],
    policy: RetryPolicy,
    log: Log,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    label: str = "registry",
) -> T:
    """``fn()`` retried on transient failures per ``policy``; ``where`` (the tracking URI) and ``what``
    name the store and the operation in the :class:`RegistryUnavailableError` raised after the last try."""
    rng = rng or random.Random()
    attempts = max(1, policy.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if is_auth_failure(exc):
                raise RegistryAuthError(
                    f"MLflow at {where} refused {what} (HTTP {http_status(exc) or error_code(exc)}): "
                    "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user with access"
                ) from exc
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise RegistryUnavailableError(
                    f"MLflow at {where} is unreachable: {what} failed {attempts} time(s); "
                    f"last error: {_first_line(exc)}"
                ) from exc
            delay = policy.delay(attempt, rng)
            log(
                f"{label}: {what} failed ({_first_line(exc)}); retry {attempt}/{attempts - 1} in {delay:.1f}s"
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


RUN_TOKEN_TAG = "vlt.run_token"


def create_run_once(
    client: Any,
    experiment_id: str,
    token: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    """The run of ``experiment_id`` tagged ``vlt.run_token = token``, created if there is none yet.

    Retried with the same ``token`` (one per logical run, e.g. a uuid drawn once by the caller), a
    creation whose answer was lost is found instead of leaving a second, forever-RUNNING run.
    """
    existing = client.search_runs(
        [experiment_id], f"tags.`{RUN_TOKEN_TAG}` = '{_quote(token)}'", max_results=1
    )
    if existing:
        return existing[0]
    return client.create_run(experiment_id, run_name=run_name, tags={**(tags or {}), RUN_TOKEN_TAG: token})


def _configure_mlflow_http(policy: RetryPolicy) -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(policy.request_timeout_s)))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout is ours (--json)


def _version(value: Any) -> int:
    return int(str(value))


class Registry:
    """One registered model in one MLflow store, every call retried per :class:`RetryPolicy`."""

    def __init__(
        self,
        stores: Stores,
        model_name: str,
        retry: RetryPolicy | None = None,
        log: Log | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not model_name or "/" in model_name or "@" in model_name:
            raise RegistryError(
                f"registered model name {model_name!r}: must be non-empty, without '/' or '@'"
            )
        self.stores = stores
        self.model_name = model_name
        self.retry = retry or RetryPolicy()
        self.log = log or (lambda _message: None)
        self.sleep = sleep
        self._rng = random.Random()
        self._client: Any = None
        self._experiment_id: str | None = None

    # ---------------------------------------------------------------------------------------------
    # Plumbing
    # ---------------------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.stores.tracking_uri

    @property
    def client(self) -> Any:
        if self._client is None:
            _configure_mlflow_http(self.retry)
            from mlflow import MlflowClient

            if self.stores.embedded_mlflow:
                self.stores.state_dir.mkdir(parents=True, exist_ok=True)
                Path(self.stores.artifact_root).mkdir(parents=True, exist_ok=True)
                # The embedded registry store resolves "models:/<id>" sources through the process-wide
                # default client: without this it would open ./mlflow.db (DESIGN §5).
                import mlflow

                mlflow.set_tracking_uri(self.stores.tracking_uri)
                mlflow.set_registry_uri(self.stores.registry_uri)
                initialize_embedded_store(self.stores.tracking_uri)
            self._client = MlflowClient(
                tracking_uri=self.stores.tracking_uri, registry_uri=self.stores.registry_uri
            )
        return self._client

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with retries on transient failures; ``what`` names it in errors."""
        return call_with_retries(
            self.where, what, lambda: fn(*args, **kwargs), self.retry, self.log, self.sleep, self._rng
        )

    def with_model(self, model_name: str) -> Registry:
        """The same store and policy, bound to another registered model."""
        other = Registry(self.stores, model_name, self.retry, self.log, self.sleep)
        other._client = self._client
        return other

    # ---------------------------------------------------------------------------------------------
    # Registered models, versions, aliases, tags
    # ---------------------------------------------------------------------------------------------

    def get_model(self, name: str | None = None) -> Any | None:
        """The registered model (default: ours), or None when it does not exist."""
        try:
            return self.call(
                f"get registered model {name or self.model_name}",
                self.client.get_registered_model,
                name or self.model_name,
            )
        except RegistryError:
            raise
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def ensure_model(self) -> Any:
        """Create our registered model if it does not exist yet (idempotent)."""
        model = self.get_model()
        if model is not None:
            return model
        try:
            self.call(
                f"create registered model {self.model_name}",
                self.client.create_registered_model,
                self.model_name,
                description="vlthinker: one version per evaluated candidate; alias 'champion' = promoted.",
            )
        except RegistryError:
            raise
        except Exception as exc:
            if not is_already_exists(exc):
                raise
        return self.get_model()

    def get_version(self, version: int | str) -> Any | None:
        try:
            return self.call(
                f"get version {self.model_name}/{version}",
                self.client.get_model_version,
                self.model_name,
                str(version),
            )
        except RegistryError:
            raise
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    def require_version(self, version: int | str) -> Any:
        found = self.get_version(version)
        if found is None:
            raise RegistryError(f"{self.model_name}/{version}: no such model version in {self.where}")
        return found

    def versions(self) -> list[Any]:
        """Every version of our model, oldest first."""
        found = self.call(
            f"search versions of {self.model_name}",
            self.client.search_model_versions,
            f"name = '{_quote(self.model_name)}'",
            max_results=10_000,
        )
        return sorted(found, key=lambda mv: _version(mv.version))

    def alias_version(self, alias: str) -> int | None:
        """The version an alias points at, or None when the alias is not set."""
        model = self.get_model()
        if model is None:
            return None
        value = (model.aliases or {}).get(alias)
        return None if value is None else _version(value)

    def champion(self) -> int | None:
        return self.alias_version(CHAMPION)

    def set_alias(self, alias: str, version: int) -> None:
        self.call(
            f"set alias {alias} -> {self.model_name}/{version}",
            self.client.set_registered_model_alias,
            self.model_name,
            alias,
            str(version),
        )

    def delete_alias(self, alias: str) -> None:
        try:
            self.call(
                f"delete alias {alias}", self.client.delete_registered_model_alias, self.model_name, alias
            )
        except RegistryError:
            raise
        except Exception as exc:
            if not is_not_found(exc):
                raise

    def set_version_tag(self, version: int, key: str, value: str) -> None:
        self.call(
            f"tag {self.model_name}/{version} {key}",
            self.client.set_model_version_tag,
            self.model_name,
            str(version),
            key,
            value,
        )

    def set_model_tag(self, key: str, value: str, name: str | None = None) -> None:
        self.call(
            f"tag {name or self.model_name} {key}",
            self.client.set_registered_model_tag,
            name or self.model_name,
            key,
            value,
        )

    def model_tags(self) -> dict[str, str]:
        model = self.get_model()
        return dict(model.tags or {}) if model is not None else {}

    def base_record(self) -> dict[str, Any] | None:
        """The base model's recorded evaluation (``vlt.base`` tag), or None."""
        raw = self.model_tags().get(BASE_TAG)
        return json.loads(raw) if raw else None

    # ---------------------------------------------------------------------------------------------
    # Tracking
    # ---------------------------------------------------------------------------------------------

    def experiment_id(self) -> str:
        """Our experiment (named like the model), created on first use; embedded: artifacts in the state dir."""
        if self._experiment_id is not None:
            return self._experiment_id
        name = self.model_name
        found = self.call(f"get experiment {name}", self.client.get_experiment_by_name, name)
        if found is None:
            location = None
            if self.stores.embedded_mlflow:
                location = str(Path(self.stores.artifact_root) / name)
            try:
                self._experiment_id = self.call(
                    f"create experiment {name}",
                    self.client.create_experiment,
                    name,
                    artifact_location=location,
                )
            except RegistryError:
                raise
            except Exception as exc:
                if not is_already_exists(exc):
                    raise
                found = self.call(f"get experiment {name}", self.client.get_experiment_by_name, name)
        if self._experiment_id is None:
            self._experiment_id = found.experiment_id
        return self._experiment_id

    def download_version(self, version: int, dst_dir: str | Path) -> Path:
        """Fetch the files of ``version`` (its logged model's artifacts) into ``dst_dir``; return their directory."""
        from mlflow.artifacts import download_artifacts

        source = str(self.require_version(version).source or "")
        if not source.startswith("models:/"):
            raise RegistryError(
                f"{self.model_name}/{version} has source {source!r}, not a logged model (models:/<id>)"
            )
        logged = self.call(
            f"get logged model of {self.model_name}/{version}",
            self.client.get_logged_model,
            source.removeprefix("models:/"),
        )
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
        local = self.call(
            f"download {self.model_name}/{version}",
            download_artifacts,
            artifact_uri=logged.artifact_location,
            dst_path=str(dst_dir),
            tracking_uri=self.stores.tracking_uri,
        )
        return Path(local)

    def download(self, run_id: str, path: str, dst_dir: str | Path) -> Path:
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
        local = self.call(
            f"download {path} of run {run_id}", self.client.download_artifacts, run_id, path, str(dst_dir)
        )
        return Path(local)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def open_registry(config: Any, stores: Stores, log: Log | None = None) -> Registry:
    """The project's registered model in ``stores``, with the retry policy of ``config.registry``."""
    return Registry(stores, config.registered_model_name, retry_policy(config), log)
