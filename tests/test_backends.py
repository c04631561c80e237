"""Generation backends: the shared interface, hf on the tiny model, vllm via a fake module, and the
openai backend against a scripted OpenAI-compatible server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from vlthinker.backends import BackendConfig, BackendError, SamplingParams, make_backend
from vlthinker.backends.base import check_requests, truncate_at_stop
from vlthinker.backends.openai_backend import (
    MalformedResponseError,
    OpenAIBackend,
    backoff_delay,
    parse_retry_after,
    redact_url,
)
from vlthinker.backends.vllm_backend import VLLM_MISSING, sampling_kwargs, to_vllm_messages
from vlthinker.errors import VLThinkerError
from vlthinker.prompts import user_message

KEY_ENV = "VLT_TEST_API_KEY"


# -- the fake OpenAI-compatible server -------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict → JSON; bytes as is; None → echo completions
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(texts: list[str], **message_extra: Any) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": t, **message_extra},
                "finish_reason": "stop",
            }
            for i, t in enumerate(texts)
        ],
    }


def last_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")


class FakeServer:
    """Answers from ``script`` in order, then with ``default(body)``; records requests and concurrency."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.default: Callable[[dict[str, Any]], Reply] = lambda body: Reply()
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def next_reply(self, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append((headers, body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else self.default(body)

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions"
        reply = fake.next_reply(dict(self.headers), body)
        time.sleep(reply.delay_s)
        fake.done()
        payload = reply.body
        if payload is None:
            payload = completion([f"{last_text(body)}#{i}" for i in range(body["n"])])
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake():
    server = FakeServer()
    yield server
    server.stop()


def openai_backend(base_url: str, **overrides: Any) -> OpenAIBackend:
    settings = {
        "kind": "openai",
        "model": "served-model",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_concurrency": 4,
        **overrides,
    }
    backend = make_backend(BackendConfig(**settings))
    assert isinstance(backend, OpenAIBackend)
    return backend


def text_prompts(*texts: str) -> list[list[dict[str, Any]]]:
    return [user_message(t, with_image=False) for t in texts]


IMAGE = Image.new("RGB", (56, 56), (200, 30, 30))


# -- openai backend over HTTP ----------------------------------------------------------------------


def test_openai_success_n_completions_image_and_auth(fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-secret")
    backend = openai_backend(fake.base_url)
    prompts = [user_message("what color?"), [{"role": "user", "content": "plain text"}]]
    params = SamplingParams(max_new_tokens=32, temperature=0.7, top_p=0.9, n=3, seed=7, stop=("</answer>",))
    seen = []
    outputs = backend.generate(prompts, [IMAGE, None], params, progress=lambda d, t: seen.append((d, t)))
    assert outputs == [[f"what color?#{i}" for i in range(3)], [f"plain text#{i}" for i in range(3)]]
    assert seen[-1] == (2, 2)
    headers, body = next(r for r in fake.requests if last_text(r[1]) == "what color?")
    assert headers["Authorization"] == "Bearer sk-test-secret"
    assert {k: body[k] for k in ("model", "n", "temperature", "top_p", "max_tokens", "seed", "stop")} == {
        "model": "served-model",
        "n": 3,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 32,
        "seed": 7,
        "stop": ["</answer>"],
    }
    assert "top_k" not in body
    image_part = body["messages"][0]["content"][0]
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (56, 56) and decoded.getpixel((0, 0)) == (200, 30, 30)


def test_openai_sends_no_auth_header_without_a_key(fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert openai_backend(fake.base_url).generate(text_prompts("hi")) == [["hi#0"]]
    headers, _ = fake.requests[0]
    assert "Authorization" not in headers


def test_openai_honours_retry_after_on_429(fake):
    fake.script = [Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}), Reply()]
    started = time.monotonic()
    outputs = openai_backend(fake.base_url, backoff_max_s=2.0).generate(text_prompts("a"))
    assert outputs == [["a#0"]]
    assert time.monotonic() - started >= 0.3
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_openai_retries_5xx_then_succeeds(fake, status):
    fake.script = [Reply(status, b"upstream trouble"), Reply(status, b"again"), Reply()]
    assert openai_backend(fake.base_url).generate(text_prompts("a")) == [["a#0"]]
    assert len(fake.requests) == 3


def test_openai_retries_after_a_timeout(fake):
    fake.script = [Reply(delay_s=1.0), Reply()]
    started = time.monotonic()
    assert openai_backend(fake.base_url, timeout_s=0.25).generate(text_prompts("a")) == [["a#0"]]
    assert time.monotonic() - started < 0.9
    assert len(fake.requests) == 2


def test_openai_gives_up_after_max_retries(fake, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, "sk-never-shown")
    fake.default = lambda body: Reply(500, b"internal error")
    with caplog.at_level(logging.WARNING), pytest.raises(BackendError) as info:
        openai_backend(fake.base_url, max_retries=2).generate(text_prompts("a"))
    message = str(info.value)
    assert "failed after 3 attempt(s)" in message and "HTTP 500" in message
    assert fake.base_url + "/chat/completions" in message
    assert len(fake.requests) == 3
    assert "retry 2/2" in caplog.text
    assert "sk-never-shown" not in message + caplog.text


def test_openai_persistent_timeout_names_the_timeout(fake):
    fake.default = lambda body: Reply(delay_s=0.6)
    with pytest.raises(BackendError, match=r"failed after 2 attempt\(s\).*timed out after 0.2s"):
        openai_backend(fake.base_url, timeout_s=0.2, max_retries=1).generate(text_prompts("a"))


def test_openai_connection_refused_is_retried_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BackendError, match=r"failed after 2 attempt\(s\).*connection failed"):
        openai_backend(f"http://127.0.0.1:{port}/v1", max_retries=1).generate(text_prompts("a"))


def test_openai_client_errors_are_not_retried_and_hide_the_key(fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-never-shown")
    fake.script = [Reply(401, {"error": {"message": "bad key"}})]
    with pytest.raises(
        BackendError, match=r"HTTP 401 \(not retried; check the API key in \$VLT_TEST_API_KEY"
    ) as info:
        openai_backend(fake.base_url).generate(text_prompts("a"))
    assert "sk-never-shown" not in str(info.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>gateway</html>", "non-JSON: <html>gateway</html>"),
        ({"object": "chat.completion"}, "no choices"),
        ({"error": {"message": "model overloaded"}}, "an error: .*model overloaded"),
        (completion(["only one"]), "returned 1 choices, 2 were asked for"),
        ({"choices": [{"message": {"content": 3}}, {"message": {"content": "x"}}]}, "content is int"),
        ({"choices": [{"text": "legacy"}, {"text": "legacy"}]}, "a choice has no message"),
    ],
)
def test_openai_malformed_responses_fail_clearly_without_retry(fake, body, match):
    fake.script = [Reply(200, body)]
    with pytest.raises(MalformedResponseError, match=match):
        openai_backend(fake.base_url).generate(text_prompts("a"), params=SamplingParams(n=2, temperature=1.0))
    assert len(fake.requests) == 1


def test_openai_honours_the_concurrency_limit(fake):
    fake.default = lambda body: Reply(delay_s=0.05)
    prompts = text_prompts(*(f"p{i}" for i in range(12)))
    outputs = openai_backend(fake.base_url, max_concurrency=3).generate(prompts)
    assert outputs == [[f"p{i}#0"] for i in range(12)]
    assert 2 <= fake.max_in_flight <= 3


def test_openai_failure_mid_batch_returns_nothing_and_stops_the_rest(fake):
    def reply(body: dict[str, Any]) -> Reply:
        return Reply(200, b"garbage") if last_text(body) == "p1" else Reply()

    fake.default = reply
    prompts = text_prompts(*(f"p{i}" for i in range(8)))
    outputs = None
    with pytest.raises(MalformedResponseError, match="non-JSON: garbage"):
        outputs = openai_backend(fake.base_url, max_concurrency=1).generate(prompts)
    assert outputs is None
    assert len(fake.requests) <= 3  # queued requests were dropped, not sent


def test_openai_joins_reasoning_content_into_a_think_block(fake):
    fake.script = [
        Reply(200, completion(["<answer>4</answer>"], reasoning_content="2 plus 2 is 4.")),
        Reply(200, completion(["<think>own</think><answer>4</answer>"], reasoning_content="ignored")),
        Reply(200, {"choices": [{"message": {"content": None, "reasoning": "cut off while"}}]}),
    ]
    backend = openai_backend(fake.base_url, max_concurrency=1)
    outputs = backend.generate(text_prompts("a", "b", "c"))
    assert outputs == [
        ["<think>\n2 plus 2 is 4.\n</think>\n\n<answer>4</answer>"],
        ["<think>own</think><answer>4</answer>"],
        ["<think>\ncut off while\n</think>\n\n"],
    ]


def test_openai_send_n_false_asks_n_times(fake):
    backend = openai_backend(fake.base_url, send_n=False)
    outputs = backend.generate(text_prompts("a"), params=SamplingParams(temperature=1.0, n=3, seed=5))
    assert outputs == [["a#0"] * 3]
    assert sorted((body["n"], body["seed"]) for _, body in fake.requests) == [(1, 5), (1, 6), (1, 7)]


def test_openai_helpers():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert all(0.5 <= backoff_delay(1, 1.0, 60.0) <= 1.0 for _ in range(20))
    assert backoff_delay(10, 1.0, 5.0) <= 5.0
    assert backoff_delay(1, 0.01, 5.0, retry_after=3.0) == 3.0
    assert backoff_delay(1, 0.01, 5.0, retry_after=30.0) == 5.0
    assert redact_url("https://user:pw@api.example.com/v1/chat?key=abc") == "https://api.example.com/v1/chat"


# -- shared interface and config -------------------------------------------------------------------


def test_sampling_params_and_requests_are_checked():
    from vlthinker.backends.hf import SamplingParams as Reexported

    assert Reexported is SamplingParams
    assert SamplingParams(stop="x").stop == ("x",)
    with pytest.raises(ValueError, match="n must be >= 1"):
        SamplingParams(n=0)
    with pytest.raises(BackendError, match="2 prompts but 1 images"):
        check_requests(text_prompts("a", "b"), [None])
    with pytest.raises(BackendError, match="has an image but 0 image part"):
        check_requests(text_prompts("a"), [IMAGE])
    with pytest.raises(BackendError, match="has no image but 1 image part"):
        check_requests([user_message("a")], [None])
    assert truncate_at_stop("abc</answer>def", ["</answer>", "c"]) == "ab"


def test_backend_config_validation():
    with pytest.raises(ValidationError, match="needs base_url"):
        BackendConfig(kind="openai", model="m")
    with pytest.raises(ValidationError, match="Extra inputs"):
        BackendConfig(model="m", api_key="sk-x")
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        BackendConfig(model="m", api_key_env="sk-abc-123")
    assert (
        BackendConfig(kind="openai", model="m", base_url="http://h:8000/v1/").base_url == "http://h:8000/v1"
    )


def test_make_backend_rejects_a_loaded_model_for_remote_kinds(fake):
    config = BackendConfig(kind="openai", model="m", base_url=fake.base_url)
    with pytest.raises(BackendError, match="only be used by the hf backend"):
        make_backend(config, loaded=object())  # type: ignore[arg-type]


# -- vllm backend (no vllm here: a fake module) ----------------------------------------------------


def test_vllm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm → ImportError
    with pytest.raises(
        VLThinkerError, match=r"vllm backend needs the gpu extra: pip install 'vlthinker\[gpu\]'"
    ):
        make_backend(BackendConfig(kind="vllm", model="Qwen/Qwen2.5-VL-7B-Instruct"))
    assert "CUDA machine" in VLLM_MISSING


def test_vllm_request_building():
    messages = user_message("How many?")
    assert to_vllm_messages(messages, IMAGE) == [
        {
            "role": "user",
            "content": [{"type": "image_pil", "image_pil": IMAGE}, {"type": "text", "text": "How many?"}],
        }
    ]
    plain = [{"role": "system", "content": "be brief"}, *text_prompts("q")[0]]
    assert to_vllm_messages(plain, None)[0] == {"role": "system", "content": "be brief"}
    params = SamplingParams(max_new_tokens=9, temperature=0.7, top_p=0.8, top_k=5, n=4, seed=1, stop=("x",))
    assert sampling_kwargs(params) == {
        "n": 4,
        "temperature": 0.7,
        "top_p": 0.8,
        "max_tokens": 9,
        "top_k": 5,
        "seed": 1,
        "stop": ["x"],
    }
    assert sampling_kwargs(SamplingParams(n=4))["n"] == 1  # greedy: decode once, repeat


def test_vllm_backend_with_a_fake_engine(monkeypatch):
    calls: list[tuple[list, dict]] = []

    class FakeLLM:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def chat(self, conversations, sampling_params, use_tqdm):
            calls.append((conversations, sampling_params))
            texts = lambda c: [f"{c[-1]['content'][-1]['text']}#{i}" for i in range(sampling_params["n"])]  # noqa: E731
            completions = lambda c: [types.SimpleNamespace(text=t) for t in texts(c)]  # noqa: E731
            return [types.SimpleNamespace(outputs=completions(c)) for c in conversations]

    fake_vllm = types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    config = BackendConfig(kind="vllm", model="m", batch_size=2, max_model_len=4096, max_pixels=262144)
    with make_backend(config) as backend:
        assert backend._llm.kwargs["max_model_len"] == 4096
        assert backend._llm.kwargs["mm_processor_kwargs"] == {"max_pixels": 262144}
        prompts = [user_message("a"), *text_prompts("b", "c")]
        greedy = backend.generate(prompts, [IMAGE, None, None], SamplingParams(n=2))
        assert greedy == [["a#0", "a#0"], ["b#0", "b#0"], ["c#0", "c#0"]]
        assert [len(c) for c, _ in calls] == [2, 1]
        sampled = backend.generate(text_prompts("d"), None, SamplingParams(n=2, temperature=1.0))
        assert sampled == [["d#0", "d#1"]]
    with pytest.raises(BackendError, match="closed"):
        backend.generate(text_prompts("e"))


# -- hf backend on the tiny model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_backend(tiny_model_dir):
    backend = make_backend(BackendConfig(kind="hf", model=str(tiny_model_dir), device="cpu", batch_size=2))
    yield backend
    backend.close()


def test_hf_backend_mixes_image_and_text_prompts(hf_backend):
    prompts = [user_message("How many?"), *text_prompts("Say hi."), [{"role": "user", "content": "plain"}]]
    seen = []
    outputs = hf_backend.generate(
        prompts,
        [IMAGE, None, None],
        SamplingParams(max_new_tokens=6, n=2),
        progress=lambda d, t: seen.append(d),
    )
    assert len(outputs) == 3 and all(len(o) == 2 and o[0] == o[1] for o in outputs)  # greedy: repeated
    assert all(isinstance(text, str) for o in outputs for text in o)
    assert seen == [2, 3]


def test_hf_backend_samples_n_completions_reproducibly(hf_backend):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=0)
    first = hf_backend.generate([user_message("Count.")], [IMAGE], params)
    assert len(first) == 1 and len(first[0]) == 3
    assert hf_backend.generate([user_message("Count.")], [IMAGE], params) == first


def test_make_backend_reuses_an_already_loaded_model(hf_backend):
    config = BackendConfig(kind="hf", model="unused-when-loaded")
    backend = make_backend(config, loaded=hf_backend.loaded)
    assert backend.loaded is hf_backend.loaded
    assert backend.generate(text_prompts("x"), None, SamplingParams(max_new_tokens=3)) != []
