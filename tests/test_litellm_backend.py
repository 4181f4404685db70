"""Contract tests of the litellm backend at the HTTP layer (respx), with no network.

Waits between attempts go through an injected sleep that only records them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx

from goa.errors import ModelRequestError, RealRequestsForbidden
from goa.inference import litellm_backend
from goa.inference.backend import Backend
from goa.inference.litellm_backend import LiteLLMBackend, parse_response
from goa.inference.redact import RedactingFilter, redact, secret_values
from goa.inference.retry import RETRY_AFTER_CAP_S, AttemptFailed, make_retrying, parse_retry_after
from goa.inference.types import ChatRequest, Completion, Tags, Usage

STUB_BASE = "http://stub.local/v1"
STUB_URL = f"{STUB_BASE}/chat/completions"
FAKE_KEY = "sk-test-SECRET1234567890abcdefXYZ"

Route = Any  # respx.Route (respx is untyped)


def reply(
    text: str | None = "hello there",
    *,
    prompt_tokens: int = 11,
    completion_tokens: int = 3,
    finish_reason: str = "stop",
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    """An OpenAI chat-completions response body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def ok(**kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=reply(**kwargs))


def error(status: int, message: str = "failed", **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"message": message, "type": "x", "code": None}},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


class Waits(list[float]):
    """A sleep that records the waits asked for and returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(autouse=True)
def _fake_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def mock() -> Iterator[Any]:
    """respx over every httpx client; any request not routed fails the test."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def stub(mock: Any) -> Route:
    return mock.post(STUB_URL)


@pytest.fixture
def backend(waits: Waits) -> LiteLLMBackend:
    return LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, sleep=waits)


def run(backend: LiteLLMBackend, request: ChatRequest | None = None) -> Completion:
    """One request in a fresh event loop, closing the backend afterwards."""

    async def go() -> Completion:
        try:
            return await backend.complete(request or ChatRequest.of("Say hello."))
        finally:
            await backend.aclose()

    return asyncio.run(go())


def fails(backend: LiteLLMBackend, request: ChatRequest | None = None) -> ModelRequestError:
    with pytest.raises(ModelRequestError) as info:
        run(backend, request)
    return info.value


def sent_json(route: Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


# -- success and request mapping ------------------------------------------------------------


@pytest.mark.allow_model_requests
def test_success_maps_the_response(backend: LiteLLMBackend, stub: Route, waits: Waits) -> None:
    stub.return_value = ok(text="hello there", prompt_tokens=11, completion_tokens=3)
    tags = Tags(agent="a1", stage="draft", question="q7")
    request = ChatRequest.of("Say hello.", system="Be brief.", temperature=0.3, tags=tags)

    done = run(backend, request)

    assert done.text == "hello there"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (11, 3)
    assert done.finish_reason == "stop"
    assert done.backend == "litellm"
    assert done.model == "openai/gpt-4o-mini"
    assert done.tags == tags
    assert done.latency_s > 0
    assert not done.cached
    assert stub.call_count == 1
    assert waits == []


@pytest.mark.allow_model_requests
def test_request_parameters_reach_the_server(backend: LiteLLMBackend, stub: Route) -> None:
    stub.return_value = ok()
    request = ChatRequest.of(
        "Count.", system="Be exact.", temperature=0.7, max_tokens=42, seed=7, stop=("\n\n", "END")
    )

    run(backend, request)

    sent = sent_json(stub)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Count."},
    ]
    assert sent["temperature"] == 0.7
    assert sent["max_tokens"] == 42
    assert sent["seed"] == 7
    assert sent["stop"] == ["\n\n", "END"]
    assert stub.calls[-1].request.headers["authorization"] == f"Bearer {FAKE_KEY}"


@pytest.mark.allow_model_requests
def test_empty_stop_and_no_seed_are_left_out(backend: LiteLLMBackend, stub: Route) -> None:
    stub.return_value = ok()

    run(backend, ChatRequest.of("Hi."))

    sent = sent_json(stub)
    assert "stop" not in sent
    assert "seed" not in sent


@pytest.mark.allow_model_requests
def test_the_backend_satisfies_the_protocol(backend: LiteLLMBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "litellm"
    assert backend.model == "openai/gpt-4o-mini"


@pytest.mark.allow_model_requests
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "error")],
)
def test_finish_reason_is_normalised(
    backend: LiteLLMBackend, stub: Route, raw: str, expected: str
) -> None:
    stub.return_value = ok(finish_reason=raw)

    assert run(backend).finish_reason == expected


def test_finish_reasons_litellm_passes_through_are_mapped_or_unknown() -> None:
    # litellm itself turns finish reasons it does not know into "stop"; the backend
    # maps what it gets, and anything else (or nothing) is "unknown".
    def response(finish: object) -> Any:
        message = SimpleNamespace(content="x")
        choice = SimpleNamespace(message=message, finish_reason=finish)
        return SimpleNamespace(choices=[choice], usage=None)

    assert parse_response(response("max_tokens"))[2] == "length"
    assert parse_response(response("end_turn"))[2] == "stop"
    assert parse_response(response("weird"))[2] == "unknown"
    assert parse_response(response(None))[2] == "unknown"
    assert parse_response(response("stop"))[1] == Usage()


@pytest.mark.allow_model_requests
def test_missing_usage_counts_zero_tokens(backend: LiteLLMBackend, stub: Route) -> None:
    body = reply()
    del body["usage"]
    stub.return_value = httpx.Response(200, json=body)

    done = run(backend)

    assert done.text == "hello there"
    assert done.usage == Usage()


@pytest.mark.allow_model_requests
def test_null_content_is_empty_text(backend: LiteLLMBackend, stub: Route) -> None:
    stub.return_value = ok(text=None)

    assert run(backend).text == ""


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.allow_model_requests
def test_429_honours_retry_after_seconds(
    backend: LiteLLMBackend, stub: Route, waits: Waits
) -> None:
    stub.side_effect = [error(429, "slow down", retry_after="2"), ok(text="at last")]

    done = run(backend)

    assert done.text == "at last"
    assert stub.call_count == 2
    assert waits == [2.0]


@pytest.mark.allow_model_requests
def test_503_honours_retry_after_http_date(
    backend: LiteLLMBackend, stub: Route, waits: Waits
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    stub.side_effect = [error(503, "busy", retry_after=when), ok()]

    run(backend)

    assert stub.call_count == 2
    assert len(waits) == 1
    assert 25.0 <= waits[0] <= 30.0


@pytest.mark.allow_model_requests
def test_retry_after_is_capped(backend: LiteLLMBackend, stub: Route, waits: Waits) -> None:
    stub.side_effect = [error(429, retry_after="3600"), ok()]

    run(backend)

    assert waits == [RETRY_AFTER_CAP_S]


@pytest.mark.allow_model_requests
def test_500_then_success_backs_off(backend: LiteLLMBackend, stub: Route, waits: Waits) -> None:
    stub.side_effect = [error(500, "boom"), ok(text="fine")]

    assert run(backend).text == "fine"
    assert stub.call_count == 2
    assert len(waits) == 1
    assert 0.5 <= waits[0] <= 1.0  # first backoff: 0.5 s plus up to 0.5 s of jitter


@pytest.mark.allow_model_requests
def test_500_every_time_gives_up_after_all_attempts(stub: Route, waits: Waits) -> None:
    backend = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, max_retries=3, sleep=waits)
    stub.return_value = error(500, "boom")

    err = fails(backend)

    assert stub.call_count == 4
    assert err.status == 500
    assert err.retryable
    assert "4 attempts" in str(err)
    assert len(waits) == 3
    assert waits[0] < waits[1] < waits[2]  # exponential: 0.5, 1, 2 s plus < 0.5 s of jitter


@pytest.mark.allow_model_requests
@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server hung up"),
    ],
    ids=["read-timeout", "connect-timeout", "connect-error", "protocol-error"],
)
def test_timeouts_and_connection_errors_are_retried(
    backend: LiteLLMBackend, stub: Route, waits: Waits, failure: Exception
) -> None:
    stub.side_effect = [failure, ok(text="back")]

    assert run(backend).text == "back"
    assert stub.call_count == 2
    assert len(waits) == 1


@pytest.mark.allow_model_requests
def test_timeouts_every_time_give_up(stub: Route, waits: Waits) -> None:
    backend = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, max_retries=2, sleep=waits)
    stub.side_effect = httpx.ReadTimeout("read timed out")

    err = fails(backend)

    assert stub.call_count == 3
    assert err.retryable
    assert err.status is None


@pytest.mark.allow_model_requests
def test_a_hung_server_is_cut_off_by_the_call_timeout(
    stub: Route, waits: Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # respx does not enforce httpx timeouts, so this exercises the backend's own deadline.
    monkeypatch.setattr(litellm_backend, "TIMEOUT_GRACE_S", 0.0)
    backend = LiteLLMBackend(
        "openai/gpt-4o-mini", api_base=STUB_BASE, timeout_s=0.1, max_retries=1, sleep=waits
    )
    started: list[httpx.Request] = []

    async def never_answers(request: httpx.Request) -> httpx.Response:
        started.append(request)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def go() -> None:
        stub.return_value = ok()
        warm = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE)
        await warm.complete(ChatRequest.of("warm up"))  # litellm's first call is slow
        stub.side_effect = never_answers
        try:
            await backend.complete(ChatRequest.of("x"))
        finally:
            await backend.aclose()

    with pytest.raises(ModelRequestError) as info:
        asyncio.run(go())

    assert len(started) == 2
    assert info.value.retryable
    assert "no answer within 0.1 s" in str(info.value)
    assert len(waits) == 1


@pytest.mark.allow_model_requests
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(
    backend: LiteLLMBackend, stub: Route, waits: Waits, status: int
) -> None:
    stub.return_value = error(status, "no", retry_after="1")

    err = fails(backend)

    assert stub.call_count == 1
    assert err.status == status
    assert not err.retryable
    assert waits == []


@pytest.mark.allow_model_requests
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, text="{oops", headers={"content-type": "application/json"}),
        httpx.Response(200, json={"id": "x", "object": "chat.completion"}),
        httpx.Response(200, json={"id": "x", "object": "chat.completion", "choices": []}),
    ],
    ids=["html", "broken-json", "no-choices-key", "empty-choices"],
)
def test_malformed_bodies_fail_without_retry(
    backend: LiteLLMBackend, stub: Route, waits: Waits, response: httpx.Response
) -> None:
    stub.return_value = response

    err = fails(backend)

    assert stub.call_count == 1
    assert not err.retryable
    assert err.status is None
    assert waits == []


@pytest.mark.allow_model_requests
def test_retries_are_logged(
    backend: LiteLLMBackend, stub: Route, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=litellm_backend.__name__)
    stub.side_effect = [error(429, retry_after="2"), ok()]

    run(backend)

    assert "attempt 1/5 failed (HTTP 429" in caplog.text
    assert "retrying in 2.00 s" in caplog.text


# -- other providers: the same classification through litellm's own HTTP handler ------------


@pytest.mark.allow_model_requests
def test_hosted_vllm_success_and_rate_limit(mock: Any, waits: Waits) -> None:
    route = mock.post(STUB_URL)
    route.side_effect = [error(429, retry_after="3"), ok(text="from vllm")]
    backend = LiteLLMBackend("hosted_vllm/my-model", api_base=STUB_BASE, sleep=waits)

    done = run(backend)

    assert done.text == "from vllm"
    assert waits == [3.0]
    assert done.cost_usd is None


@pytest.mark.allow_model_requests
def test_ollama_rate_limit_is_retried_despite_litellm_calling_it_a_500(
    mock: Any, waits: Waits
) -> None:
    # litellm maps every ollama HTTP error to APIConnectionError(500); the real status is 429.
    route = mock.post("http://stub.local/api/generate")
    answer = {"model": "llama3", "response": "hi", "done": True}
    route.side_effect = [
        error(429, retry_after="4"),
        httpx.Response(200, json={**answer, "prompt_eval_count": 5, "eval_count": 1}),
    ]
    backend = LiteLLMBackend("ollama/llama3", api_base="http://stub.local", sleep=waits)

    done = run(backend)

    assert done.text == "hi"
    assert waits == [4.0]
    assert done.cost_usd == 0.0  # litellm's map prices ollama models at 0: local and free


@pytest.mark.allow_model_requests
def test_ollama_unauthorised_is_not_retried(mock: Any, waits: Waits) -> None:
    route = mock.post("http://stub.local/api/generate")
    route.return_value = error(401)
    backend = LiteLLMBackend("ollama/llama3", api_base="http://stub.local", sleep=waits)

    err = fails(backend)

    assert route.call_count == 1
    assert err.status == 401
    assert waits == []


# -- cost --------------------------------------------------------------------------------------


@pytest.mark.allow_model_requests
def test_cost_of_a_model_litellm_knows(stub: Route) -> None:
    stub.return_value = ok(prompt_tokens=1000, completion_tokens=100)
    # Card prices do not override litellm's own price map.
    backend = LiteLLMBackend(
        "openai/gpt-4o-mini",
        api_base=STUB_BASE,
        input_price_per_mtok=99.0,
        output_price_per_mtok=99.0,
    )

    done = run(backend)

    prompt_cost, completion_cost = litellm_backend._load_litellm().cost_per_token(
        model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=100
    )
    assert done.cost_usd is not None
    assert done.cost_usd > 0
    assert done.cost_usd == pytest.approx(prompt_cost + completion_cost)


@pytest.mark.allow_model_requests
def test_cost_of_an_unknown_model_is_unknown_not_zero(stub: Route) -> None:
    # The server echoes a known model name; the bill must not follow the echo.
    stub.return_value = ok(model="gpt-4o", prompt_tokens=1000, completion_tokens=100)
    backend = LiteLLMBackend("openai/goa-test-unknown-model", api_base=STUB_BASE)

    assert run(backend).cost_usd is None


@pytest.mark.allow_model_requests
def test_cost_of_an_unknown_model_from_card_prices(stub: Route) -> None:
    stub.return_value = ok(prompt_tokens=1000, completion_tokens=100)
    backend = LiteLLMBackend(
        "openai/goa-test-unknown-model",
        api_base=STUB_BASE,
        input_price_per_mtok=2.0,
        output_price_per_mtok=8.0,
    )

    assert run(backend).cost_usd == pytest.approx(1000 * 2.0e-6 + 100 * 8.0e-6)


@pytest.mark.allow_model_requests
def test_zero_card_prices_give_zero_cost(stub: Route) -> None:
    stub.return_value = ok()
    backend = LiteLLMBackend(
        "openai/goa-test-unknown-model",
        api_base=STUB_BASE,
        input_price_per_mtok=0.0,
        output_price_per_mtok=0.0,
    )

    assert run(backend).cost_usd == 0.0


def test_half_a_price_card_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        LiteLLMBackend("openai/x", input_price_per_mtok=1.0)


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.allow_model_requests
def test_the_key_never_appears_in_errors_logs_or_output(
    stub: Route,
    waits: Waits,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="LiteLLM")
    echo = f"invalid key {FAKE_KEY}; sent Authorization: Bearer {FAKE_KEY}"
    stub.side_effect = [error(500, echo), error(401, echo)]
    backend = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, sleep=waits)

    err = fails(backend)

    assert err.status == 401
    assert "invalid key" in str(err)
    out, errout = capfd.readouterr()
    for where in (str(err), repr(err), caplog.text, out, errout):
        assert FAKE_KEY not in where
        assert "SECRET1234567890" not in where


@pytest.mark.allow_model_requests
def test_a_key_from_api_key_env_is_sent_and_scrubbed(
    stub: Route, waits: Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variable's name does not look secret and its value has no sk- prefix:
    # it is scrubbed because it is the key this backend sends.
    secret = "plainvalue-0123456789-goa"
    monkeypatch.setenv("GOA_TEST_CREDENTIAL", secret)
    stub.return_value = error(403, f"no access for {secret}")
    backend = LiteLLMBackend(
        "openai/gpt-4o-mini", api_base=STUB_BASE, api_key_env="GOA_TEST_CREDENTIAL", sleep=waits
    )

    err = fails(backend)

    assert stub.calls[-1].request.headers["authorization"] == f"Bearer {secret}"
    assert secret not in str(err)


@pytest.mark.allow_model_requests
def test_a_missing_api_key_env_fails_before_any_request(stub: Route) -> None:
    backend = LiteLLMBackend(
        "openai/gpt-4o-mini", api_base=STUB_BASE, api_key_env="GOA_TEST_NOT_SET_ANYWHERE"
    )

    err = fails(backend)

    assert "GOA_TEST_NOT_SET_ANYWHERE" in str(err)
    assert stub.call_count == 0


# -- the real-request switch, concurrency, event loops -----------------------------------------


def test_requests_are_refused_without_the_marker(backend: LiteLLMBackend, stub: Route) -> None:
    stub.return_value = ok()

    with pytest.raises(RealRequestsForbidden):
        run(backend)
    assert stub.call_count == 0


def _gate(peak: list[int]) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """A server handler that records the most requests it saw in flight at once."""
    inflight = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal inflight
        inflight += 1
        peak[0] = max(peak[0], inflight)
        for _ in range(20):  # yield to the other tasks (no waiting on the clock)
            await asyncio.sleep(0)
        inflight -= 1
        return ok()

    return handle


@pytest.mark.allow_model_requests
def test_concurrency_is_limited_in_every_event_loop(stub: Route) -> None:
    backend = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, max_concurrency=2)

    async def burst() -> list[Completion]:
        try:
            return await asyncio.gather(*(backend.complete(ChatRequest.of("x")) for _ in range(6)))
        finally:
            await backend.aclose()

    for _ in range(2):  # a second asyncio.run must get a fresh limiter
        peak = [0]
        stub.side_effect = _gate(peak)
        assert len(asyncio.run(burst())) == 6
        assert peak[0] == 2


@pytest.mark.allow_model_requests
def test_backends_of_one_model_share_its_limit(stub: Route) -> None:
    """Two agents on the same model and server count against one limit."""
    first = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, max_concurrency=2)
    second = LiteLLMBackend("openai/gpt-4o-mini", api_base=STUB_BASE, max_concurrency=2)

    async def burst() -> list[Completion]:
        calls = [b.complete(ChatRequest.of("x")) for b in (first, second) for _ in range(3)]
        try:
            return await asyncio.gather(*calls)
        finally:
            await first.aclose()

    peak = [0]
    stub.side_effect = _gate(peak)
    assert len(asyncio.run(burst())) == 6
    assert peak[0] == 2


def test_importing_the_backend_does_not_import_litellm() -> None:
    code = "import sys, goa.inference.litellm_backend; print('litellm' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


@pytest.mark.allow_model_requests
def test_litellm_is_configured_on_first_use(backend: LiteLLMBackend, stub: Route) -> None:
    import os

    stub.return_value = ok()
    run(backend)

    litellm = sys.modules["litellm"]
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert litellm.telemetry is False
    assert litellm.disable_aiohttp_transport is True


# -- the retry policy and the scrubber on their own --------------------------------------------


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 12, UTC), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after": "1.5"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now=now) == pytest.approx(12.0)
    assert parse_retry_after(httpx.Headers({"Retry-After": "-5"})) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(None) is None


def test_retry_policy_retries_only_retryable_failures() -> None:
    waits = Waits()
    calls: list[int] = []

    async def attempt(fail: AttemptFailed | None) -> str:
        calls.append(1)
        if fail is not None and len(calls) == 1:
            raise fail
        return "ok"

    retrying = make_retrying(max_retries=3, sleep=waits)
    assert asyncio.run(retrying.copy()(attempt, AttemptFailed("x", retryable=True))) == "ok"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(AttemptFailed):
        asyncio.run(retrying.copy()(attempt, AttemptFailed("x", retryable=False)))
    assert len(calls) == 1
    with pytest.raises(ValueError, match="max_retries"):
        make_retrying(max_retries=-1)


def test_redact_scrubs_secret_env_values_and_key_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok_abcdefgh12345")
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # short values are flags, not keys
    text = (
        "tok_abcdefgh12345 hunter2hunter2 sk-proj-abc123def456 "
        "Authorization: Bearer eyJhbGciOi.payload.sig https://x.io/v1?key=AIzaXYZ&alt=json false"
    )

    clean = redact(text, extra=["custom-secret-value"])

    for secret in ("tok_abcdefgh12345", "hunter2hunter2", "abc123def456", "eyJhbGciOi", "AIzaXYZ"):
        assert secret not in clean
    assert clean.endswith("alt=json false")
    assert redact("the custom-secret-value", extra=["custom-secret-value"]) == "the ***"
    assert "tok_abcdefgh12345" in secret_values()
    assert "false" not in secret_values()


def test_redacting_filter_scrubs_message_arguments_and_traceback() -> None:
    try:
        raise RuntimeError(f"boom {FAKE_KEY}")
    except RuntimeError:
        record = logging.LogRecord(
            "LiteLLM", logging.ERROR, __file__, 1, "key=%s", (FAKE_KEY,), sys.exc_info()
        )
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert FAKE_KEY not in text
    assert "boom" in text
