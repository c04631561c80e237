"""Backend for any OpenAI-compatible chat endpoint (``vllm serve``, a hosted R1, ...), stdlib only.

Each prompt becomes one ``POST {base_url}/chat/completions`` (or ``n`` requests with ``n=1`` when
``send_n`` is off) carrying ``model``, ``messages`` (the image as a PNG data URL in an
``image_url`` part), ``n``, ``temperature``, ``top_p``, ``max_tokens`` and, when set, ``seed``,
``stop`` and ``top_k`` (a vLLM extension; leave it unset for servers that reject unknown fields).

Semantics, per ``generate`` call:

* Authentication: ``Authorization: Bearer $<api_key_env>`` when that variable is set and non-empty,
  no header otherwise (a local ``vllm serve`` without ``--api-key``). The key is read from the
  environment at each call and never logged nor put in an error message.
* Concurrency: at most ``max_concurrency`` requests in flight (a thread pool).
* Timeouts: an attempt is abandoned when connecting or waiting for the answer takes longer than
  ``timeout_s``, or when reading the body has not finished ``timeout_s`` after the request was sent.
* Retries: HTTP 408, 429 and 5xx, refused/reset connections and timeouts are retried up to
  ``max_retries`` times with exponential backoff (``backoff_base_s * 2**k``, capped at
  ``backoff_max_s``) and jitter (x0.5–1); a ``Retry-After`` header (seconds or an HTTP date) is
  honoured as the minimum wait, still capped at ``backoff_max_s``. Other 4xx fail at once. When the
  retries are spent, ``BackendError`` names the endpoint, the last status or failure and the attempt count.
* Malformed answers (not JSON, no ``choices``, a count other than ``n``, a non-string content) fail
  at once with ``MalformedResponseError``.
* All or nothing: the first failure cancels the rest (queued requests are dropped, backoff waits end)
  and is raised; completions that did arrive are discarded. :meth:`OpenAIBackend.generate_each`
  instead isolates failures: each prompt gets its completions or its own ``BackendError``.
* Counting: ``counters`` holds the requests sent, the retries, the requests that failed for good
  (retries spent, or not retryable) and the malformed answers, for the step's report.
* R1-style servers that split the chain of thought into ``reasoning_content`` (or ``reasoning``):
  when the content has no ``<think>`` block, the text returned is
  ``"<think>\\n" + reasoning + "\\n</think>\\n\\n" + content`` — the layout R1 itself writes, so
  servers with and without a reasoning parser give the same text.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from vlthinker.backends.base import (
    Backend,
    BackendConfig,
    BackendError,
    GenerationRequest,
    ProgressFn,
    Prompt,
    SamplingParams,
    check_requests,
)

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_EXCERPT = 300


class MalformedResponseError(BackendError):
    """The endpoint answered 2xx with something that is not a usable chat completion."""


class _Cancelled(BackendError):
    """Another request of the same call failed; this one stopped early."""


@dataclass(frozen=True)
class _Call:
    prompt_index: int
    body: bytes
    n: int


class OpenAIBackend(Backend):
    """Chat completions over HTTP with retries, timeouts and a concurrency limit (see module doc)."""

    kind = "openai"

    def __init__(self, config: BackendConfig):
        if not config.base_url:
            raise BackendError("the openai backend needs base_url")
        self.config = config
        self.endpoint = f"{config.base_url}/chat/completions"
        self.shown_endpoint = redact_url(self.endpoint)
        self._opener = _opener_for(self.endpoint)
        self._closed = False
        self.counters: dict[str, int] = {"requests": 0, "retries": 0, "failed": 0, "malformed": 0}
        self._count_lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._count_lock:
            self.counters[key] += 1

    def generate(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[Any | None] | None = None,
        params: SamplingParams | None = None,
        progress: ProgressFn | None = None,
    ) -> list[list[str]]:
        requests, calls = self._plan(prompts, images, params)
        if not requests:
            return []
        texts = self._run_all(calls, len(requests), self._headers(), progress)
        outputs: list[list[str]] = [[] for _ in requests]
        for call, call_texts in zip(calls, texts, strict=True):
            outputs[call.prompt_index].extend(call_texts)
        return outputs

    def generate_each(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[Any | None] | None = None,
        params: SamplingParams | None = None,
    ) -> list[list[str] | BackendError]:
        """Like :meth:`generate`, but one prompt's failure (after its retries) is returned in its
        place instead of cancelling the others: a list of completions or a ``BackendError`` per prompt."""
        requests, calls = self._plan(prompts, images, params)
        if not requests:
            return []
        results = self._run_all(calls, len(requests), self._headers(), None, isolate=True)
        outputs: list[list[str] | BackendError] = [[] for _ in requests]
        for call, result in zip(calls, results, strict=True):
            current = outputs[call.prompt_index]
            if isinstance(current, BackendError):
                continue
            if isinstance(result, BackendError):
                outputs[call.prompt_index] = result
            else:
                current.extend(result)
        return outputs

    def close(self) -> None:
        self._closed = True

    # -- requests ---------------------------------------------------------------------------------

    def _plan(
        self,
        prompts: Sequence[Prompt],
        images: Sequence[Any | None] | None,
        params: SamplingParams | None,
    ) -> tuple[list[GenerationRequest], list[_Call]]:
        """The checked requests and the HTTP calls that serve them (an open backend only)."""
        if self._closed:
            raise BackendError("the openai backend is closed")
        params = params or SamplingParams()
        requests = check_requests(prompts, images)
        calls = [call for i, r in enumerate(requests) for call in self._calls(i, r, params)]
        return requests, calls

    def _calls(self, index: int, request: GenerationRequest, params: SamplingParams) -> list[_Call]:
        messages = to_openai_messages(request.messages, request.image)
        if self.config.send_n or params.n == 1:
            return [
                _Call(index, _encode(build_payload(self.config.model, messages, params, params.n)), params.n)
            ]
        return [
            _Call(index, _encode(build_payload(self.config.model, messages, params, 1, seed_offset=j)), 1)
            for j in range(params.n)
        ]

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "vlthinker",
        }
        key = os.environ.get(self.config.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _run_all(
        self,
        calls: list[_Call],
        n_prompts: int,
        headers: dict[str, str],
        progress: ProgressFn | None,
        isolate: bool = False,
    ) -> list[Any]:
        """Run every call with at most ``max_concurrency`` in flight; all results or the first error
        (``isolate``: a failed call's ``BackendError`` is its result and the others go on)."""
        cancel = threading.Event()
        left = [0] * n_prompts
        for call in calls:
            left[call.prompt_index] += 1
        workers = min(self.config.max_concurrency, len(calls))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlthinker-openai")
        try:
            complete = self._complete_or_error if isolate else self._complete
            futures = [pool.submit(complete, call, headers, cancel) for call in calls]
            index_of = {future: i for i, future in enumerate(futures)}
            pending: set[Future] = set(futures)
            done_prompts = 0
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # raises the first failure
                    prompt = calls[index_of[future]].prompt_index
                    left[prompt] -= 1
                    done_prompts += left[prompt] == 0
                if progress:
                    progress(done_prompts, n_prompts)
            return [future.result() for future in futures]
        except BaseException:
            cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _complete(self, call: _Call, headers: dict[str, str], cancel: threading.Event) -> list[str]:
        body = self._post_with_retries(call.body, headers, cancel)
        try:
            return parse_completions(body, call.n, self.shown_endpoint)
        except MalformedResponseError:
            self._count("malformed")
            raise

    def _complete_or_error(
        self, call: _Call, headers: dict[str, str], cancel: threading.Event
    ) -> list[str] | BackendError:
        try:
            return self._complete(call, headers, cancel)
        except _Cancelled:
            raise
        except BackendError as exc:
            return exc

    def _post_with_retries(self, payload: bytes, headers: dict[str, str], cancel: threading.Event) -> bytes:
        attempts = self.config.max_retries + 1
        failure = ""
        for attempt in range(1, attempts + 1):
            if cancel.is_set():
                raise _Cancelled("cancelled")
            retry_after = None
            self._count("requests")
            try:
                status, response_headers, body = self._post_once(payload, headers)
            except (OSError, http.client.HTTPException) as exc:
                failure = self._describe(exc)
            else:
                if 200 <= status < 300:
                    return body
                failure = f"HTTP {status}: {excerpt(body)}"
                if not retryable(status):
                    self._count("failed")
                    raise BackendError(self._not_retried_message(status, body))
                retry_after = parse_retry_after(response_headers.get("Retry-After"))
            if attempt == attempts:
                break
            self._count("retries")
            delay = backoff_delay(attempt, self.config.backoff_base_s, self.config.backoff_max_s, retry_after)
            log.warning(
                "openai backend: %s: %s; retry %d/%d in %.2fs",
                self.shown_endpoint,
                failure,
                attempt,
                self.config.max_retries,
                delay,
            )
            if cancel.wait(delay):
                raise _Cancelled("cancelled")
        self._count("failed")
        raise BackendError(
            f"openai backend: {self.shown_endpoint} failed after {attempts} attempt(s) "
            f"(max_retries={self.config.max_retries}); last failure: {failure}"
        )

    def _post_once(self, payload: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        """One POST: (status, headers, body). HTTP error statuses are returned, not raised."""
        request = urllib.request.Request(self.endpoint, data=payload, headers=headers, method="POST")
        deadline = time.monotonic() + self.config.timeout_s
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                return response.status, response.headers, _read_body(response, deadline)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, _read_body(exc, deadline)

    def _describe(self, exc: BaseException) -> str:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return f"timed out after {self.config.timeout_s:g}s"
        return f"connection failed: {type(reason).__name__}: {reason}"

    def _not_retried_message(self, status: int, body: bytes) -> str:
        hint = ""
        if status in (401, 403):
            hint = f"; check the API key in ${self.config.api_key_env}"
        elif status == 404:
            hint = f"; check base_url and the model name {self.config.model!r}"
        return f"openai backend: {self.shown_endpoint} answered HTTP {status} (not retried{hint}): {excerpt(body)}"


# -- pure helpers (tested directly) ----------------------------------------------------------------


def to_openai_messages(messages: Prompt, image: Any | None) -> list[dict[str, Any]]:
    """Chat messages with the ``{"type": "image"}`` part replaced by an ``image_url`` data-URL part."""
    url = image_data_url(image) if image is not None else None
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": url}}
                if part.get("type") == "image"
                else {"type": "text", "text": part["text"]}
                for part in content
            ]
        converted.append({"role": message["role"], "content": content})
    return converted


def image_data_url(image: Any) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL."""
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_payload(
    model: str, messages: list[dict[str, Any]], params: SamplingParams, n: int, seed_offset: int = 0
) -> dict[str, Any]:
    """The JSON body of one chat-completions request."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "n": n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
    }
    if params.seed is not None:
        payload["seed"] = params.seed + seed_offset
    if params.stop:
        payload["stop"] = list(params.stop)
    if params.top_k is not None:
        payload["top_k"] = params.top_k
    return payload


def parse_completions(body: bytes, n: int, endpoint: str) -> list[str]:
    """The ``n`` completion texts of a chat-completions answer, or ``MalformedResponseError``."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedResponseError(
            f"openai backend: {endpoint} answered with non-JSON: {excerpt(body)}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponseError(
            f"openai backend: {endpoint} answered JSON that is not an object: {excerpt(body)}"
        )
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        what = (
            f"an error: {excerpt(json.dumps(data['error']))}"
            if "error" in data
            else f"no choices: {excerpt(body)}"
        )
        raise MalformedResponseError(f"openai backend: {endpoint} answered {what}")
    if len(choices) != n:
        raise MalformedResponseError(
            f"openai backend: {endpoint} returned {len(choices)} choices, {n} were asked for "
            "(set send_n: false for servers that ignore n)"
        )
    if all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in choices):
        choices = sorted(choices, key=lambda c: c["index"])
    return [_choice_text(choice, endpoint) for choice in choices]


def _choice_text(choice: Any, endpoint: str) -> str:
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise MalformedResponseError(
            f"openai backend: {endpoint}: a choice has no message: {excerpt(json.dumps(choice))}"
        )
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if content is None and isinstance(reasoning, str):
        content = ""  # cut off while still reasoning
    if not isinstance(content, str):
        raise MalformedResponseError(
            f"openai backend: {endpoint}: message content is {type(content).__name__}, not a string"
        )
    if isinstance(reasoning, str) and reasoning.strip() and "<think>" not in content:
        return f"<think>\n{reasoning.strip()}\n</think>\n\n{content.lstrip()}"
    return content


def retryable(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None = None) -> float:
    """Wait before retry ``attempt`` (1-based): jittered exponential, at least Retry-After, at most max_s."""
    delay = min(max_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max_s)


def redact_url(url: str) -> str:
    """The URL without user info and query (either may carry a credential)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def excerpt(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _read_body(response: Any, deadline: float) -> bytes:
    chunks = []
    while chunk := response.read(65536):
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError("reading the response took too long")
    return b"".join(chunks)


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    """Loopback endpoints never go through an HTTP(S)_PROXY from the environment; others may."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in _LOOPBACK:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()
