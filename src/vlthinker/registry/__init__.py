"""The MLflow model registry with audited lineage: registration, the promotion gate, status, lineage.

* :mod:`~vlthinker.registry.client` — MLflow calls with retries; :class:`Registry` is one model.
* :mod:`~vlthinker.registry.register` — candidates (LoggedModel route) and the base.
* :mod:`~vlthinker.registry.lock` — the gate lock (create-once lease epochs, journaled intents).
* :mod:`~vlthinker.registry.gate` — paired tests, the gate, rollback, recovery.
* :mod:`~vlthinker.registry.status` and :mod:`~vlthinker.registry.lineage` — read-only views.

Importing this package does not import MLflow; the first call that needs it does.
"""

from vlthinker.registry.client import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    Registry,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    RetryPolicy,
)

__all__ = [
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "Registry",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "RetryPolicy",
]
