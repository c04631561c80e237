"""The gate lock: a lease built on MLflow's one atomic operation, creating a registered model by name.

MLflow has no compare-and-set on aliases or tags, so a lock held as a tag (write, wait, re-read) is
only as safe as its timing assumptions. But ``create_registered_model(name)`` is atomic: the name is
a unique key of the store, a second create fails with ``RESOURCE_ALREADY_EXISTS`` — on SQLite,
Postgres or MySQL, through a server or embedded, from any number of processes. The lock is a
sequence of such create-once objects (registered models; names for model ``M``)::

    M.gate-lock.00000000          epoch 0: created by its holder (tags: owner, host, pid, expires, purpose)
    M.gate-lock.00000000.done     epoch 0 is over (released by its holder, or taken over)
    M.gate-lock.00000001          epoch 1 ...

Rules:

* **Acquire**: let N be the highest epoch. If ``N.done`` exists, or N's lease has expired, create
  epoch N+1; the one process whose create succeeds holds the lock. Otherwise wait (poll with
  jitter) until ``wait_s`` runs out (:class:`LockTimeoutError`, naming the holder).
* **Release**: create ``N.done``.
* **Journal**: before it changes the registry, the holder writes what it is about to do (its
  *intent*) as a tag of its epoch, and marks it ``applied`` afterwards. Every change an intent
  describes is idempotent (set an alias, set a tag).
* **Take-over**: a process that acquires epoch N+1 while N is not done (its holder died, or lost
  MLflow mid-gate) first *completes N's intent* (roll forward) when it was journaled and not marked
  applied, then creates ``N.done`` (status ``taken-over``). A journaled decision is therefore never
  lost half-applied: it is finished by the next holder (``vlthinker registry recover`` does just that).
  The take-over writes nothing on epoch N itself (with basic-auth that object belongs to another
  user); one that dies before ``N.done`` is redone by the next holder, harmlessly (intents are idempotent).
* **Fencing**: before each write the holder checks that its lease has more than ``safety_s`` left by
  its clock and that epoch N+1 does not exist; otherwise it stops with :class:`LockLostError`.

Guarantees: at most one process holds an epoch (atomic create). Two holders can overlap only if a
holder stalls between its fence check and its write for longer than ``safety_s`` plus the clock skew
between the hosts (leases are compared by each host's clock) — keep ``lease_s`` well above the
critical section (a few MLflow calls) and clocks in sync (NTP). A crashed holder blocks others for at
most ``lease_s`` (a holder that died on this host: not at all). The epoch objects are kept (never reused, so a stale create can never succeed on a
recycled name): they are also the audit log of every gate and rollback (owner, host, time, intent).
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlthinker.registry.client import Registry, RegistryError, is_already_exists

LOCK_INFIX = ".gate-lock."
Recover = Callable[[dict[str, Any]], None]


class LockTimeoutError(RegistryError):
    """The lock stayed held by someone else for longer than the wait allows."""


class LockLostError(RegistryError):
    """The lease ran out or was taken over before the holder finished: it must not write."""


@dataclass(frozen=True)
class Lease:
    epoch: int
    name: str
    owner: str
    expires: float


def lock_name(model: str, epoch: int) -> str:
    return f"{model}{LOCK_INFIX}{epoch:08d}"


def done_name(model: str, epoch: int) -> str:
    return lock_name(model, epoch) + ".done"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``), or ''."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else ""  # field 22 of stat; fields[0] is field 3


def process_identity(pid: int | None = None) -> str:
    """``<pid namespace>/<start time>`` of a process ('' where ``/proc`` cannot tell): tells a pid
    apart from a later process that reuses it."""
    namespace = _pid_namespace()
    start = _start_time(os.getpid() if pid is None else pid)
    return f"{namespace}/{start}" if namespace and start else ""


def holder_is_dead(tags: dict[str, str], host: str | None = None) -> bool:
    """True only when the epoch's holder provably ran here and its process is gone.

    "Here" is the same host name and pid namespace; "gone" is no process with that pid, or one with
    another start time (the pid was reused). Anything uncertain (another host, no identity recorded,
    no ``/proc``) answers False: the lease decides.
    """
    recorded = tags.get("vlt.lock.process", "")
    if tags.get("vlt.lock.host") != (host or socket.gethostname()) or "/" not in recorded:
        return False
    namespace = recorded.rsplit("/", 1)[0]
    if not namespace or namespace != _pid_namespace():
        return False
    try:
        pid = int(tags.get("vlt.lock.pid", ""))
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by someone else
    current = process_identity(pid)
    return bool(current) and current != recorded


def parse_lock_names(model: str, names: list[str]) -> tuple[set[int], set[int]]:
    """(epochs created, epochs done) among registered-model names."""
    pattern = re.compile(rf"^{re.escape(model + LOCK_INFIX)}(\d{{8}})(\.done)?$")
    held: set[int] = set()
    done: set[int] = set()
    for name in names:
        match = pattern.match(name)
        if match:
            (done if match.group(2) else held).add(int(match.group(1)))
    return held, done


class GateLock:
    """A lease on one registered model's gate (see the module docstring for the protocol)."""

    def __init__(
        self,
        registry: Registry,
        lease_s: float = 120.0,
        wait_s: float = 600.0,
        poll_s: float = 0.25,
        safety_s: float | None = None,
        recover: Recover | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.registry = registry
        self.model = registry.model_name
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.safety_s = min(5.0, lease_s / 4) if safety_s is None else safety_s
        self.recover = recover
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._rng = random.Random()

    # ---------------------------------------------------------------------------------------------

    def _scan(self) -> tuple[set[int], set[int]]:
        client = self.registry.client
        names: list[str] = []
        token = None
        while True:
            page = self.registry.call(
                "list gate-lock epochs",
                client.search_registered_models,
                filter_string=f"name LIKE '{self.model}{LOCK_INFIX}%'",
                max_results=1000,
                page_token=token,
            )
            names += [m.name for m in page]
            token = getattr(page, "token", None)
            if not token:
                break
        return parse_lock_names(self.model, names)

    def _tags(self, name: str) -> dict[str, str] | None:
        model = self.registry.get_model(name)
        return None if model is None else dict(model.tags or {})

    def _exists(self, name: str) -> bool:
        return self.registry.get_model(name) is not None

    def _create(self, name: str, tags: dict[str, str], description: str) -> bool:
        """Create a lock object; True if we created it (or a lost response of ours did)."""
        try:
            self.registry.call(
                f"create {name}",
                self.registry.client.create_registered_model,
                name,
                tags=tags,
                description=description,
            )
            return True
        except RegistryError:
            raise
        except Exception as exc:
            if not is_already_exists(exc):
                raise
        existing = self._tags(name) or {}
        return existing.get("vlt.lock.owner") == tags.get("vlt.lock.owner")

    # ---------------------------------------------------------------------------------------------

    def acquire(self, purpose: dict[str, Any] | None = None) -> Lease:
        """Hold the next epoch; completes the journaled intent of any epoch left unfinished."""
        deadline = self.clock() + self.wait_s
        waited_on: str | None = None
        while True:
            held, done = self._scan()
            top = max(held, default=-1)
            blocker: dict[str, str] | None = None
            if top >= 0 and top not in done:
                tags = self._tags(lock_name(self.model, top))
                if tags is not None and tags.get("vlt.lock.owner") == self.owner:
                    return self._finish_acquire(top, held, done)
                if tags is not None and self.clock() < float(tags.get("vlt.lock.expires", "0")):
                    blocker = tags
                if blocker is not None and holder_is_dead(blocker):
                    self.registry.log(
                        f"registry: the holder of {lock_name(self.model, top)} "
                        f"({blocker.get('vlt.lock.owner')}) is dead; taking the gate lock over now"
                    )
                    blocker = None
            if blocker is None:
                target = top + 1
                now = self.clock()
                tags = {
                    "vlt.lock.owner": self.owner,
                    "vlt.lock.host": socket.gethostname(),
                    "vlt.lock.pid": str(os.getpid()),
                    "vlt.lock.created": f"{now:.3f}",
                    "vlt.lock.expires": f"{now + self.lease_s:.3f}",
                    "vlt.lock.purpose": json.dumps(purpose or {}, sort_keys=True),
                }
                identity = process_identity()
                if identity:
                    tags["vlt.lock.process"] = identity
                if self._create(
                    lock_name(self.model, target), tags, f"gate lock of {self.model}, epoch {target}"
                ):
                    return self._finish_acquire(target, held, done, expires=now + self.lease_s)
                continue  # someone else created it first: look again
            if self.clock() >= deadline:
                left = float(blocker.get("vlt.lock.expires", "0")) - self.clock()
                raise LockTimeoutError(
                    f"the gate lock of {self.model} is held by {blocker.get('vlt.lock.owner')} "
                    f"(purpose {blocker.get('vlt.lock.purpose')}); its lease ends in {left:.0f}s; "
                    f"gave up after waiting {self.wait_s:.0f}s"
                )
            if waited_on != blocker.get("vlt.lock.owner"):
                waited_on = blocker.get("vlt.lock.owner")
                left = float(blocker.get("vlt.lock.expires", "0")) - self.clock()
                self.registry.log(
                    f"registry: waiting for the gate lock of {self.model}, held by {waited_on} "
                    f"(its lease ends in {left:.0f}s; waiting at most {self.wait_s:.0f}s)"
                )
            self.registry.sleep(self.poll_s * (0.5 + self._rng.random()))

    def _finish_acquire(
        self, epoch: int, held: set[int], done: set[int], expires: float | None = None
    ) -> Lease:
        name = lock_name(self.model, epoch)
        if expires is None:
            expires = float((self._tags(name) or {}).get("vlt.lock.expires", "0"))
        lease = Lease(epoch=epoch, name=name, owner=self.owner, expires=expires)
        for older in sorted(k for k in held if k < epoch and k not in done):
            self._take_over(older, lease)
        return lease

    def _take_over(self, epoch: int, lease: Lease) -> None:
        """Finish an unfinished epoch: roll its journaled intent forward, then mark it done."""
        name = lock_name(self.model, epoch)
        tags = self._tags(name) or {}
        self.registry.log(
            f"registry: {name} of {tags.get('vlt.lock.owner')} was left unfinished; taking it over"
        )
        intent = tags.get("vlt.lock.intent")
        if intent and tags.get("vlt.lock.applied") != "true":
            self.registry.log(f"registry: completing the unfinished {json.loads(intent).get('op')} of {name}")
            if self.recover is None:
                raise RegistryError(f"{name} holds an unfinished intent and no recovery function was given")
            self.check(lease)
            self.recover(json.loads(intent))
        # Only the done marker is written (we create it, so we own it): with basic-auth another user's
        # lock epoch may be read-only for us.
        self._create(
            done_name(self.model, epoch),
            {
                "vlt.lock.owner": self.owner,
                "vlt.lock.status": "taken-over",
                "vlt.lock.recovered": "true" if intent else "false",
                "vlt.lock.at": f"{self.clock():.3f}",
            },
            f"epoch {epoch} taken over by {self.owner}",
        )

    def check(self, lease: Lease) -> None:
        """Fence: raise :class:`LockLostError` unless the lease still safely belongs to us."""
        left = lease.expires - self.clock()
        if left < self.safety_s:
            raise LockLostError(
                f"{lease.name}: the lease has {left:.1f}s left (< {self.safety_s:.1f}s safety margin); "
                "stopping before any further write"
            )
        if self._exists(lock_name(self.model, lease.epoch + 1)):
            raise LockLostError(
                f"{lease.name}: taken over by a later epoch; stopping before any further write"
            )

    def journal(self, lease: Lease, intent: dict[str, Any], check: bool = True) -> None:
        """Record what the holder is about to change (rolled forward by a take-over if we die)."""
        if check:
            self.check(lease)
        self.registry.set_model_tag("vlt.lock.intent", json.dumps(intent, sort_keys=True), name=lease.name)

    def mark_applied(self, lease: Lease) -> None:
        self.registry.set_model_tag("vlt.lock.applied", "true", name=lease.name)

    def release(self, lease: Lease, status: str = "released") -> None:
        self._create(
            done_name(self.model, lease.epoch),
            {"vlt.lock.owner": self.owner, "vlt.lock.status": status, "vlt.lock.at": f"{self.clock():.3f}"},
            f"epoch {lease.epoch} {status}",
        )

    def pending(self) -> dict[str, Any] | None:
        """The newest epoch if it is not done: its owner, expiry and intent (for status reports)."""
        held, done = self._scan()
        top = max(held, default=-1)
        if top < 0 or top in done:
            return None
        tags = self._tags(lock_name(self.model, top)) or {}
        intent = tags.get("vlt.lock.intent")
        return {
            "epoch": top,
            "owner": tags.get("vlt.lock.owner"),
            "expires": float(tags.get("vlt.lock.expires", "0")),
            "intent": json.loads(intent) if intent else None,
            "applied": tags.get("vlt.lock.applied") == "true",
        }
