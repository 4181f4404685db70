"""A backend for every model litellm can reach: hosted APIs and OpenAI-compatible servers.

The model string is litellm's (``openai/gpt-4o-mini``, ``anthropic/...``,
``ollama/...``, ``hosted_vllm/...`` or ``openai/<name>`` with an ``api_base``
for any OpenAI-compatible server). Keys come only from the environment: litellm
reads the provider's variables itself, and ``api_key_env`` may name another one.

litellm is imported on the first request, after pointing it at its bundled cost
map (``LITELLM_LOCAL_MODEL_COST_MAP``) so that importing it touches no network.
Its telemetry is switched off and each call sets its retries (litellm's and the
openai client's) to 0: tenacity, in :mod:`goa.inference.retry`, is the only
retry layer. (litellm's httpx handler still resends once, at once, when a pooled
connection turns out dead; that is not configurable.) Its aiohttp transport is
switched off too, so requests go through httpx: that makes them visible to
httpx mocks (respx) in tests, and keeps no aiohttp session bound to an event
loop that ``asyncio.run`` has since closed.

Secrets never leave: every error message and every litellm log record is
scrubbed (:mod:`goa.inference.redact`), and the original exception is not
chained to the :class:`~goa.errors.ModelRequestError` raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from typing import Any

from goa.errors import ModelRequestError
from goa.inference.guard import check_model_request
from goa.inference.redact import install_log_redaction, redact
from goa.inference.retry import (
    AttemptFailed,
    Sleep,
    is_retryable_status,
    make_retrying,
    parse_retry_after,
)
from goa.inference.types import ChatRequest, Completion, FinishReason, OnDelta, Usage

BACKEND_NAME = "litellm"
TIMEOUT_GRACE_S = 1.0
"""A call is cut off this long after ``timeout_s`` if litellm has not given up by itself."""
MAX_REASON_CHARS = 300

LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai._base_client", "httpx")
"""Loggers whose records are scrubbed of secrets once litellm is loaded."""

log = logging.getLogger(__name__)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "eos_token": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_length": "length",
    "error": "error",
    "content_filter": "error",
}

_litellm: Any = None


def _load_litellm() -> Any:
    """Import and configure litellm once: local cost map, no telemetry, httpx transport."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.disable_aiohttp_transport = True
        install_log_redaction(LITELLM_LOGGERS)
        _litellm = litellm
    return _litellm


_limiters: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None], asyncio.Semaphore]
] = weakref.WeakKeyDictionary()


def _shared_limiter(key: tuple[str, str | None], limit: int) -> asyncio.Semaphore:
    """One semaphore per (model, api_base) and event loop, made on first use."""
    per_loop = _limiters.setdefault(asyncio.get_running_loop(), {})
    semaphore = per_loop.get(key)
    if semaphore is None:
        semaphore = per_loop[key] = asyncio.Semaphore(limit)
    return semaphore


class LiteLLMBackend:
    """Chat completions through litellm, with retries, a concurrency limit and cost accounting.

    At most ``max_concurrency`` requests to one model at one server are in flight
    at once, shared by every backend of that model in the event loop (the first
    backend's limit applies); each attempt is cut off after ``timeout_s``. Rate limits,
    5xx answers, timeouts and dropped connections are retried up to
    ``max_retries`` times; other failures raise :class:`ModelRequestError` at once.

    The cost comes from litellm's price map when litellm knows the model, else
    from ``input_price_per_mtok``/``output_price_per_mtok`` (USD per million
    tokens), else it is ``None``: unknown, never 0. ``latency_s`` is the wall
    time of the whole call, retries included. A parameter the provider does not
    take (``seed`` for some) is dropped rather than refused (litellm's
    ``drop_params``). ``sleep`` replaces :func:`asyncio.sleep` between attempts
    (tests record the waits with it).
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_concurrency: int = 8,
        max_retries: int = 4,
        input_price_per_mtok: float | None = None,
        output_price_per_mtok: float | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not model:
            raise ValueError("model must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, not {max_concurrency}")
        if (input_price_per_mtok is None) != (output_price_per_mtok is None):
            raise ValueError("give both input_price_per_mtok and output_price_per_mtok, or neither")
        self._model = model
        self._api_key_env = api_key_env
        self._timeout_s = timeout_s
        self._max_concurrency = max_concurrency
        self._max_attempts = max_retries + 1
        self._retrying = make_retrying(
            max_retries=max_retries, sleep=sleep, on_retry=self._log_retry
        )
        self._card_rates: tuple[float, float] | None = None
        if input_price_per_mtok is not None and output_price_per_mtok is not None:
            self._card_rates = (input_price_per_mtok / 1e6, output_price_per_mtok / 1e6)
        self._pricing_resolved = False
        self._rates: tuple[float, float] | None = None
        self._litellm_prices = False
        self._fixed_params: dict[str, Any] = {
            "model": model,
            "timeout": timeout_s,
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": True,
        }
        if api_base:
            self._fixed_params["api_base"] = api_base

    @property
    def name(self) -> str:
        return BACKEND_NAME

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ChatRequest) -> Completion:
        """Send one chat request; raise :class:`ModelRequestError` if it fails for good."""
        check_model_request(BACKEND_NAME, self._model)
        litellm = _litellm if _litellm is not None else _load_litellm()
        params, api_key = self._params(request)
        start = time.perf_counter()
        try:
            text, usage, finish = await self._attempts(litellm, params, api_key)
        except AttemptFailed as failure:
            raise self._final_error(failure) from None
        latency = time.perf_counter() - start
        return Completion(
            text=text,
            usage=usage,
            cost_usd=self._cost(litellm, usage),
            latency_s=latency,
            finish_reason=finish,
            backend=BACKEND_NAME,
            model=self._model,
            tags=request.tags,
        )

    async def complete_stream(self, request: ChatRequest, on_delta: OnDelta) -> Completion:
        """Stream the reply, handing each piece to ``on_delta``.

        A failure before the first piece falls back to :meth:`complete` (with its
        retries) and hands over the whole text at once; a failure mid-stream is
        final, since part of the answer was already shown. Usage comes from the
        stream's closing usage block (``stream_options.include_usage``); a server
        that sends none leaves the token counts at 0 and the cost unknown.
        """
        check_model_request(BACKEND_NAME, self._model)
        litellm = _litellm if _litellm is not None else _load_litellm()
        params, api_key = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        start = time.perf_counter()
        pieces: list[str] = []
        usage: Usage | None = None
        finish: FinishReason = "unknown"
        try:
            async with self._limiter():
                stream = await litellm.acompletion(**params)
                async for chunk in stream:
                    for choice in getattr(chunk, "choices", None) or []:
                        piece = getattr(choice.delta, "content", None)
                        if piece:
                            pieces.append(piece)
                            on_delta(piece)
                        raw = getattr(choice, "finish_reason", None)
                        if isinstance(raw, str):
                            finish = _FINISH_REASONS.get(raw, "unknown")
                    block = getattr(chunk, "usage", None)
                    if block is not None and getattr(block, "completion_tokens", None):
                        usage = Usage(
                            prompt_tokens=_token_count(block.prompt_tokens),
                            completion_tokens=_token_count(block.completion_tokens),
                        )
        except Exception as exc:
            if not pieces:
                log.info(
                    "%s:%s stream failed before any text; retrying without streaming",
                    BACKEND_NAME,
                    self._model,
                )
                completion = await self.complete(request)
                if completion.text:
                    on_delta(completion.text)
                return completion
            raise self._final_error(classify_failure(exc, litellm, secrets=(api_key,))) from None
        return Completion(
            text="".join(pieces),
            usage=usage or Usage(),
            cost_usd=self._cost(litellm, usage) if usage is not None else None,
            latency_s=time.perf_counter() - start,
            finish_reason=finish,
            backend=BACKEND_NAME,
            model=self._model,
            tags=request.tags,
        )

    async def aclose(self) -> None:
        """Let litellm's background logging of this event loop finish (nothing else is held)."""
        if _litellm is None:
            return
        try:
            from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

            # litellm hands its logging to a task of its own first: let that run.
            for _ in range(3):
                await asyncio.sleep(0)
            if getattr(GLOBAL_LOGGING_WORKER, "_bound_loop", None) is asyncio.get_running_loop():
                async with asyncio.timeout(1.0):
                    await GLOBAL_LOGGING_WORKER.flush()
        except Exception:  # best effort: this only avoids noise when the loop closes
            log.debug("could not flush litellm's logging worker", exc_info=True)

    def _params(self, request: ChatRequest) -> tuple[dict[str, Any], str | None]:
        """litellm's keyword arguments for this request, and the API key if one is named."""
        params = dict(self._fixed_params)
        params["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        params["temperature"] = request.temperature
        params["max_tokens"] = request.max_tokens
        if request.seed is not None:
            params["seed"] = request.seed
        if request.stop:
            params["stop"] = list(request.stop)
        if request.json_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.json_schema},
            }
        api_key: str | None = None
        if self._api_key_env is not None:
            api_key = os.environ.get(self._api_key_env)
            if not api_key:
                raise ModelRequestError(
                    f"{BACKEND_NAME}:{self._model}: the environment variable "
                    f"{self._api_key_env} (api_key_env) is not set"
                )
            params["api_key"] = api_key
        return params, api_key

    async def _attempts(
        self, litellm: Any, params: dict[str, Any], api_key: str | None
    ) -> tuple[str, Usage, FinishReason]:
        """The first attempt, then, if it failed in a way worth retrying, the retry policy.

        The first attempt runs outside tenacity, whose machinery costs about 0.1 ms
        a call. A retryable failure is replayed to the policy as its attempt 1, so
        the waits (Retry-After, backoff) and the attempt count are the policy's.
        """
        try:
            return await self._attempt(litellm, params, api_key)
        except AttemptFailed as failure:
            if not failure.retryable or self._max_attempts == 1:
                raise
            first: list[AttemptFailed] = [failure]

        async def attempt() -> tuple[str, Usage, FinishReason]:
            if first:
                raise first.pop()
            return await self._attempt(litellm, params, api_key)

        result: tuple[str, Usage, FinishReason] = await self._retrying.copy()(attempt)
        return result

    def _limiter(self) -> asyncio.Semaphore:
        """The concurrency limit of this model (and server) in the running event loop."""
        return _shared_limiter(
            (self._model, self._fixed_params.get("api_base")), self._max_concurrency
        )

    async def _attempt(
        self, litellm: Any, params: dict[str, Any], api_key: str | None
    ) -> tuple[str, Usage, FinishReason]:
        """One request: the text, usage and finish reason, or :class:`AttemptFailed`."""
        async with self._limiter():
            deadline = self._timeout_s + TIMEOUT_GRACE_S
            try:
                async with asyncio.timeout(deadline):
                    response = await litellm.acompletion(**params)
            except TimeoutError:
                raise AttemptFailed(f"no answer within {deadline:g} s", retryable=True) from None
            except Exception as exc:
                raise classify_failure(exc, litellm, secrets=(api_key,)) from None
        return parse_response(response)

    def _final_error(self, failure: AttemptFailed) -> ModelRequestError:
        where = f"{BACKEND_NAME}:{self._model}"
        if failure.retryable:
            message = f"{where}: {failure.reason} (gave up after {self._max_attempts} attempts)"
        else:
            message = f"{where}: {failure.reason}"
        return ModelRequestError(
            redact(message), retryable=failure.retryable, status=failure.status
        )

    def _log_retry(self, failure: AttemptFailed, attempt: int, wait_s: float) -> None:
        log.info(
            "%s:%s attempt %d/%d failed (%s); retrying in %.2f s",
            BACKEND_NAME,
            self._model,
            attempt,
            self._max_attempts,
            failure.reason,
            wait_s,
        )

    def _cost(self, litellm: Any, usage: Usage) -> float | None:
        """The cost in USD, or ``None`` when neither litellm nor the card knows the prices."""
        if not self._pricing_resolved:
            self._resolve_pricing(litellm)
        if self._rates is not None:
            return usage.prompt_tokens * self._rates[0] + usage.completion_tokens * self._rates[1]
        if self._litellm_prices:
            try:
                prompt_cost, completion_cost = litellm.cost_per_token(
                    model=self._model,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                )
                return float(prompt_cost) + float(completion_cost)
            except Exception:
                return None
        return None

    def _resolve_pricing(self, litellm: Any) -> None:
        """Look the model up in litellm's price map once.

        Flat per-token prices are kept and applied directly (cheap); prices with
        tiers or other units are left to ``litellm.cost_per_token`` on each call.
        """
        self._pricing_resolved = True
        try:
            info = litellm.get_model_info(self._model)
        except Exception:
            info = None
        if not info:
            self._rates = self._card_rates
            return
        prompt_rate = info.get("input_cost_per_token")
        completion_rate = info.get("output_cost_per_token")
        tiered = any(
            value is not None
            and key.startswith(("input_cost_per_", "output_cost_per_"))
            and "above" in key
            for key, value in info.items()
        )
        flat = isinstance(prompt_rate, int | float) and isinstance(completion_rate, int | float)
        if flat and not tiered:
            self._rates = (float(prompt_rate), float(completion_rate))
            return
        self._litellm_prices = True


def parse_response(response: Any) -> tuple[str, Usage, FinishReason]:
    """The text, usage and finish reason of a litellm response; a malformed one fails for good."""
    try:
        choice = response.choices[0]
        message = choice.message
        content = message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        raise AttemptFailed("malformed response: no choices", retryable=False) from None
    if content is None:
        content = ""
    elif not isinstance(content, str):
        raise AttemptFailed("malformed response: the message content is not text", retryable=False)
    raw_finish = getattr(choice, "finish_reason", None)
    finish = (
        _FINISH_REASONS.get(raw_finish, "unknown") if isinstance(raw_finish, str) else "unknown"
    )
    usage_block = getattr(response, "usage", None)
    usage = Usage(
        prompt_tokens=_token_count(getattr(usage_block, "prompt_tokens", 0)),
        completion_tokens=_token_count(getattr(usage_block, "completion_tokens", 0)),
    )
    return content, usage, finish


def _token_count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (or contexts), outermost first."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 32 and all(link is not seen for seen in chain):
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def _from_litellm(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("litellm")


def classify_failure(
    exc: BaseException, litellm: Any, *, secrets: tuple[str | None, ...] = ()
) -> AttemptFailed:
    """What an exception from ``litellm.acompletion`` means for retrying.

    litellm's own exception class is not enough: it reports a dropped connection
    and a malformed body alike as ``InternalServerError`` (500), and some
    providers (ollama) report every HTTP error as ``APIConnectionError`` (500).
    So the chain of causes is read instead: the HTTP answer that failed (httpx's
    or openai's status error) gives the real status and headers; a transport
    error or a timeout below means the server was not reached or did not answer
    in time; anything else (a body that is not JSON, no choices) is not retried.
    """
    import httpx
    import openai

    reason = redact(_describe(exc), extra=[s for s in secrets if s])
    status: int | None = None
    headers: Any = None
    transport = False
    for link in _exception_chain(exc):
        if isinstance(link, httpx.HTTPStatusError):
            status, headers = link.response.status_code, link.response.headers
            break
        if isinstance(link, openai.APIStatusError) and not _from_litellm(link):
            status, headers = link.status_code, link.response.headers
            break
        if isinstance(
            link, httpx.TransportError | TimeoutError | ConnectionError | litellm.Timeout
        ) or (isinstance(link, openai.APIConnectionError) and not _from_litellm(link)):
            transport = True
    if status is None and isinstance(exc, litellm.RateLimitError):
        status = 429
    if status is not None:
        if not headers:
            headers = getattr(exc, "litellm_response_headers", None)
        retryable = is_retryable_status(status)
        return AttemptFailed(
            f"HTTP {status}: {reason}",
            retryable=retryable,
            status=status,
            retry_after=parse_retry_after(headers) if retryable else None,
        )
    if transport:
        return AttemptFailed(f"no answer: {reason}", retryable=True)
    client_status = getattr(exc, "status_code", None)
    if isinstance(client_status, int) and 400 <= client_status < 500 and client_status != 408:
        return AttemptFailed(reason, retryable=False, status=client_status)
    return AttemptFailed(f"bad response: {reason}", retryable=False)


def _describe(exc: BaseException) -> str:
    """The exception's type and the first line of its message, shortened."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > MAX_REASON_CHARS:
        first = first[:MAX_REASON_CHARS] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
