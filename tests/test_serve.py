"""``goa serve``: a live server on loopback, driven by the official openai client and litellm.

Every server here is real (uvicorn on 127.0.0.1, a free port) and serves
scripted agents, so answers are deterministic and no model runs. Nothing waits
a fixed time: readiness is uvicorn's own ``started`` flag, and states the tests
wait for (a run in progress, draining) are polled a bounded number of times.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")

import openai
from openai.types.chat import ChatCompletionUserMessageParam
from typer.testing import CliRunner

from goa.inference.cache import ResponseCache
from goa.inference.types import ChatRequest, Completion
from goa.pools import Pool
from goa.serve import BackgroundServer, ServedPool, create_app
from goa.serve.errors import ApiError
from goa.serve.messages import question_from
from goa.serve.streaming import AnswerStream
from goa.serve.wire import WireMessage
from goa.testing import OpenAIStubServer
from goa.testing.agents import Agent, agent, judge_by, make_goa, scripted_card

TOKEN = "test-token-123"
QUESTION = "Which option is right? A, B or C?"
POLLS = 400
POLL_S = 0.025


def letter(x: str) -> str:
    return f"Option {x} fits best.\nAnswer: {x}"


def panel() -> dict[str, Agent]:
    """a, b, c and a larger meta model m; judges rank b over a over c; b's reverse is final."""
    judge = judge_by({"B": 6, "A": 3, "C": 1, "D": 1})
    agents = [
        agent("a", letter("A"), score=judge, forward="refined by a\nAnswer: A"),
        agent("b", letter("B"), score=judge, reverse="On reflection, B.\nAnswer: B"),
        agent("c", letter("C"), score=judge, forward="refined by c\nAnswer: B"),
        agent("m", letter("D"), score=judge, select='{"selected": [1, 2, 3]}'),
    ]
    return {a.model: a for a in agents}


SIZES = {"m": 7.0}


def served(agents: dict[str, Any], name: str = "test", **options: Any) -> ServedPool:
    cards = tuple(scripted_card(a, size=SIZES.get(a, 1.0)) for a in agents)
    return ServedPool(Pool(name, cards), options={"k": 3, **options}, backends=agents)


class Held(Agent):
    """One agent whose every call waits until :attr:`release` is set (a threading.Event)."""

    def __init__(self) -> None:
        super().__init__("solo", answer="Held, then answered.\nAnswer: 42")
        self.release = threading.Event()
        self.entered = threading.Event()

    async def complete(self, request: ChatRequest) -> Completion:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 30)
        return await super().complete(request)


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(server: BackgroundServer, token: str | None = TOKEN) -> openai.OpenAI:
    """An openai client of ``server`` (closed after the test), with no retries."""
    made = openai.OpenAI(base_url=server.base_url, api_key=token or "none", max_retries=0)
    _clients.append(made)
    return made


def ask_json(server: BackgroundServer, body: Any, *, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=30)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` a bounded number of times."""
    for _ in range(POLLS):
        if condition():
            return
        time.sleep(POLL_S)
    pytest.fail(f"timed out waiting for {what}")


def health(server: BackgroundServer) -> httpx.Response:
    return httpx.get(f"{server.url}/healthz", timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    """One server for the client tests: pool ``test``, a token, generous limits."""
    app = create_app(
        {"test": served(panel())}, token=TOKEN, max_body_bytes=64 * 1024, max_messages=8
    )
    with BackgroundServer(app) as running:
        yield running


def expected_result() -> Any:
    """What GoA itself answers over the same scripted panel."""
    return make_goa(panel(), sizes=SIZES, k=3).run(QUESTION)


# --- The official openai client ----------------------------------------------------


def test_models_list_has_one_id_per_pool(server: BackgroundServer) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["goa/test"]
    assert models.data[0].owned_by == "goa"
    assert client(server).models.retrieve("goa/test").id == "goa/test"


def test_plain_completion_is_the_goa_answer(server: BackgroundServer) -> None:
    expected = expected_result()

    reply = client(server).chat.completions.create(
        model="goa/test", messages=[{"role": "user", "content": QUESTION}]
    )

    assert reply.object == "chat.completion"
    assert reply.model == "goa/test"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected.answer == "On reflection, B.\nAnswer: B"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == expected.totals.prompt_tokens > 0
    assert reply.usage.completion_tokens == expected.totals.completion_tokens > 0
    assert reply.usage.total_tokens == expected.totals.total_tokens
    extra = reply.model_extra or {}
    goa = extra["goa"]
    assert goa["final_answer"] == "B"
    assert goa["final_agent"] == "b"
    assert goa["ranking"] == ["b", "a", "c"]
    assert [s["agent"] for s in goa["selected"]] == ["a", "b", "c"]
    assert goa["scores"] == expected.scores
    assert {n["id"] for n in goa["graph"]["nodes"]} == {"a", "b", "c"}
    assert goa["agents"]["a"]["final_answer"] == "A"
    assert goa["agents"]["b"]["answer"] == "On reflection, B.\nAnswer: B"
    assert goa["calls"] == expected.totals.calls == 10
    assert goa["cost_usd"] == 0.0
    assert goa["run_s"] > 0


def test_streaming_chunks_add_up_to_the_answer(server: BackgroundServer) -> None:
    stream = client(server).chat.completions.create(
        model="goa/test",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_result().answer
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1  # streamed piece by piece, not in one go
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert (finish[0].model_extra or {})["goa"]["final_answer"] == "B"
    usage = chunks[-1]
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.total_tokens == expected_result().totals.total_tokens


def test_stream_without_usage_option_has_no_usage_chunk(server: BackgroundServer) -> None:
    chunks = list(
        client(server).chat.completions.create(
            model="goa/test", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_earlier_messages_become_context(server: BackgroundServer) -> None:
    reply = client(server).chat.completions.create(
        model="goa/test",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! Ask away."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        ],
    )
    assert reply.choices[0].message.content == expected_result().answer


def test_missing_or_wrong_token_is_401(server: BackgroundServer) -> None:
    for token in (None, "wrong-token"):
        response = ask_json(server, {"model": "goa/test", "messages": []}, token=token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(server, token="wrong-token").models.list()
    assert health(server).status_code == 200  # /healthz needs no token


def test_unknown_model_is_404(server: BackgroundServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).chat.completions.create(
            model="goa/nope", messages=[{"role": "user", "content": QUESTION}]
        )
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(server).models.retrieve("goa/nope")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "goa/test", "messages": []}, "messages", "invalid_value"),
        ({"model": "goa/test"}, "messages", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "invalid_value"),
        (
            {"model": "goa/test", "messages": [{"role": "assistant", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "goa/test", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        ({"model": "goa/test", "messages": [{"role": "user", "content": "  "}]}, "messages", None),
        ({"model": "goa/test", "n": 2, "messages": [{"role": "user", "content": "x"}]}, "n", None),
        (
            {"model": "goa/test", "tools": [{"type": "function"}], "messages": []},
            "tools",
            "unsupported_value",
        ),
        (
            {"model": "goa/test", "temperature": 3, "messages": [{"role": "user", "content": "x"}]},
            "temperature",
            "invalid_value",
        ),
        (
            {"model": "goa/test", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {
                "model": "goa/test",
                "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
            },
            "messages[0].content[0]",
            "invalid_value",
        ),
        (
            {"model": "goa/test", "messages": [{"role": "user", "content": "x"}] * 9},
            "messages",
            "too_many_messages",
        ),
    ],
)
def test_bad_requests_are_400_with_the_param(
    server: BackgroundServer, body: dict[str, Any], param: str, code: str | None
) -> None:
    response = ask_json(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert error["message"]


def test_openai_client_raises_bad_request(server: BackgroundServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(
            model="goa/test", messages=[{"role": "user", "content": QUESTION}], n=2
        )
    assert caught.value.param == "n"


def test_invalid_json_and_unknown_routes(server: BackgroundServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    response = httpx.post(f"{server.base_url}/chat/completions", content=b"{", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    response = httpx.post(f"{server.base_url}/chat/completions", content=b"[1]", headers=headers)
    assert response.status_code == 400
    response = httpx.get(f"{server.base_url}/nothing", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"
    response = httpx.get(f"{server.base_url}/chat/completions", headers=headers)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_body_over_the_limit_is_413(server: BackgroundServer) -> None:
    big = "word " * 20_000  # 100 kB, the limit is 64 kB
    response = ask_json(
        server, {"model": "goa/test", "messages": [{"role": "user", "content": big}]}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    with pytest.raises(openai.APIStatusError) as caught:
        client(server).chat.completions.create(
            model="goa/test", messages=[{"role": "user", "content": big}]
        )
    assert caught.value.status_code == 413
    assert health(server).status_code == 200  # the server is fine after it


# --- litellm as a client -------------------------------------------------------------


def test_litellm_plain_and_streaming(server: BackgroundServer) -> None:
    import litellm

    expected = expected_result().answer
    messages = [{"role": "user", "content": QUESTION}]

    async def go() -> tuple[Any, str]:
        reply = await litellm.acompletion(
            model="openai/goa/test", api_base=server.base_url, api_key=TOKEN, messages=messages
        )
        stream = await litellm.acompletion(
            model="openai/goa/test",
            api_base=server.base_url,
            api_key=TOKEN,
            messages=messages,
            stream=True,
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
        return reply, "".join(pieces)

    reply, streamed = asyncio.run(go())
    assert reply.choices[0].message.content == expected
    assert reply.usage.total_tokens == expected_result().totals.total_tokens
    assert streamed == expected


def test_litellm_sees_auth_errors(server: BackgroundServer) -> None:
    import litellm

    with pytest.raises(litellm.exceptions.AuthenticationError):
        litellm.completion(
            model="openai/goa/test",
            api_base=server.base_url,
            api_key="wrong-token",
            messages=[{"role": "user", "content": QUESTION}],
            max_retries=0,
        )


# --- Failures --------------------------------------------------------------------------


def test_no_answer_is_502_and_a_stream_error() -> None:
    broken = {name: Agent(name, answer=_fail(name)) for name in ("x", "y")}
    app = create_app({"broken": served(broken, "broken")})
    with BackgroundServer(app) as running:
        response = ask_json(running, {"model": "goa/broken", "messages": [_user(QUESTION)]})
        assert response.status_code == 502
        assert response.headers["x-should-retry"] == "false"
        body = response.json()
        assert body["error"]["code"] == "no_answer"
        assert body["error"]["message"].startswith("no agent could answer")
        assert body["goa"]["answered"] is False
        with pytest.raises(openai.APIError, match="no agent could answer"):
            list(
                client(running).chat.completions.create(
                    model="goa/broken", messages=[_user(QUESTION)], stream=True
                )
            )


def _fail(name: str) -> Exception:
    from goa.errors import ModelRequestError

    return ModelRequestError(f"{name} is down")


def _user(text: str) -> ChatCompletionUserMessageParam:
    return {"role": "user", "content": text}


def test_internal_error_is_500_without_a_traceback() -> None:
    crashing = {"z": Agent("z", answer=RuntimeError("secret internals /etc/passwd"))}
    app = create_app({"crash": served(crashing, "crash")})
    with BackgroundServer(app) as running:
        response = ask_json(running, {"model": "goa/crash", "messages": [_user(QUESTION)]})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "Traceback" not in response.text
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text


# --- Limits and shutdown -----------------------------------------------------------------


def _solo_app(held: Held, **limits: Any) -> Any:
    return create_app(
        {"solo": ServedPool(Pool("solo", (scripted_card("solo"),)), backends={"solo": held})},
        **limits,
    )


def test_saturated_server_answers_503_with_retry_after() -> None:
    held = Held()
    app = _solo_app(held, max_concurrency=1, max_queue=0, retry_after_s=2)
    with BackgroundServer(app) as running, ThreadPoolExecutor(2) as pool:
        body = {"model": "goa/solo", "messages": [_user("What is 6 * 7?")]}
        first: Future[httpx.Response] = pool.submit(ask_json, running, body, token=None)
        wait_for(held.entered.is_set, "the first run to start")

        second = ask_json(running, body, token=None)

        assert second.status_code == 503
        assert second.headers["retry-after"] == "2"
        assert second.json()["error"]["code"] == "server_saturated"
        with pytest.raises(openai.InternalServerError):
            client(running).chat.completions.create(model="goa/solo", messages=[_user("q")])
        assert health(running).json()["running"] == 1
        held.release.set()
        assert first.result(timeout=30).status_code == 200
        assert ask_json(running, body, token=None).status_code == 200  # free again


def test_queued_request_waits_for_a_slot() -> None:
    held = Held()
    app = _solo_app(held, max_concurrency=1, max_queue=1)
    with BackgroundServer(app) as running, ThreadPoolExecutor(2) as pool:
        body = {"model": "goa/solo", "messages": [_user("What is 6 * 7?")]}
        first = pool.submit(ask_json, running, body, token=None)
        wait_for(held.entered.is_set, "the first run to start")
        second = pool.submit(ask_json, running, body, token=None)
        wait_for(lambda: health(running).json()["queued"] == 1, "the second request to queue")

        assert ask_json(running, body, token=None).status_code == 503  # one running, one queued
        held.release.set()
        assert first.result(timeout=30).status_code == 200
        assert second.result(timeout=30).json()["choices"][0]["message"]["content"].endswith("42")


def test_graceful_shutdown_finishes_requests_in_flight() -> None:
    held = Held()
    app = _solo_app(held, max_concurrency=2)
    running = BackgroundServer(app).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            body = {"model": "goa/solo", "messages": [_user("What is 6 * 7?")]}
            in_flight = pool.submit(ask_json, running, body, token=None)
            streamed = pool.submit(_stream_text, running, body)
            wait_for(lambda: health(running).json()["running"] == 2, "both runs to start")

            running.begin_shutdown()
            wait_for(lambda: health(running).status_code == 503, "the server to drain")

            late = ask_json(running, body, token=None)
            assert late.status_code == 503
            assert late.json()["error"]["code"] == "shutting_down"
            assert late.headers["retry-after"] == "1"
            assert health(running).json()["status"] == "draining"
            assert not in_flight.done()

            held.release.set()
            done = in_flight.result(timeout=30)
            assert done.status_code == 200
            assert (
                done.json()["choices"][0]["message"]["content"]
                == "Held, then answered.\nAnswer: 42"
            )
            assert streamed.result(timeout=30) == "Held, then answered.\nAnswer: 42"
        assert running.join(30), "the server did not stop after draining"
        with pytest.raises(httpx.ConnectError):
            health(running)
    finally:
        held.release.set()
        running.stop()


def _stream_text(server: BackgroundServer, body: dict[str, Any]) -> str:
    stream = client(server, token=None).chat.completions.create(
        model=body["model"], messages=body["messages"], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


# --- The shared response cache -------------------------------------------------------------


def test_the_response_cache_answers_a_repeated_question(tmp_path: Path) -> None:
    agents = panel()
    app = create_app({"test": served(agents)}, cache=ResponseCache(tmp_path / "cache.sqlite"))
    with BackgroundServer(app) as running:
        body = {"model": "goa/test", "messages": [_user(QUESTION)]}
        first = ask_json(running, body, token=None).json()
        calls = sum(len(a.requests) for a in agents.values())
        second = ask_json(running, body, token=None).json()
    assert sum(len(a.requests) for a in agents.values()) == calls  # no new model call
    assert second["goa"]["cached_calls"] == second["goa"]["calls"] == 10
    assert first["goa"]["cached_calls"] == 0
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]


def test_request_temperature_and_max_tokens_reach_every_call() -> None:
    agents = panel()
    app = create_app({"test": served(agents)})
    with BackgroundServer(app) as running:
        body = {
            "model": "goa/test",
            "messages": [_user(QUESTION)],
            "temperature": 0.7,
            "max_completion_tokens": 99,
        }
        assert ask_json(running, body, token=None).status_code == 200
    requests = [r for a in agents.values() for r in a.requests]
    assert {r.temperature for r in requests} == {0.7}
    assert {r.max_tokens for r in requests} == {99}


# --- Units -----------------------------------------------------------------------------------


def test_question_rule() -> None:
    def msg(role: str, content: str) -> WireMessage:
        return WireMessage.model_validate({"role": role, "content": content})

    assert question_from([msg("user", " What? ")], max_messages=4) == "What?"
    folded = question_from(
        [
            msg("system", "Be brief."),
            msg("user", "Hi"),
            msg("assistant", "Hello"),
            msg("user", "Q?"),
        ],
        max_messages=4,
    )
    assert folded == (
        "Instructions:\nBe brief.\n\nConversation so far:\nUser: Hi\n\nAssistant: Hello"
        "\n\nQuestion:\nQ?"
    )
    with pytest.raises(ApiError):
        question_from([msg("user", "Q?")] * 5, max_messages=4)


def test_answer_stream_sends_only_a_prefix_of_the_stripped_answer() -> None:
    stream = AnswerStream()
    sent = [stream.feed(p) for p in ["\n ", "Four", " ", "\n", "Answer:", " 4", "\n\n"]]
    assert "".join(sent) == "Four \nAnswer: 4"
    assert stream.finish("Four \nAnswer: 4") == ""
    assert stream.finish("Four \nAnswer: 4 (sure)") == " (sure)"
    assert stream.finish("Something else") is None
    assert AnswerStream().finish("Not streamed") == "Not streamed"


# --- The command -------------------------------------------------------------------------------


runner = CliRunner()


def test_serve_refuses_a_public_host_without_a_token() -> None:
    from cli.goa_app import app

    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "error: refusing to serve on 0.0.0.0 without a token" in result.stderr


def test_serve_needs_the_token_variable_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.goa_app import app

    monkeypatch.delenv("GOA_TEST_NO_SUCH_TOKEN", raising=False)
    result = runner.invoke(app, ["serve", "--token-env", "GOA_TEST_NO_SUCH_TOKEN"])
    assert result.exit_code == 2
    assert "GOA_TEST_NO_SUCH_TOKEN" in result.stderr


def test_serve_unknown_pool_is_one_error_line() -> None:
    from cli.goa_app import app

    result = runner.invoke(app, ["serve", "--pool", "no-such-pool"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown pool 'no-such-pool'")


def test_serve_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.goa_app import app

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "error: goa serve needs the 'serve' extra (uvicorn is missing)" in result.stderr
    assert "pip install 'goa[serve]'" in result.stderr


STUB_CARD = """\
id: {id}
backend: litellm
model: openai/stub
api_base: {base}
api_key_env: GOA_TEST_STUB_KEY
description: A card for the goa serve test, answered by a stand-in server.
domains: [testing]
context_window: 4096
license: MIT
"""


@pytest.mark.allow_model_requests  # the pool's litellm cards reach a stand-in server
def test_goa_serve_command_serves_and_drains_on_sigterm(tmp_path: Path) -> None:
    """The real command in a process: a pool of two litellm cards behind a stand-in
    OpenAI server; SIGTERM while a request is in flight drains, then exits."""
    release = threading.Event()

    def reply(body: dict[str, Any]) -> str:
        if "slow" in json.dumps(body["messages"]):
            release.wait(30)
        return "Six sevens.\nAnswer: 42"

    config_dir = tmp_path / "config"
    (config_dir / "cards").mkdir(parents=True)
    with OpenAIStubServer(reply) as stub:
        for card_id in ("s1", "s2"):
            text = STUB_CARD.format(id=card_id, base=stub.base_url)
            (config_dir / "cards" / f"{card_id}.yaml").write_text(text)
        (config_dir / "config.toml").write_text(
            'card_dirs = ["cards"]\n\n[pools.stubs]\ncards = ["s1", "s2"]\n'
        )
        port = _free_port()
        env = {
            **os.environ,
            "GOA_CONFIG_DIR": str(config_dir),
            "GOA_DATA_DIR": str(tmp_path / "data"),
            "GOA_TEST_STUB_KEY": "sk-stub",
            "GOA_SERVE_TEST_TOKEN": TOKEN,
        }
        env.pop("GOA_FORBID_MODEL_REQUESTS", None)
        command = [
            str(Path(sys.executable).parent / "goa"),
            "serve",
            "--pool",
            "stubs",
            "--port",
            str(port),
            "--token-env",
            "GOA_SERVE_TEST_TOKEN",
            "--log-level",
            "warning",
        ]
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _up(base, process), "goa serve to listen")
            openai_client = openai.OpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0)
            _clients.append(openai_client)
            assert [m.id for m in openai_client.models.list().data] == ["goa/stubs"]
            reply_ = openai_client.chat.completions.create(
                model="goa/stubs", messages=[_user("What is 6 * 7?")]
            )
            assert reply_.choices[0].message.content == "Six sevens.\nAnswer: 42"

            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(
                    lambda: openai_client.chat.completions.create(
                        model="goa/stubs", messages=[_user("slow: what is 6 * 7?")]
                    )
                )
                wait_for(lambda: httpx.get(f"{base}/healthz").json()["running"] == 1, "the run")
                process.send_signal(signal.SIGTERM)
                wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 503, "draining")
                release.set()
                assert (slow.result(timeout=30).choices[0].message.content or "").endswith("42")
            process.wait(timeout=30)
        finally:
            release.set()
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    output = log.read_text(errors="replace")
    assert "goa serve: goa/stubs at http://127.0.0.1" in output, output
    assert "Traceback" not in output, output


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _up(base: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        pytest.fail(f"goa serve exited with {process.returncode}")
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# --- The README example --------------------------------------------------------------------------


def test_readme_serve_example_runs_as_written(repo_root: Path) -> None:
    import re

    readme = (repo_root / "README.md").read_text()
    (example,) = [
        b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "goa.serve" in b
    ]
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo_root,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert "Answer: 42" in done.stdout
