"""Test support for the registry tests: a migrated MLflow SQLite template, fake evaluations, a real server
and a TCP proxy that makes it slow, stalled or lossy (fault injection).

A fresh MLflow SQLite database costs ~5 s of migrations (DESIGN §5): the template is migrated once per
pytest run (shared by xdist workers through a file lock) and copied into each test's state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from vlthinker.evaluation import write_results

MD5 = "0123456789abcdef0123456789abcdef.dir"


def mlflow_template(tmp_path_factory) -> Path:
    """A migrated, empty MLflow SQLite store (created once per run, shared by workers)."""
    import mlflow

    root = tmp_path_factory.getbasetemp().parent
    template = root / f"mlflow-{mlflow.__version__}-template.db"
    with open(root / "mlflow-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            tmp = root / f"mlflow-template.{os.getpid()}.db"
            from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

            engine = create_sqlalchemy_engine_with_retry(f"sqlite:///{tmp}")
            _initialize_tables(engine)
            engine.dispose()
            os.replace(tmp, template)
    return template


def state_dir_from(template: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, directory / "mlflow.db")
    return directory


def write_eval(
    out: Path,
    correct: list[bool],
    benchmark: str = "heldout",
    md5: str = MD5,
    style: str = "reasoning",
    dataset_dir: Path | None = None,
):
    """An evaluation directory whose item i of ``benchmark`` is right iff ``correct[i]``."""
    rows = [
        {
            "key": f"{benchmark}/item-{i:04d}",
            "benchmark": benchmark,
            "id": f"item-{i:04d}",
            "task": ("count", "clock")[i % 2],
            "difficulty": i % 3 + 1,
            "answer": "1",
            "response": "<think>x</think><answer>1</answer>" if ok else "<think>x</think><answer>2</answer>",
            "extracted": "1" if ok else "2",
            "correct": ok,
            "format_ok": True,
        }
        for i, ok in enumerate(correct)
    ]
    info: dict = {"prompt_style": style}
    if dataset_dir is not None:
        info["benchmark_dirs"] = {benchmark: str(dataset_dir)}
    write_results(out, rows, info, {benchmark: md5})
    return out


def fake_model(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"model_type": "fake"}\n')
    (directory / "model.safetensors").write_bytes(b"\0" * 64)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` with basic-auth on 127.0.0.1 (lean flags of DESIGN §5), restartable."""

    USER = "admin"
    PASSWORD = "vlthinker-test-Admin-7"

    def __init__(self, root: Path, template: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, root / "mlflow.db")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        (root / "auth.ini").write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'auth.db'}\n"
            f"admin_username = {self.USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Without a cache every request pays a PBKDF2 password check (~0.3 s on a busy core).
            "auth_cache_max_size = 1000\n"
            "auth_cache_ttl_seconds = 600\n"
        )
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(self.root / "auth.ini"),
            MLFLOW_AUTH_ADMIN_USERNAME=self.USER,
            MLFLOW_AUTH_ADMIN_PASSWORD=self.PASSWORD,
            MLFLOW_FLASK_SERVER_SECRET_KEY="vlthinker-test-secret",
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
            env.pop(key, None)
        return env

    def start(self, timeout: float = 90.0) -> None:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        command = [
            str(mlflow_bin) if mlflow_bin.exists() else "mlflow",
            "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--app-name", "basic-auth",
        ]  # fmt: skip
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"mlflow server not healthy after {timeout}s: {(self.root / 'server.log').read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None


class SlowProxy:
    """A TCP proxy on 127.0.0.1 in front of a server: a slow, stalled or flaky MLflow on demand.

    * ``delay_s``: every response chunk is held that long (a slow server; longer than the client's
      timeout: a stalled one); :meth:`close` or setting it to 0 releases held responses.
    * ``drop_response_to``: bytes of a request path; the next ``drops`` such requests reach the
      server but their responses are lost (the connection is closed instead): "did it happen?".
    * ``requests``: how many HTTP requests went through.
    """

    def __init__(self, target_port: int, delay_s: float = 0.0):
        self.target_port = target_port
        self.delay_s = delay_s
        self.drop_response_to: bytes | None = None
        self.drops = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
        except OSError:
            client.close()
            return
        drop = threading.Event()
        threading.Thread(target=self._requests, args=(client, upstream, drop), daemon=True).start()
        try:
            while chunk := upstream.recv(65536):
                deadline = time.monotonic() + self.delay_s
                while time.monotonic() < deadline and self.delay_s > 0 and not self._closed.is_set():
                    self._closed.wait(0.05)
                if drop.is_set():
                    break
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            # shutdown first: close() alone sends nothing while the other thread is blocked in recv(),
            # and the client would see a read timeout instead of the lost (dropped) answer
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _requests(self, client: socket.socket, upstream: socket.socket, drop: threading.Event) -> None:
        try:
            while chunk := client.recv(65536):
                with self._lock:
                    self.requests += chunk.count(b" HTTP/1.1\r\n")
                    if self.drop_response_to and self.drops > 0 and self.drop_response_to in chunk:
                        self.drops -= 1
                        drop.set()
                upstream.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


def start_auth_server(tmp_path_factory, name: str) -> MlflowServer:
    """A started basic-auth ``mlflow server`` on 127.0.0.1 (fails clearly without mlflow[auth])."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("flask_wtf") is None:
        pytest.fail("the basic-auth MLflow server needs Flask-WTF: install mlflow[auth] (the dev extra)")
    server = MlflowServer(tmp_path_factory.mktemp(name), mlflow_template(tmp_path_factory))
    server.start()
    return server


def proxy_to(server: MlflowServer, monkeypatch, timeout_s: int) -> SlowProxy:
    """A SlowProxy in front of ``server``, with this test's MLflow credentials and HTTP settings
    (MLflow's own retries off, so only our retry policy acts)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.PASSWORD)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
    return SlowProxy(server.port)


def run_with_hang_guard(fn, limit_s: float = 180.0):
    """``fn()`` in a thread; fails the test if it is still running after ``limit_s`` (a hang)."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"still running after {limit_s}s: hangs instead of stopping"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
