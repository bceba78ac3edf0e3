"""``OpenAIPolicy``: any OpenAI-compatible ``/v1/chat/completions`` endpoint.

vLLM's ``vllm serve``, SGLang, ``palaestra serve-policy`` and hosted APIs all
answer the same request. Each conversation is one request (``n`` replies in
it); at most ``max_concurrency`` are in flight, and answers come back in order.

Failures a retry can cure (429, 5xx, a refused or dropped connection, a
connect timeout) are retried with exponential backoff and jitter, honouring
``Retry-After``; every other error answer raises :class:`PolicyRequestError`
at once, with the server's own message. ``timeout`` bounds one request in all,
its retries included, so a server that never answers fails in ``timeout``
seconds, not in ``attempts`` times that.

Tools: a conversation given tools sends them as the request's ``tools``; its
assistant turns with ``tool_calls`` and its ``tool`` results go as the API takes
them (``arguments`` a JSON text, palaestra's ``loss`` flags dropped), and the
answer's ``message.tool_calls`` come back in ``Completion.tool_calls``. Without
tools a request is exactly what it always was.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx

from palaestra.agents.policy import Completion, Message, Policy, ToolCallDict, Tools
from palaestra.agents.tool_parsers import openai_message
from palaestra.errors import PolicyConnectionError, PolicyRequestError, PolicyTimeoutError
from palaestra.servers.protocol import RetryPolicy

__all__ = [
    "OpenAIPolicy",
    "PolicyConnectionError",
    "PolicyRequestError",
    "PolicyTimeoutError",
]

# The longest ``Retry-After`` honoured; a server asking for more is asked again sooner.
MAX_RETRY_AFTER = 60.0
# Connecting never needs long; a host that does not accept in this time is down.
CONNECT_TIMEOUT = 10.0
# What the official openai client retries too: timeouts, lock conflicts, rate limits, 5xx.
_RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def _api_base(base_url: str) -> str:
    """``http://host:8000``, ``.../v1`` or ``.../v1/`` -> ``http://host:8000/v1``."""
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
    return base if base.endswith("/v1") else f"{base}/v1"


def _server_message(response: httpx.Response) -> str:
    """The explanation in an error answer: OpenAI's ``error.message``, or the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])[:500]
    return str(body)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
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


def _split_tokens(total: int, reasons: Sequence[str], max_tokens: int) -> list[int]:
    """Share a choice-total of completion tokens out among the choices.

    The API reports one total for all ``n`` choices. A choice cut at the limit
    used exactly ``max_tokens``; the rest share what is left evenly.
    """
    counts = [max_tokens if r == "length" else 0 for r in reasons]
    free = [i for i, r in enumerate(reasons) if r != "length"]
    left = total - sum(counts)
    if left < 0 or (left > 0 and not free):  # the server counts differently: share evenly
        counts, free, left = [0] * len(reasons), list(range(len(reasons))), total
    for k, i in enumerate(free):
        counts[i] = left // len(free) + (1 if k < left % len(free) else 0)
    return counts


class OpenAIPolicy(Policy):
    """A policy served by an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: The server, with or without the trailing ``/v1``
            (``http://localhost:8000``, ``https://api.openai.com/v1``).
        model: The model id to ask for; ``None``: the first one ``GET /v1/models`` lists.
        api_key: Sent as a bearer token; by default read from ``api_key_env``.
        api_key_env: The environment variable holding the key when ``api_key`` is None.
        max_concurrency: Most requests in flight at once.
        timeout: Seconds one request may take in all, retries included.
        retry: Attempts and backoff for retryable failures.
        context_length: The model's context window; ``None``: the ``max_model_len``
            that ``GET /v1/models`` reports for it (vLLM and ``serve-policy`` do), if any.
        extra_body: More fields for every request (``{"top_k": 20}``...); they
            override the policy's own.

    When ``model`` or ``context_length`` is not given, the constructor asks the
    server's ``GET /v1/models`` (a blocking call); without a model it fails if
    the server cannot be reached.

    Example::

        policy = OpenAIPolicy("http://localhost:8000")  # e.g. `vllm serve Qwen/...`
        [[reply]] = await policy.generate([[{"role": "user", "content": "hi"}]])
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        context_length: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, not {max_concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, not {timeout}")
        self.base_url = _api_base(base_url)
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self.extra_body = dict(extra_body or {})
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        # Kept out of every attribute that is printed or recorded; only the header has it.
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.context_length = context_length
        if model is None or context_length is None:
            entry = self._discover(model)
            model = model or str(entry["id"])
            if context_length is None:
                self.context_length = _context_of(entry)
        self.model = model
        self.name = f"{self.base_url}#{model}"

    def __repr__(self) -> str:
        return f"OpenAIPolicy({self.base_url!r}, {self.model!r})"

    # -- Policy -------------------------------------------------------------------------

    async def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tools: Sequence[Tools | None] | None = None,
    ) -> list[list[Completion]]:
        """Reply to each conversation ``n`` times (see :meth:`Policy.generate`).

        Conversation ``i`` is sampled with seed ``seed + i``, so that rows differ.
        ``tools[i]``, when given, goes as conversation ``i``'s ``tools``.

        Raises:
            PolicyRequestError: The server refused a request, or failed it after
                all retries (:class:`PolicyConnectionError`,
                :class:`PolicyTimeoutError` when no answer came).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, not {n}")
        if not conversations:
            return []
        if tools is not None and len(tools) != len(conversations):
            raise ValueError(
                f"tools has {len(tools)} entries for {len(conversations)} conversations"
            )
        client, semaphore = self._session()

        async def one(i: int, conversation: Sequence[Message]) -> list[Completion]:
            async with semaphore:
                return await self._complete(
                    client,
                    conversation,
                    n=n,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    stop=stop,
                    seed=None if seed is None else seed + i,
                    tools=None if tools is None else tools[i],
                )

        tasks = [asyncio.ensure_future(one(i, c)) for i, c in enumerate(conversations)]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # one failed: do not leave the others running
                task.cancel()

    def describe(self) -> dict[str, Any]:
        """Name, backend, base URL, model and context length (never the API key)."""
        return {
            "name": self.name,
            "backend": type(self).__name__,
            "base_url": self.base_url,
            "model": self.model,
            "context_length": self.context_length,
        }

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        client, self._client, self._loop, self._semaphore = self._client, None, None, None
        if client is not None:
            await client.aclose()

    # -- the work -----------------------------------------------------------------------

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The client and semaphore of the running event loop.

        Both are bound to the loop that first used them; a policy reused under
        a new ``asyncio.run`` gets fresh ones (the old loop's are unusable).
        """
        loop = asyncio.get_running_loop()
        if self._client is None or self._semaphore is None or self._loop is not loop:
            limits = httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            )
            self._client = httpx.AsyncClient(headers=self._headers, limits=limits, timeout=None)
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._client, self._semaphore

    async def _complete(
        self,
        client: httpx.AsyncClient,
        conversation: Sequence[Message],
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        stop: Sequence[str],
        seed: int | None,
        tools: Tools | None = None,
    ) -> list[Completion]:
        """``n`` completions of one conversation (asking again if a server gives fewer)."""
        completions: list[Completion] = []
        rounds = 0
        while len(completions) < n:
            body: dict[str, Any] = {
                "model": self.model,
                "messages": [openai_message(m) for m in conversation],
                "n": n - len(completions),
                "temperature": temperature,
                "max_tokens": max_tokens,
            }
            if stop:
                body["stop"] = list(stop)
            if tools:
                body["tools"] = [dict(t) for t in tools]
            if seed is not None:
                # Some servers ignore ``n``: a top-up round must not repeat the first's samples.
                body["seed"] = seed + rounds * 1_000_003
            body.update(self.extra_body)
            answer = await self._post(client, "/chat/completions", body)
            got = self._read(answer, max_tokens)
            if not got:
                raise PolicyRequestError(
                    200, "the answer has no choices", f"{self.base_url}/chat/completions"
                )
            completions += got
            rounds += 1
        return completions[:n]

    @staticmethod
    def _read(answer: dict[str, Any], max_tokens: int) -> list[Completion]:
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        usage = answer.get("usage") or {}
        reasons = [str(c.get("finish_reason") or "stop") for c in choices]
        counts = _split_tokens(int(usage.get("completion_tokens") or 0), reasons, max_tokens)
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completions = []
        for choice, reason, count in zip(choices, reasons, counts, strict=True):
            message = choice.get("message") or {}
            calls = _tool_calls(message.get("tool_calls"))
            completions.append(
                Completion(
                    _characters(str(message.get("content") or "")),
                    prompt_tokens,
                    count,
                    "tool_calls" if calls else reason,
                    calls,
                )
            )
        return completions

    async def _post(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """POST with retries, within ``timeout`` in all; the parsed JSON answer."""
        url = f"{self.base_url}{path}"
        deadline = time.monotonic() + self.timeout
        delays = self.retry.delays()
        while True:
            left = max(0.001, deadline - time.monotonic())
            failure: PolicyRequestError
            wait: float | None = None
            try:
                response = await client.post(
                    url,
                    json=body,
                    timeout=httpx.Timeout(left, connect=min(CONNECT_TIMEOUT, left)),
                )
            except httpx.TimeoutException as error:
                failure = PolicyTimeoutError(
                    0, f"no answer within {self.timeout:g} s ({type(error).__name__})", url
                )
            except httpx.TransportError as error:
                failure = PolicyConnectionError(0, f"{type(error).__name__}: {error}", url)
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError:
                        raise PolicyRequestError(
                            response.status_code, f"not JSON: {response.text[:200]!r}", url
                        ) from None
                failure = PolicyRequestError(response.status_code, _server_message(response), url)
                if response.status_code not in _RETRY_STATUSES:
                    raise failure
                wait = _retry_after(response)
            delay = next(delays, None)
            if delay is None:
                raise failure
            if wait is not None:
                delay = min(max(delay, wait), MAX_RETRY_AFTER)
            if time.monotonic() + delay >= deadline:
                if isinstance(failure, PolicyTimeoutError):
                    raise failure
                raise type(failure)(
                    failure.status, f"{failure.message} (no time left to retry)", url
                )
            await asyncio.sleep(delay)

    def _discover(self, model: str | None) -> dict[str, Any]:
        """The ``GET /v1/models`` entry of ``model`` (the first entry when None).

        Without a model every retry is spent; with one, a failure only leaves
        the context length unknown.
        """
        url = f"{self.base_url}/models"
        delays = self.retry.delays() if model is None else iter(())
        deadline = time.monotonic() + self.timeout
        with httpx.Client(headers=self._headers) as client:
            while True:
                left = max(0.001, deadline - time.monotonic())
                try:
                    response = client.get(
                        url, timeout=httpx.Timeout(left, connect=min(CONNECT_TIMEOUT, left))
                    )
                    if response.is_success:
                        break
                    failure: PolicyRequestError = PolicyRequestError(
                        response.status_code, _server_message(response), url
                    )
                    retryable = response.status_code in _RETRY_STATUSES
                except httpx.TimeoutException:
                    failure = PolicyTimeoutError(0, f"no answer within {self.timeout:g} s", url)
                    retryable = True
                except httpx.TransportError as error:
                    failure = PolicyConnectionError(0, f"{type(error).__name__}: {error}", url)
                    retryable = True
                delay = next(delays, None) if retryable else None
                if delay is None or time.monotonic() + delay >= deadline:
                    if model is not None:
                        return {"id": model}
                    raise failure
                time.sleep(delay)
        try:
            entries = [e for e in response.json().get("data", []) if isinstance(e, dict)]
        except (ValueError, AttributeError):
            entries = []
        if model is not None:
            return next((e for e in entries if e.get("id") == model), {"id": model})
        if not entries or not entries[0].get("id"):
            raise PolicyRequestError(response.status_code, "the server lists no model", url)
        return entries[0]


def _characters(text: str) -> str:
    r"""``text`` with each lone surrogate replaced by U+FFFD.

    JSON can carry a lone surrogate (``"\ud800"``) that is no character: kept, it
    would make the next request and the saved trajectory unencodable as UTF-8 and
    fail the episode. Pairs are joined by the JSON decoder already; only lone halves
    remain to replace.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _tool_calls(raw: Any) -> list[ToolCallDict] | None:
    """An answer's ``message.tool_calls`` in OpenAI's shape (``arguments`` a JSON text).

    Servers differ in small ways (a missing ``type``, ``arguments`` as an object, no
    ``id``): each call is normalised; an entry without a function name is skipped.
    """
    if not isinstance(raw, list):
        return None
    calls: list[ToolCallDict] = []
    for index, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps({} if arguments is None else arguments, ensure_ascii=False)
        calls.append(
            {
                "id": str(call.get("id") or f"call_{index}"),
                "type": "function",
                "function": {"name": str(function["name"]), "arguments": _characters(arguments)},
            }
        )
    return calls or None


def _context_of(entry: dict[str, Any]) -> int | None:
    """The context window a ``/v1/models`` entry reports (vLLM: ``max_model_len``)."""
    for key in ("max_model_len", "context_length", "context_window"):
        value = entry.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None
