"""A SIMULATED attribution judge: a goa backend that knows the answer and errs on purpose.

:class:`SimulatedJudgeBackend` implements goa's :class:`~goa.inference.backend.Backend`
protocol. It is built with each case's :class:`~trust.interaction_log.Label` (by case id) and
answers the questions of :mod:`trust.attribution_prompts`: it finds the case from the request's
``tags.question`` (the :class:`~trust.attribution.Judge` puts the log's id there) and what is
asked from the prompt (:func:`~trust.attribution_prompts.describe_prompt`, read from the first
user message, so a retry is answered like the question). It makes no real request. **Every
figure obtained with it is simulated** and says nothing about a real model.

Noise model (:class:`NoiseModel`), one independent draw per question:

``all-at-once``
    Names the labelled agent with probability ``p_agent``, else an agent drawn uniformly from
    the log's other agents (the labelled one when the log has no other). Independently, names
    the labelled step with probability ``p_step``, else a step drawn uniformly from the other
    steps.
``step`` (step-by-step: "is step i the decisive error?")
    Says yes with probability ``p_hit`` at the labelled step and ``p_false`` at any other
    step (before or after it).
``binary`` ("first or second half?")
    Picks the half that holds the labelled step with probability ``p_half``, else the other.
    When neither half holds it (an earlier answer was wrong), it picks a half at random.

Without the ground truth in the prompt, the ``noise_no_gt`` model is used (default: the
same as ``noise``). The defaults of :class:`NoiseModel` are guesses, not measurements: chosen
so that, on the 126 Who&When algorithm-generated cases with the ground truth, the simulated
agent and step accuracy of all-at-once and the step accuracy of step-by-step and binary search
land near the published GPT-4o figures (54/13, 26 and 24%). The model does not reproduce the
low published *agent* accuracy of step-by-step (35%): a simulated false "yes" often falls on a
step of the responsible agent anyway.

Draws are reproducible and independent of the order of requests: each question's random
generator is seeded from ``seed``, the case id and a hash of the prompt. Usage is reported at
about four characters a token (:func:`~trust.attribution.estimate_tokens`) of the prompt
(all messages) and of the reply.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from goa.errors import ModelRequestError
from goa.inference.types import ChatRequest, Completion, Usage
from trust.attribution import estimate_tokens
from trust.attribution_prompts import PromptTask, describe_prompt
from trust.interaction_log import InteractionLog, Label

__all__ = ["DEFAULT_NOISE", "DEFAULT_NOISE_NO_GT", "NoiseModel", "SimulatedJudgeBackend"]


@dataclass(frozen=True)
class NoiseModel:
    """How often the simulated judge is right, per kind of question (see the module)."""

    p_agent: float = 0.54
    p_step: float = 0.12
    p_hit: float = 0.4
    p_false: float = 0.1
    p_half: float = 0.65

    def __post_init__(self) -> None:
        for name in ("p_agent", "p_step", "p_hit", "p_false", "p_half"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie between 0 and 1, not {value}")

    @classmethod
    def always(cls, right: bool) -> NoiseModel:
        """A judge that is always right (``True``) or always wrong (``False``)."""
        p = 1.0 if right else 0.0
        return cls(p_agent=p, p_step=p, p_hit=p, p_false=1.0 - p, p_half=p)


DEFAULT_NOISE = NoiseModel()
"""The default noise with the ground truth shown (rough guesses, not measurements)."""

DEFAULT_NOISE_NO_GT = NoiseModel(p_agent=0.5, p_step=0.1, p_hit=0.35, p_false=0.12, p_half=0.62)
"""A slightly worse judge without the ground truth (what the benchmark uses; guesses too)."""


class SimulatedJudgeBackend:
    """A SIMULATED judge that knows each case's label (see the module for the noise model)."""

    def __init__(
        self,
        labels: Mapping[str, Label],
        *,
        noise: NoiseModel = DEFAULT_NOISE,
        noise_no_gt: NoiseModel | None = None,
        seed: int = 0,
        model: str = "simulated-judge",
    ) -> None:
        self.labels = dict(labels)
        self.noise = noise
        self.noise_no_gt = noise_no_gt or noise
        self.seed = seed
        self._model = model
        self.calls = 0

    @classmethod
    def for_logs(
        cls,
        logs: Iterable[InteractionLog],
        *,
        noise: NoiseModel = DEFAULT_NOISE,
        noise_no_gt: NoiseModel | None = None,
        seed: int = 0,
    ) -> SimulatedJudgeBackend:
        """A judge for these logs (every one must have a label)."""
        labels: dict[str, Label] = {}
        for log in logs:
            if log.label is None:
                raise ValueError(f"log {log.id!r} has no label to simulate a judge with")
            labels[log.id] = log.label
        return cls(labels, noise=noise, noise_no_gt=noise_no_gt, seed=seed)

    @property
    def name(self) -> str:
        return "simulated"

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        case = request.tags.question
        if case is None or case not in self.labels:
            raise ModelRequestError(f"simulated judge: no label for case {case!r}")
        label = self.labels[case]
        question = next((m.content for m in request.messages if m.role == "user"), "")
        task = describe_prompt(question)
        if task is None:
            raise ModelRequestError("simulated judge: the prompt is not an attribution question")
        digest = hashlib.sha256(f"{self.seed}\x00{case}\x00{question}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        noise = self.noise if task.with_ground_truth else self.noise_no_gt
        reply = _answer(task, label, noise, rng)
        text = json.dumps(reply)
        prompt_tokens = sum(estimate_tokens(m.content) for m in request.messages)
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=estimate_tokens(text)),
            cost_usd=0.0,
            finish_reason="stop",
            backend=self.name,
            model=self._model,
            tags=request.tags,
        )

    async def aclose(self) -> None:
        return None


def _answer(
    task: PromptTask, label: Label, noise: NoiseModel, rng: random.Random
) -> dict[str, object]:
    if task.kind == "all-at-once":
        others = [a for a in task.agents if a != label.agent]
        right_agent = rng.random() < noise.p_agent or not others
        agent = label.agent if right_agent else rng.choice(others)
        steps = task.steps or 1
        wrong_steps = [s for s in range(steps) if s != label.step]
        right_step = rng.random() < noise.p_step or not wrong_steps
        step = label.step if right_step else rng.choice(wrong_steps)
        return {"agent": agent, "step": step, "reason": "simulated judge"}
    if task.kind == "step":
        p = noise.p_hit if task.step == label.step else noise.p_false
        return {"decisive": rng.random() < p, "reason": "simulated judge"}
    assert task.first is not None
    assert task.second is not None
    if task.first[0] <= label.step <= task.first[1]:
        right = "first"
    elif task.second[0] <= label.step <= task.second[1]:
        right = "second"
    else:
        return {"half": rng.choice(["first", "second"]), "reason": "simulated judge"}
    wrong = "second" if right == "first" else "first"
    return {"half": right if rng.random() < noise.p_half else wrong, "reason": "simulated judge"}
