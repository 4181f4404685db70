"""Log-probabilities: the protocol, the scripted likelihood agent, GoA's likelihood
judge end to end, and llama.cpp's logprob checked against a brute-force computation."""

from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from goa.errors import GoaError, ModelRequestError, RealRequestsForbidden
from goa.inference import llamacpp_backend
from goa.inference.cache import CachedBackend, ResponseCache
from goa.inference.likelihood import (
    LikelihoodBackend,
    TokenLogprob,
    likelihood_backend,
    softmax,
)
from goa.inference.llamacpp_backend import LlamaCppBackend, LoadedModel, reply_tokens
from goa.inference.scripted import ScriptedBackend
from goa.inference.types import ChatRequest, Message
from goa.testing.agents import Agent, StageReply, agent, calls, even, make_goa
from tests.test_pipeline import QUESTION, answer

requires_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)


class LikelyAgent(Agent):
    """A scripted agent that also gives log-probabilities.

    ``likelihoods`` maps a continuation (stripped) to the mean log-probability
    returned (:attr:`default` for others); an exception is raised instead.
    Every (messages, continuation) scored is kept in :attr:`scored`; a call
    waits for :attr:`never` when it is set to an event.
    """

    default = -5.0

    def __init__(
        self, name: str, likelihoods: Mapping[str, float] | Exception, **stages: StageReply
    ) -> None:
        super().__init__(name, **stages)
        self.likelihoods = likelihoods
        self.scored: list[tuple[tuple[Message, ...], str]] = []
        self.never: asyncio.Event | None = None

    async def logprob(self, messages: Sequence[Message], continuation: str) -> TokenLogprob:
        self.scored.append((tuple(messages), continuation))
        if self.never is not None:
            await self.never.wait()
        if isinstance(self.likelihoods, Exception):
            raise self.likelihoods
        value = self.likelihoods.get(continuation.strip(), self.default)
        return TokenLogprob.of([value, value], prompt_tokens=10, cost_usd=0.0)


def likely(
    name: str, reply: str, likelihoods: Mapping[str, float] | Exception, **more: StageReply
) -> LikelyAgent:
    """A likelihood agent that answers ``reply``, keeps it when refining and, asked
    by prompt, judges evenly."""
    stages: dict[str, StageReply] = {
        "answer": reply,
        "forward": reply,
        "reverse": reply,
        "score": even,
    }
    stages.update(more)
    return LikelyAgent(name, likelihoods, **stages)


# --- The protocol and its helpers -------------------------------------------------


def test_token_logprob_sums_and_averages() -> None:
    value = TokenLogprob.of([-1.0, -2.0, -0.5], prompt_tokens=7)
    assert value.total == pytest.approx(-3.5)
    assert value.mean == pytest.approx(-3.5 / 3)
    assert value.tokens == 3
    assert value.token_logprobs == (-1.0, -2.0, -0.5)
    assert value.prompt_tokens == 7
    assert value.cost_usd is None
    with pytest.raises(ValueError, match="at least one token"):
        TokenLogprob.of([])


def test_softmax_gives_shares_of_one_in_order() -> None:
    shares = softmax([-0.1, -1.0, -3.0])
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] > shares[1] > shares[2]
    assert shares[0] / shares[1] == pytest.approx(math.exp(0.9))
    # Very unlikely values stay finite (computed relative to the largest).
    assert softmax([-1000.0, -1001.0]) == pytest.approx([1 / (1 + math.exp(-1)), 0.2689414])
    assert softmax([-2.0, -2.0]) == [0.5, 0.5]
    assert softmax([]) == []


def test_which_backends_give_log_probabilities(tmp_path: Path) -> None:
    llama = LlamaCppBackend("smollm2-135m")
    scripted = ScriptedBackend(["hello"])
    assert isinstance(llama, LikelihoodBackend)
    assert not isinstance(scripted, LikelihoodBackend)
    assert isinstance(LikelyAgent("x", {}), LikelihoodBackend)
    cache = ResponseCache(tmp_path / "cache.db")
    try:
        assert likelihood_backend(llama) is llama
        assert likelihood_backend(CachedBackend(llama, cache)) is llama
        assert likelihood_backend(scripted) is None
        assert likelihood_backend(CachedBackend(scripted, cache)) is None
    finally:
        cache.close()


# --- GoA with likelihood judges, end to end -----------------------------------------

LIKELIHOODS = {"B": -0.2, "A": -1.5, "C": -2.5}


def likely_panel(**more: StageReply) -> dict[str, Agent]:
    """a (A), b (B), c (C) judging by likelihood (B, then A, then C), meta m."""
    return {
        "a": likely("a", answer("A"), LIKELIHOODS),
        "b": likely("b", answer("B"), LIKELIHOODS, reverse="reverse by b\nAnswer: B"),
        "c": likely("c", answer("C"), LIKELIHOODS),
        "m": agent("m", answer("D"), select='{"selected": [1, 2, 3]}', **more),
    }


def test_goa_with_likelihood_judges_needs_no_score_replies() -> None:
    backends = likely_panel()
    goa = make_goa(backends, sizes={"m": 7.0}, judge="likelihood")
    result = goa.run(QUESTION)
    assert result.answered
    assert result.ranking == ["b", "a", "c"]
    assert result.final_answer == "B"
    assert result.judges == {"a": "likelihood", "b": "likelihood", "c": "likelihood"}
    assert all(backends[x].n("score") == 0 for x in "abc")
    assert calls(backends) == 7  # 1 select + 3 answers + 2 forward + 1 reverse
    for row in result.scores.values():
        assert sum(row.values()) == pytest.approx(1.0)
    # 3 judges x 2 distinct peer answers, recorded as score-stage calls.
    scored = result.stage_responses("score")
    assert len(scored) == 6
    assert all(r.ok and r.text and r.text.startswith("likelihood:") for r in scored)
    assert result.stages["score"].totals.calls == 6
    assert result.stages["score"].totals.prompt_tokens == 6 * 12
    assert result.stages["score"].totals.cost_usd == 0.0
    assert not result.incidents
    dumped = result.model_dump(mode="json")
    assert dumped["judges"]["a"] == "likelihood"


def test_the_paper_judge_stays_the_default() -> None:
    backends = likely_panel()
    result = make_goa(backends, sizes={"m": 7.0}).run(QUESTION)
    assert result.judges == {"a": "prompt", "b": "prompt", "c": "prompt"}
    assert all(backends[x].n("score") == 1 for x in "abc")
    assert all(
        not backend.scored for backend in backends.values() if isinstance(backend, LikelyAgent)
    )


def test_an_unknown_judge_mode_is_refused() -> None:
    with pytest.raises(GoaError, match="judge must be one of prompt, likelihood, auto"):
        make_goa(likely_panel(), judge="vote")


# --- llama.cpp log-probabilities --------------------------------------------------------

CAPITAL = [Message(role="user", content="What is the capital of France?")]


def brute_force(loaded: LoadedModel, tokens: Sequence[int], start: int) -> list[float]:
    """Each token's log-probability from a fresh evaluation of everything before it,
    reading only the last position's logits (what generation reads)."""
    import numpy as np

    llama: Any = loaded.llama
    values = []
    with loaded.lock:
        try:
            for i in range(start, len(tokens)):
                llama.reset()
                llama.eval(list(tokens[:i]))
                logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
                row = logits.astype(np.float64)
                log_total = row.max() + math.log(float(np.exp(row - row.max()).sum()))
                values.append(float(row[tokens[i]] - log_total))
        finally:
            llama.reset()
    return values


def logprob(backend: LlamaCppBackend, messages: Sequence[Message], text: str) -> TokenLogprob:
    return asyncio.run(backend.logprob(messages, text))


def test_llamacpp_logprob_is_refused_without_the_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loading(path: Path, n_ctx: int, n_threads: int | None) -> LoadedModel:
        raise AssertionError(f"{path} was loaded")

    monkeypatch.setattr(llamacpp_backend, "_open", no_loading)
    with pytest.raises(RealRequestsForbidden, match="llamacpp:smollm2-135m"):
        logprob(LlamaCppBackend("smollm2-135m"), CAPITAL, "Paris.")


@pytest.fixture
def smollm2() -> LlamaCppBackend:
    pytest.importorskip("llama_cpp")
    return LlamaCppBackend("smollm2-135m")


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_a_fluent_reply_is_more_likely_than_a_scrambled_one(smollm2: LlamaCppBackend) -> None:
    fluent = logprob(smollm2, CAPITAL, "The capital of France is Paris.")
    scrambled = logprob(smollm2, CAPITAL, "Paris France of capital is The.")
    assert fluent.mean > scrambled.mean + 0.5
    assert fluent.tokens == scrambled.tokens == 7
    assert fluent.total == pytest.approx(sum(fluent.token_logprobs))
    assert fluent.prompt_tokens > 10
    assert fluent.cost_usd == 0.0


BATCH_NOISE = 0.05
"""How far a log-probability may stray from the brute-force value. llama.cpp's
quantized CPU kernels give slightly different numbers for different batch
shapes (llama.cpp's own ``logits_all`` path, run in one batch or two, differed
by up to 0.36 per token on Gemma-3-270M); on SmolLM2 here the values agree
exactly."""


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
@pytest.mark.parametrize(
    ("template", "n_batch"),
    [(True, None), (False, None), (True, 3)],
    ids=["chat-template", "plain", "batches-of-3"],
)
def test_logprob_matches_a_brute_force_computation(
    smollm2: LlamaCppBackend, template: bool, n_batch: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = smollm2.load()
    monkeypatch.setattr(loaded, "has_chat_template", template)
    if n_batch is not None:  # the scored positions span several batches
        monkeypatch.setattr(loaded.llama, "n_batch", n_batch)
    messages = [Message(role="system", content="Answer in a few words."), *CAPITAL]
    continuation = "Paris, of course."
    tokens, start = reply_tokens(loaded, messages, continuation)
    text = loaded.llama.detokenize(tokens[start:]).decode("utf-8")
    assert text.strip() == continuation
    expected = brute_force(loaded, tokens, start)
    first = logprob(smollm2, messages, continuation)
    again = logprob(smollm2, messages, continuation)  # the prompt now comes from the cache
    assert first.tokens == len(expected) == len(tokens) - start
    assert first.prompt_tokens == start
    assert list(first.token_logprobs) == pytest.approx(expected, abs=BATCH_NOISE)
    assert again.token_logprobs == first.token_logprobs
    assert first.total == pytest.approx(math.fsum(first.token_logprobs))
    assert first.mean == pytest.approx(first.total / first.tokens)


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_a_trailing_assistant_message_is_the_start_of_the_reply(smollm2: LlamaCppBackend) -> None:
    whole = logprob(smollm2, CAPITAL, "Answer: Paris")
    started = logprob(smollm2, [*CAPITAL, Message(role="assistant", content="Answer:")], " Paris")
    assert started.tokens == 1
    assert started.total == pytest.approx(whole.token_logprobs[-1], abs=BATCH_NOISE)
    assert started.prompt_tokens == whole.prompt_tokens + whole.tokens - 1


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_generation_after_logprob_is_unchanged(smollm2: LlamaCppBackend) -> None:
    request = ChatRequest.of("Name a fruit.", max_tokens=16)
    before = asyncio.run(smollm2.complete(request)).text
    logprob(smollm2, [Message(role="user", content="Name a fruit.")], "An apple, I would say.")
    after = asyncio.run(smollm2.complete(request)).text
    assert after == before


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_logprob_errors_are_model_request_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    # The small-context instance is forgotten after the test (others count loaded models).
    monkeypatch.setattr(llamacpp_backend, "_loaded", dict(llamacpp_backend._loaded))
    small = LlamaCppBackend("smollm2-135m", n_ctx=64)
    with pytest.raises(ModelRequestError, match="exceed context window"):
        logprob(small, CAPITAL, "word " * 100)
    with pytest.raises(ModelRequestError, match="empty"):
        logprob(small, CAPITAL, "")
    with pytest.raises(ModelRequestError, match="no messages"):
        logprob(small, [], "Paris")
    # The model still works after a failed call.
    assert logprob(small, CAPITAL, "Paris").tokens >= 1


@pytest.mark.slow
@pytest.mark.allow_model_requests
@requires_llama
def test_goa_judges_by_llamacpp_likelihood(smollm2: LlamaCppBackend) -> None:
    """Real SmolLM2 judges with scripted answerers: no JSON, scores that add up to 1."""
    backends: dict[str, Any] = {
        name: agent(name, answer(letter), score=AssertionError("not by prompt"))
        for name, letter in (("a", "A"), ("b", "B"), ("c", "C"))
    }
    goa = make_goa(backends, judge="likelihood", selector="all", k=3)
    for name in backends:
        goa.backends[name] = _Judging(backends[name], smollm2)
    result = goa.run("What is the capital of France? A) Paris B) Rome C) Berlin")
    assert result.judges == {"a": "likelihood", "b": "likelihood", "c": "likelihood"}
    for row in result.scores.values():
        assert sum(row.values()) == pytest.approx(1.0)
    assert not result.fallbacks


class _Judging:
    """A scripted agent for generation with a real model's log-probabilities."""

    def __init__(self, scripted: Agent, real: LlamaCppBackend) -> None:
        self.scripted = scripted
        self.real = real
        self.name = scripted.name
        self.model = scripted.model

    async def complete(self, request: ChatRequest) -> Any:
        return await self.scripted.complete(request)

    async def logprob(self, messages: Sequence[Message], continuation: str) -> TokenLogprob:
        return await self.real.logprob(messages, continuation)

    async def aclose(self) -> None:
        return None
