"""``palaestra serve-policy MODEL``: a local model behind an OpenAI-compatible API.

:func:`create_policy_app` serves a :class:`~palaestra.agents.policy.Policy`
(a :class:`~palaestra.agents.transformers_policy.TransformersPolicy` in
practice) with the two routes every OpenAI client uses::

    GET  /v1/models             the one served model, with its max_model_len
    GET  /v1/models/{id}        the same, by id
    POST /v1/chat/completions   n replies to a conversation
    GET  /health                liveness (open even when a token is set)

so that :class:`~palaestra.agents.openai_policy.OpenAIPolicy`, the official
``openai`` client or ``curl`` can share one model from many processes.

Requests from concurrent clients are micro-batched: one batching task gathers
them for up to ``batch_wait_s`` (or ``max_batch_size`` rows) and makes one
``policy.generate`` call per set of identical sampling parameters. Seeded
sampling requests run alone, so that a seed gives the same replies whatever
else the server is doing; greedy requests batch freely.

Limits, each answered before the work it bounds: a body over ``max_body_bytes``
is refused (413) before it is read; a conversation longer than the context could
hold is refused (400) before it is tokenized, and tokenizing runs off the event
loop; at most ``MAX_STOPS`` stop strings of ``MAX_STOP_CHARS`` each; more than
``max_queue`` rows waiting for the model are answered 429 with ``Retry-After``.
A client that disconnects stops its work: a request still queued is dropped,
and a ``generate`` call whose requests have all gone ends after its current
decoding step (with a ``TransformersPolicy``; other policies finish the call).
Connection limits (request head size, header-read timeout, connection count)
are :class:`~palaestra.servers.limits.ConnectionLimits`.

Tools, as the OpenAI API has them: a request may carry ``tools`` (function
definitions) and ``tool_choice`` ``"auto"`` (the default) or ``"none"`` (the
model sees no tools); its messages may hold assistant turns with ``tool_calls``
and ``tool`` results. The model's calls, read by the policy's tool parser, come
back as ``message.tool_calls`` (ids ``call_<24 hex>``, ``arguments`` a JSON text)
with ``finish_reason: "tool_calls"``.

What is not supported is refused with a 400, never silently ignored:
``stream``, ``top_p`` other than 1, ``logprobs``, non-text content parts,
``tool_choice`` other than ``"auto"``/``"none"`` (``"required"``, a named function).
Other fields OpenAI clients send (``user``, ``presence_penalty``...) are ignored.
Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from palaestra.agents.policy import Completion, Message, Policy
from palaestra.servers.auth import bearer_matches
from palaestra.servers.limits import ConnectionLimits, read_capped_body
from palaestra.servers.local import is_loopback, run_server
from palaestra.servers.protocol import TOKEN_ENV

if TYPE_CHECKING:
    from palaestra.agents.transformers_policy import TransformersPolicy

__all__ = ["DEFAULT_MAX_TOKENS", "create_policy_app", "run_policy_server"]

DEFAULT_MAX_TOKENS = 256
"""Reply length when a request names none (OpenAI's default, "no limit", is too slow on CPU)."""
MAX_N = 16
MAX_STOPS = 16
"""Most stop strings a request may give (OpenAI allows 4; vLLM more)."""
MAX_STOP_CHARS = 256
"""Longest stop string."""
MAX_TOOLS = 128
"""Most tools a request may give (OpenAI's limit)."""
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body ``serve-policy`` accepts by default."""
DEFAULT_MAX_QUEUE = 256
"""Most rows (requests times ``n``) waiting for the model by default; more get 429."""
CHARS_PER_TOKEN_BOUND = 32
"""No tokenizer averages more characters per token than this over a whole prompt, so a
conversation of more than ``context_length * CHARS_PER_TOKEN_BOUND`` characters is too
long without counting its tokens."""
RETRY_AFTER_S = 1


# -- wire types -------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a list-valued message content; only ``{"type": "text"}`` is supported."""

    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    """The function of a tool call: its name and arguments (a JSON text)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str | dict[str, Any] = Field("{}", description="A JSON text (an object is taken).")


class ToolCall(BaseModel):
    """A tool call of an assistant message."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(BaseModel):
    """A function the model may call: name, description, JSON schema of its parameters."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDefinition(BaseModel):
    """A tool the model may call (only ``{"type": "function"}`` exists)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ChatMessage(BaseModel):
    """A chat message (``developer`` counts as ``system``)."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="On an assistant message.")
    tool_call_id: str | None = Field(None, description="On a tool message: the call it answers.")


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``; fields not listed are ignored."""

    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = Field(None, description="Must be the served model's id when given.")
    n: int | None = Field(None, ge=1, le=MAX_N, description="Replies to generate (1 by default).")
    temperature: float | None = Field(None, ge=0, le=2, description="0 is greedy; 1 by default.")
    top_p: float | None = Field(None, gt=0, le=1, description="Only 1 is supported.")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens.")
    stop: (
        Annotated[str, Field(max_length=MAX_STOP_CHARS)]
        | Annotated[
            list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]], Field(max_length=MAX_STOPS)
        ]
        | None
    ) = Field(None, description=f"At most {MAX_STOPS} strings of {MAX_STOP_CHARS} characters.")
    seed: int | None = None
    tools: list[ToolDefinition] | None = Field(
        None, max_length=MAX_TOOLS, description=f"At most {MAX_TOOLS} functions."
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None, description='"auto" (the default with tools) or "none"; nothing else.'
    )
    stream: bool | None = Field(None, description="Not supported.")
    logprobs: bool | None = Field(None, description="Not supported.")


class FunctionCallOut(BaseModel):
    """The function a reply calls."""

    name: str
    arguments: str


class ToolCallOut(BaseModel):
    """A tool call of a reply."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    """A generated reply (``content`` is null when the reply only called tools)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class Choice(BaseModel):
    """One of the ``n`` replies."""

    index: int
    message: AssistantMessage
    finish_reason: str


class Usage(BaseModel):
    """Token counts: the prompt once, the completions summed over the choices."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """The answer of ``POST /v1/chat/completions``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    """The served model, as ``GET /v1/models`` lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "palaestra"
    max_model_len: int | None = None


class ModelList(BaseModel):
    """The answer of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = kind
        self.code = code
        self.param = param
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON error answer."""
        error = {"message": self.message, "type": self.type, "param": self.param}
        return JSONResponse(
            {"error": {**error, "code": self.code}}, status_code=self.status, headers=self.headers
        )


# -- micro-batching ---------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    """One request waiting for the batcher."""

    messages: list[Message]
    n: int
    temperature: float
    max_tokens: int
    stop: tuple[str, ...]
    seed: int | None
    future: asyncio.Future[list[Completion]] = field(repr=False)
    tools: list[dict[str, Any]] | None = None

    def key(self) -> tuple[Any, ...]:
        """Jobs with the same key share one ``generate`` call."""
        if self.temperature > 0 and self.seed is not None:
            return ("alone", id(self))  # seeded sampling must not depend on the batch
        return (self.temperature, self.max_tokens, self.stop)


class Batcher:
    """Gathers concurrent requests into few ``policy.generate`` calls.

    Attributes:
        requests: Requests answered so far.
        calls: ``generate`` calls made so far.
        abandoned: Requests whose client left before the answer.
        stopped: ``generate`` calls ended early because all their clients left.
    """

    def __init__(self, policy: Policy, max_rows: int, wait_s: float, max_queue: int) -> None:
        self.policy = policy
        self.max_rows = max_rows
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.requests = 0
        self.calls = 0
        self.abandoned = 0
        self.stopped = 0
        # Whether the policy can end a call early (TransformersPolicy can).
        self._can_stop = "should_stop" in inspect.signature(policy.generate).parameters
        self._pending: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="policy-batcher")

    async def stop(self) -> None:
        """Stop batching; requests still waiting fail with a 503."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        closing = OpenAIError(503, "the server is shutting down", kind="server_error")
        self._fail(list(self._pending), closing)
        self._pending.clear()

    def submit(self, job: _Job) -> None:
        """Queue ``job`` (its future gets its ``n`` completions).

        Raises:
            OpenAIError: 503 when not running; 429 when ``max_queue`` rows already wait.
        """
        if self._task is None or self._task.done():
            raise OpenAIError(503, "the batching task is not running", kind="server_error")
        waiting = sum(j.n for j in self._pending)
        if waiting + job.n > self.max_queue:
            raise OpenAIError(
                429,
                f"{waiting} rows already wait for the model (at most {self.max_queue}); "
                "retry later",
                kind="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._pending.append(job)
        self._wake.set()

    def abandon(self, job: _Job) -> None:
        """``job``'s client left: drop it (a running ``generate`` stops once all its jobs did)."""
        if not job.future.done():
            self.abandoned += 1
            job.future.cancel()
        with contextlib.suppress(ValueError):
            self._pending.remove(job)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            deadline = loop.time() + self.wait_s
            while sum(j.n for j in self._pending) < self.max_rows:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            for group in self._take():
                await self._generate(group)

    def _take(self) -> list[list[_Job]]:
        """The next batch (at most ``max_rows`` rows, first come first), by sampling key."""
        groups: dict[tuple[Any, ...], list[_Job]] = {}
        rows = 0
        while self._pending and (not groups or rows + self._pending[0].n <= self.max_rows):
            job = self._pending.popleft()
            if job.future.done():  # its client went away
                continue
            groups.setdefault(job.key(), []).append(job)
            rows += job.n
        return list(groups.values())

    @staticmethod
    def _fail(jobs: list[_Job], error: OpenAIError) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    async def _generate(self, jobs: list[_Job]) -> None:
        first = jobs[0]
        self.calls += 1
        extra: dict[str, Any] = {}
        if self._can_stop:
            # Asked from the generation thread after each step: reading done() is safe there.
            extra["should_stop"] = lambda: all(job.future.done() for job in jobs)
        if any(job.tools for job in jobs):
            # Only then: a policy without tool support still serves requests without tools.
            extra["tools"] = [first.tools]
        try:
            if first.seed is not None and first.temperature > 0:
                # Alone, and as the policy itself would do it: the seed reproduces the replies.
                [replies] = await self.policy.generate(
                    [first.messages],
                    n=first.n,
                    temperature=first.temperature,
                    max_tokens=first.max_tokens,
                    stop=first.stop,
                    seed=first.seed,
                    **extra,
                )
                results = [replies]
            else:
                # A request for n replies is n rows of n=1, so requests of any n can share a call.
                rows = [job.messages for job in jobs for _ in range(job.n)]
                if "tools" in extra:
                    extra["tools"] = [job.tools for job in jobs for _ in range(job.n)]
                flat = await self.policy.generate(
                    rows,
                    n=1,
                    temperature=first.temperature,
                    max_tokens=first.max_tokens,
                    stop=first.stop,
                    **extra,
                )
                replies_iter = iter(r for [r] in flat)
                results = [[next(replies_iter) for _ in range(job.n)] for job in jobs]
        except asyncio.CancelledError:  # shutting down mid-generation
            self._fail(jobs, OpenAIError(503, "the server is shutting down", kind="server_error"))
            raise
        except Exception as error:  # the generation failed: every request in it does
            message = f"generation failed: {type(error).__name__}: {error}"
            self._fail(jobs, OpenAIError(500, message, kind="server_error"))
            return
        if all(job.future.done() for job in jobs):
            self.stopped += 1
        for job, replies in zip(jobs, results, strict=True):
            if not job.future.done():
                self.requests += 1
                job.future.set_result(replies)


# -- the app ----------------------------------------------------------------------------


class _Guard:
    """Pure ASGI middleware: the bearer token on every route but ``/health``, the body cap."""

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.expected = token.encode() if token else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.expected is not None and scope["path"] != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not bearer_matches(given, self.expected):
                message = "missing bearer token" if not given else "incorrect bearer token"
                response = OpenAIError(401, message, code="invalid_api_key").response()
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        checked = await read_capped_body(scope, receive, self.max_body_bytes)
        if checked is None:
            message = f"the request body is over {self.max_body_bytes} bytes"
            await OpenAIError(413, message, code="body_too_large").response()(scope, receive, send)
            return
        await self.app(scope, checked, send)


async def _disconnected(request: Request) -> None:
    """Return once the client of ``request`` (whose body was read) has gone."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _message(message: ChatMessage, index: int) -> Message:
    """A request's message as a palaestra message (OpenAI's shape, text content).

    Raises:
        OpenAIError: 400 for a ``tool`` message without the id of the call it answers.
    """
    if message.role == "tool" and not message.tool_call_id:
        raise OpenAIError(
            400,
            "a message with role 'tool' needs the tool_call_id of the call it answers",
            param=f"messages.{index}.tool_call_id",
        )
    out: Message = {
        "role": "system" if message.role == "developer" else message.role,
        "content": _text(message, index),
    }
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id or f"call_{index}_{k}",
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": call.function.arguments
                    if isinstance(call.function.arguments, str)
                    else json.dumps(call.function.arguments, ensure_ascii=False),
                },
            }
            for k, call in enumerate(message.tool_calls)
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    return out


def _tools(request: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """The tools the model sees, after ``tool_choice``.

    Raises:
        OpenAIError: 400 for a ``tool_choice`` other than ``"auto"`` or ``"none"``.
    """
    choice = request.tool_choice
    if choice is not None and choice not in ("auto", "none"):
        shown = choice if isinstance(choice, str) else json.dumps(choice)[:100]
        raise OpenAIError(
            400,
            f"tool_choice {shown!r} is not supported; only 'auto' and 'none' are",
            param="tool_choice",
        )
    if not request.tools or choice == "none":
        return None
    return [tool.model_dump(exclude_none=True) for tool in request.tools]


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise OpenAIError(
                400,
                f"content parts of type {part.type!r} are not supported; only text",
                param=f"messages.{index}.content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def create_policy_app(
    policy: TransformersPolicy | Policy,
    *,
    model_id: str | None = None,
    token: str | None = None,
    max_batch_size: int = 32,
    batch_wait_s: float = 0.005,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> FastAPI:
    """Build the OpenAI-compatible app serving ``policy``.

    Args:
        policy: The model (a ``TransformersPolicy``; any ``Policy`` works).
        model_id: The id clients name in ``model`` (the policy's name by default).
        token: When set, every route but ``/health`` requires ``Authorization: Bearer TOKEN``.
        max_batch_size: Most rows (requests times ``n``) gathered into one batch.
        batch_wait_s: How long the batcher waits for more requests once one came.
        max_body_bytes: Largest request body; larger is answered 413 unread.
        max_queue: Most rows waiting for the model; a request beyond is answered 429.

    Returns:
        The FastAPI app; ``app.state.batcher`` counts requests and ``generate`` calls.
    """
    for name, value in [
        ("max_batch_size", max_batch_size),
        ("max_body_bytes", max_body_bytes),
        ("max_queue", max_queue),
    ]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, not {value}")
    served = model_id or policy.name
    created = int(time.time())
    batcher = Batcher(policy, max_batch_size, batch_wait_s, max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="palaestra policy server",
        summary="A local model behind an OpenAI-compatible chat-completions API.",
        version="1",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_middleware(_Guard, token=token, max_body_bytes=max_body_bytes)

    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, error: OpenAIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in problems
        )
        if tuple(first.get("loc", ())) == ("body",):  # not JSON, or no JSON content type
            message = f"the body must be a JSON object (Content-Type: application/json); {message}"
        return OpenAIError(400, message or "invalid request", param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return OpenAIError(error.status_code, str(error.detail), kind=kind).response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and how well batching works (requests answered, ``generate`` calls)."""
        return {
            "status": "ok",
            "model": served,
            "requests": batcher.requests,
            "generate_calls": batcher.calls,
            "abandoned": batcher.abandoned,
        }

    @app.get("/v1/models")
    async def models() -> ModelList:
        """The served model."""
        return ModelList(
            data=[ModelCard(id=served, created=created, max_model_len=policy.context_length)]
        )

    @app.get("/v1/models/{model:path}")
    async def model_card(model: str) -> ModelCard:
        """The served model, by id."""
        if model != served:
            raise OpenAIError(
                404, f"The model `{model}` does not exist.", param="model", code="model_not_found"
            )
        return ModelCard(id=served, created=created, max_model_len=policy.context_length)

    @app.post("/v1/chat/completions", response_model_exclude_none=True)
    async def chat_completions(request: ChatCompletionRequest, raw: Request) -> ChatCompletion:
        """Generate ``n`` replies to a conversation."""
        if request.model is not None and request.model != served:
            raise OpenAIError(
                404,
                f"The model `{request.model}` does not exist; this server serves `{served}`.",
                param="model",
                code="model_not_found",
            )
        if request.stream:
            raise OpenAIError(400, "streaming is not supported", param="stream")
        if request.logprobs:
            raise OpenAIError(400, "logprobs are not supported", param="logprobs")
        if request.top_p is not None and request.top_p != 1:
            raise OpenAIError(400, "only top_p=1 is supported", param="top_p")
        messages: list[Message] = [_message(m, i) for i, m in enumerate(request.messages)]
        tools = _tools(request)
        limit = policy.context_length
        chars = sum(len(m["content"]) for m in messages)
        chars += sum(len(json.dumps(m["tool_calls"])) for m in messages if "tool_calls" in m)
        chars += len(json.dumps(tools)) if tools else 0
        if limit is not None and chars > limit * CHARS_PER_TOKEN_BOUND:
            # Too long whatever the tokenizer: refused without spending time tokenizing it.
            raise OpenAIError(
                400,
                f"This model's maximum context length is {limit} tokens; the messages "
                f"take {chars} characters, far more than that.",
                param="messages",
                code="context_length_exceeded",
            )
        try:
            # Off the event loop: a long prompt takes seconds to tokenize.
            # Tools only when given: a policy's own count_tokens may not take them.
            args = (messages, tools) if tools else (messages,)
            prompt_tokens = await asyncio.to_thread(policy.count_tokens, *args)
        except Exception as error:  # the chat template refused the conversation
            raise OpenAIError(
                400, f"the chat template rejects these messages: {error}", param="messages"
            ) from None
        asked = request.max_completion_tokens or request.max_tokens
        if limit is not None and prompt_tokens >= limit:
            raise OpenAIError(
                400,
                f"This model's maximum context length is {limit} tokens; the messages "
                f"take {prompt_tokens} tokens, leaving no room for a reply.",
                param="messages",
                code="context_length_exceeded",
            )
        if limit is not None and asked is not None and prompt_tokens + asked > limit:
            raise OpenAIError(
                400,
                f"This model's maximum context length is {limit} tokens; you requested "
                f"{prompt_tokens + asked} tokens ({prompt_tokens} in the messages, "
                f"{asked} in the completion). Reduce the messages or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        max_tokens = asked or DEFAULT_MAX_TOKENS
        if limit is not None:
            max_tokens = min(max_tokens, limit - prompt_tokens)
        stop = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
        job = _Job(
            messages=messages,
            n=request.n or 1,
            temperature=1.0 if request.temperature is None else request.temperature,
            max_tokens=max_tokens,
            stop=tuple(s for s in stop if s),
            seed=request.seed,
            future=asyncio.get_running_loop().create_future(),
            tools=tools,
        )
        batcher.submit(job)
        gone = asyncio.ensure_future(_disconnected(raw))
        try:
            await asyncio.wait([job.future, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not job.future.done():  # the client left: nobody reads the answer
            batcher.abandon(job)
            raise OpenAIError(499, "the client closed the request")
        replies = job.future.result()
        completion_tokens = sum(r.completion_tokens for r in replies)
        used_prompt = replies[0].prompt_tokens or prompt_tokens
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=served,
            choices=[
                Choice(index=i, message=_reply(r), finish_reason=r.finish_reason)
                for i, r in enumerate(replies)
            ],
            usage=Usage(
                prompt_tokens=used_prompt,
                completion_tokens=completion_tokens,
                total_tokens=used_prompt + completion_tokens,
            ),
        )

    return app


def _reply(completion: Completion) -> AssistantMessage:
    """The answer's message of a completion: its text, and its calls under fresh ids."""
    if not completion.tool_calls:
        return AssistantMessage(content=str(completion))
    return AssistantMessage(
        content=str(completion) or None,
        tool_calls=[
            ToolCallOut(
                id=f"call_{uuid.uuid4().hex[:24]}",
                function=FunctionCallOut(
                    name=call["function"]["name"], arguments=call["function"]["arguments"]
                ),
            )
            for call in completion.tool_calls
        ],
    )


def run_policy_server(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8100,
    *,
    device: str = "cpu",
    token: str | None = None,
    max_batch_size: int = 32,
    log_level: str = "info",
    insecure: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = DEFAULT_MAX_QUEUE,
    limits: ConnectionLimits | None = None,
    tool_parser: str | None = None,
) -> None:
    """Load ``model`` and serve it under uvicorn until interrupted.

    Args:
        model: ``"tiny"``, ``"smollm2"``, a checkpoint directory (see
            :func:`palaestra.agents.models.resolve_model`).
        host: Interface to bind; a non-loopback one needs a token.
        port: Port to bind.
        device: Torch device of the model.
        token: The bearer token clients must send (default ``$PALAESTRA_TOKEN``).
        max_batch_size: Most rows per batch.
        log_level: uvicorn's log level.
        insecure: Allow a non-loopback ``host`` without a token.
        max_body_bytes: Largest request body.
        max_queue: Most rows waiting for the model.
        limits: Connection limits (default :class:`ConnectionLimits`'s).
        tool_parser: How the model's tool calls are read (``"hermes"``, ``"llama3_json"``);
            by default the convention its chat template shows.

    Raises:
        ValueError: A non-loopback ``host`` without a token (and not ``insecure``).
    """
    from palaestra.agents.transformers_policy import TransformersPolicy

    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token and not insecure:
        raise ValueError(
            f"refusing to bind {host} without a token; pass --token (or set {TOKEN_ENV}), "
            "or --insecure to serve an open API on the network"
        )
    policy = TransformersPolicy(
        model, device=device, max_batch_size=max_batch_size, tool_parser=tool_parser
    )
    app = create_policy_app(
        policy,
        token=token,
        max_batch_size=max_batch_size,
        max_body_bytes=max_body_bytes,
        max_queue=max_queue,
    )
    auth = "token required" if token else "no token"
    print(
        f"palaestra serving {policy.name} (OpenAI API) on http://{host}:{port}/v1 ({auth})",
        flush=True,
    )
    run_server(app, host, port, log_level=log_level, limits=limits)
