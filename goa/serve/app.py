"""The app: GoA pools behind OpenAI's ``/v1/models`` and ``/v1/chat/completions``.

:func:`create_app` builds a FastAPI app over named pools; each is the model
``goa/<name>``. A request goes through, in order: the shutdown check (503 while
draining), the bearer token (401, ``/v1/...`` only), the body size (413), JSON
and schema (400), the model id (404), parameters GoA cannot honour (400), the
messages (400, see :mod:`goa.serve.messages`), the concurrency gate (503 with
``Retry-After`` when ``max_concurrency`` runs are going and ``max_queue`` wait),
then the GoA run. A run with no answer is a 502 (``code: no_answer``, the
``goa`` field saying why); anything unexpected is a 500 whose message points to
the server log, never a traceback.

Request mapping: ``temperature`` is every agent call's temperature and
``max_tokens`` (or ``max_completion_tokens``) every agent call's token limit; when
absent, the pool's own settings apply (GoA's default: temperature 0, 512 tokens),
so the response cache can answer repeated questions. ``seed``, ``user`` and keys
this server does not know are accepted and ignored.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from goa.errors import GoaError
from goa.inference.backend import Backend
from goa.inference.cache import ResponseCache
from goa.inference.types import OnDelta
from goa.pipeline import GraphOfAgents
from goa.pools import Pool
from goa.result import Result
from goa.serve.errors import ApiError, bad_request
from goa.serve.extension import final_finish_reason, goa_extension
from goa.serve.limits import Gate, read_body, shutting_down, token_matches
from goa.serve.messages import question_from
from goa.serve.served import Model, ServedPool, prepare
from goa.serve.streaming import EventStream, Outcome, RunFailed, events
from goa.serve.wire import (
    ChatCompletionRequest,
    completion_object,
    model_object,
    unsupported,
    usage_of,
)

logger = logging.getLogger("goa.serve")

DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_MESSAGES = 64


@dataclass
class ServeState:
    """Everything the routes share; ``app.state.goa``."""

    models: dict[str, Model]
    gate: Gate
    token: str | None
    max_body_bytes: int
    max_messages: int
    keepalive_s: float
    created: int = field(default_factory=lambda: int(time.time()))
    built: dict[str, Backend] = field(default_factory=dict)


def state_of(app: FastAPI) -> ServeState:
    state: ServeState = app.state.goa
    return state


def create_app(
    pools: Mapping[str, ServedPool | Pool],
    *,
    token: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    cache: ResponseCache | None = None,
    retry_after_s: int = 1,
    keepalive_s: float = 15.0,
) -> FastAPI:
    """An OpenAI-compatible app serving each pool as ``goa/<name>``.

    ``token``: the bearer token every ``/v1/...`` request must carry (None: no
    token). ``cache``: the response cache in front of every agent (the package's
    shared one is ``ResponseCache(goa.paths.cache_path())``, as ``goa ask
    --cache`` uses). ``retry_after_s``: the ``Retry-After`` of a 503.
    """
    if not pools:
        raise GoaError("no pool to serve")
    if max_body_bytes < 1 or max_messages < 1:
        raise GoaError("max_body_bytes and max_messages must be at least 1")
    if token is not None and not token:
        raise GoaError("the token is empty")
    built: dict[str, Backend] = {}
    models: dict[str, Model] = {}
    for name, served in pools.items():
        model = prepare(name, served, cache=cache, built=built)
        model.goa(temperature=None, max_tokens=None)  # the pool's settings are checked now
        models[model.id] = model
    state = ServeState(
        models=models,
        gate=Gate(max_concurrency, max_queue, retry_after_s=retry_after_s),
        token=token,
        max_body_bytes=max_body_bytes,
        max_messages=max_messages,
        keepalive_s=keepalive_s,
        built=built,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for backend in built.values():
            with suppress(Exception):
                await backend.aclose()

    app = FastAPI(
        title="goa",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.goa = state
    app.add_middleware(Guard, state=state)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    _routes(app, state)
    return app


class Guard:
    """Pure ASGI middleware: 503 while draining, 401 without the token on ``/v1/...``."""

    def __init__(self, app: ASGIApp, state: ServeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            error: ApiError | None = None
            if self.state.gate.draining and path != "/healthz":
                error = shutting_down(self.state.gate.retry_after_s)
            elif self.state.token is not None and path.startswith("/v1"):
                header = Headers(scope=scope).get("authorization")
                if not token_matches(header, self.state.token):
                    message = "invalid bearer token" if header else "missing bearer token"
                    error = ApiError(
                        401,
                        f"{message}: send 'Authorization: Bearer <token>'",
                        code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
            if error is not None:
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"unknown request URL: {request.method} {request.url.path}"
        return ApiError(404, message, code="unknown_url").response()
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        return ApiError(405, message, code="method_not_allowed").response()
    return ApiError(exc.status_code, str(exc.detail), code=None).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error().response()


def internal_error() -> ApiError:
    return ApiError(500, "internal server error; see the server log", code="internal_error")


def _routes(app: FastAPI, state: ServeState) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        gate = state.gate
        body = {
            "status": "draining" if gate.draining else "ok",
            "models": list(state.models),
            "running": gate.running,
            "queued": gate.queued,
            "max_concurrency": gate.max_concurrency,
            "max_queue": gate.max_queue,
        }
        return JSONResponse(body, status_code=503 if gate.draining else 200)

    @app.get("/v1/models")
    async def list_models() -> Response:
        data = [model_object(m.id, state.created, m.describe()) for m in state.models.values()]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> Response:
        model = _model(state, model_id, param="model")
        return JSONResponse(model_object(model.id, state.created, model.describe()))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        chat = _parse(await read_body(request, state.max_body_bytes), state.max_messages)
        model = _model(state, chat.model)
        refused = unsupported(chat)
        if refused is not None:
            param, why = refused
            raise bad_request(why, param=param, code="unsupported_value")
        question = question_from(chat.messages, max_messages=state.max_messages)
        try:
            goa = model.goa(temperature=chat.temperature, max_tokens=chat.token_limit)
        except GoaError as exc:
            raise bad_request(str(exc)) from None
        base: dict[str, Any] = {
            "id": f"chatcmpl-goa-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": model.id,
        }
        ticket = state.gate.admit()
        if chat.stream:
            include_usage = chat.stream_options is not None and chat.stream_options.include_usage

            async def run(on_delta: OnDelta) -> Outcome:
                return await _streamed_outcome(goa, question, model, on_delta)

            stream = events(
                run,
                ticket=ticket,
                base=base,
                include_usage=include_usage,
                keepalive_s=state.keepalive_s,
            )
            return EventStream(stream, ticket)
        async with ticket:
            result, run_s = await run_goa(goa, question)
        extension = goa_extension(result, pool=model.pool.name, run_s=run_s)
        if not result.answered or result.answer is None:
            raise no_answer(result, extension)
        body = completion_object(
            **base,
            content=result.answer,
            finish_reason=final_finish_reason(result),
            usage=usage_of(result.totals),
            goa=extension,
        )
        return JSONResponse(body)


def _model(state: ServeState, model_id: str, *, param: str = "model") -> Model:
    model = state.models.get(model_id)
    if model is None:
        known = ", ".join(state.models)
        raise ApiError(
            404,
            f"the model {model_id!r} does not exist; this server serves: {known}",
            code="model_not_found",
            param=param,
        )
    return model


def _parse(body: bytes, max_messages: int) -> ChatCompletionRequest:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    messages = payload.get("messages")
    if isinstance(messages, list) and len(messages) > max_messages:
        raise ApiError(
            400,
            f"too many messages: {len(messages)} (this server takes at most {max_messages})",
            code="too_many_messages",
            param="messages",
        )
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = _param(error["loc"])
        raise bad_request(f"{param}: {error['msg']}", param=param) from None


def _param(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "list[TextPart]", "none") or "[" in part:
            break  # a union member's name, not a field
        else:
            text += f".{part}" if text else part
    return text or "body"


async def run_goa(
    goa: GraphOfAgents, question: str, on_delta: OnDelta | None = None
) -> tuple[Result, float]:
    """The run's result and its own wall time (what the server adds is the rest)."""
    start = time.perf_counter()
    try:
        result = await goa.arun(question, on_delta=on_delta)
    except GoaError as exc:
        logger.warning("the GoA run failed: %s", exc)
        raise ApiError(500, f"the GoA run failed: {exc}", code="run_failed") from None
    except Exception as exc:
        logger.error("the GoA run failed", exc_info=exc)
        raise internal_error() from None
    return result, time.perf_counter() - start


def no_answer(result: Result, extension: dict[str, Any]) -> ApiError:
    return ApiError(
        502,
        f"no agent could answer: {result.reason}",
        code="no_answer",
        headers={"x-should-retry": "false"},
        extra={"goa": extension},
    )


async def _streamed_outcome(
    goa: GraphOfAgents, question: str, model: Model, on_delta: OnDelta
) -> Outcome:
    try:
        result, run_s = await run_goa(goa, question, on_delta)
    except ApiError as exc:
        raise RunFailed(exc.body()) from None
    extension = goa_extension(result, pool=model.pool.name, run_s=run_s)
    if not result.answered or result.answer is None:
        raise RunFailed(no_answer(result, extension).body())
    return extension, result.answer, final_finish_reason(result), usage_of(result.totals)
