"""SIMULATED agents answering real dataset questions, for tests and benchmarks.

Nothing here calls a model: every figure obtained with these agents is
**simulated** and must be labelled so.

A :class:`SimulatedAgent` is a :class:`~goa.inference.scripted.ScriptedBackend`
that is given the answer key of a question set (:func:`answer_key`: question text
-> gold letter, number of options, subject, subcategory, category). It finds the
question in each request (the longest key contained in the prompt) and replies,
by the request's stage tag, in the formats GoA parses:

``answer``
    Right with probability :meth:`SimAgentSpec.accuracy_for` the question's
    domain, else a wrong letter drawn uniformly; ``"...\\nAnswer: X"``. The draw
    is deterministic per (seed, agent, question), so runs are reproducible and
    cacheable.
``score``
    ``{"scores": [...]}`` summing to 1. The judge *believes* its own answer
    letter (so its accuracy decides whether it recognises the right one): an
    answer with that letter weighs :data:`BELIEVED_WEIGHT`, another
    :data:`DOUBTED_WEIGHT`, each times ``exp(judge_noise * N(0, 1))``.
``forward`` / ``reverse`` (refinement, see :class:`RefineRule`)
    ``"keep"``: always keeps its own answer. ``"confidence"`` (default): with
    probability ``1 - confidence`` (its accuracy on the question's domain) it
    switches to the relevance-weighted majority of the peers' answers it is
    shown, else keeps its own. ``"majority"``: always takes the
    relevance-weighted majority of the peers' answers and its own (its own
    weighted by the mean peer relevance).
``pool``
    The relevance-weighted majority of the listed final answers.
``select``
    Reads the numbered candidate profiles and ranks them by how many of their
    ``Domains:`` match the question's domain keywords (:func:`domain_keywords`),
    a general-knowledge candidate next; it does so with probability
    ``select_skill``, else it picks at random. ``{"selected": [...], "reasons": [...]}``.
``difficulty``
    ``{"difficulty": N}``: 1 when its accuracy on the domain is at least 0.8, 2
    from 0.6, else 3.

``fault_rate`` makes a call raise :class:`~goa.errors.ModelRequestError` with
that probability (drawn per attempt, deterministically), and ``latency_s`` makes
every call wait that long (``asyncio.sleep``). A question that is not in the key
gets a deterministic random letter among A-D.

:func:`simulated_pool` builds a ready pool of such agents (domain experts and
generalists) for :class:`~goa.pipeline.GraphOfAgents`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from goa.cards import ModelCard
from goa.errors import ModelRequestError
from goa.eval.datasets import LETTERS, MMLU_SUBJECTS, Sample
from goa.eval.formatting import question_text
from goa.inference.scripted import Reply, ScriptedBackend
from goa.inference.types import ChatRequest
from goa.pools import Pool

RefineRule = Literal["keep", "confidence", "majority"]

BELIEVED_WEIGHT = 1.0
"""A simulated judge's weight for an answer whose letter it believes right."""
DOUBTED_WEIGHT = 0.25
"""A simulated judge's weight for any other answer."""

_EXTRA_KEYWORDS: dict[str, tuple[str, ...]] = {
    "health": ("medicine", "biology"),
    "math": ("mathematics",),
    "social_sciences": ("social science",),
    "law": ("legal",),
}
_BLOCK = re.compile(r"<<<\n(.*?)\n>>>", re.DOTALL)
_LABELLED = re.compile(r"^Expert with relevance ([0-9.]+):\n<<<\n(.*?)\n>>>", re.DOTALL | re.M)
_ANSWER_LINE = re.compile(r"^Answer: *(\S+)", re.MULTILINE)


class KeyEntry(NamedTuple):
    """What a simulated agent knows of one question (simulated ground truth)."""

    gold: str
    n_options: int
    category: str | None = None
    subcategory: str | None = None
    subject: str | None = None

    @property
    def domains(self) -> tuple[str, ...]:
        """Most specific first: subject, subcategory, category (those known)."""
        return tuple(d for d in (self.subject, self.subcategory, self.category) if d)


AnswerKey = Mapping[str, KeyEntry]


def answer_key(samples: Iterable[Sample]) -> dict[str, KeyEntry]:
    """The answer key of multiple-choice ``samples``, by question text.

    Each sample is keyed by the text the models read (:func:`question_text`) and
    by its bare question, so a prompt holding either is recognised.
    """
    key: dict[str, KeyEntry] = {}
    for sample in samples:
        if sample.kind != "multiple_choice" or not sample.choices:
            continue
        subcategory = sample.meta.get("subcategory")
        if not isinstance(subcategory, str) and sample.subject in MMLU_SUBJECTS:
            subcategory = MMLU_SUBJECTS[sample.subject][0]
        entry = KeyEntry(
            gold=sample.gold,
            n_options=len(sample.choices),
            category=sample.category,
            subcategory=subcategory if isinstance(subcategory, str) else None,
            subject=sample.subject,
        )
        for text in (question_text(sample), sample.question):
            if text.strip():
                key[text.strip()] = entry
    return key


def domain_keywords(entry: KeyEntry) -> set[str]:
    """The words a card's domains are matched against for this question."""
    words: set[str] = set()
    for domain in entry.domains:
        words.add(domain.replace("_", " ").lower())
        words.update(_EXTRA_KEYWORDS.get(domain, ()))
    return words


@dataclass(frozen=True)
class SimAgentSpec:
    """A simulated agent's behaviour (see the module docstring).

    ``accuracy`` maps a subject, subcategory or category (MMLU names such as
    ``stem``, ``health``, ``college_physics``) to the probability of answering
    right; the most specific known key wins, else ``default_accuracy``.
    """

    id: str
    accuracy: Mapping[str, float] = field(default_factory=dict)
    default_accuracy: float = 0.5
    latency_s: float = 0.0
    fault_rate: float = 0.0
    judge_noise: float = 0.3
    refine_rule: RefineRule = "confidence"
    select_skill: float = 1.0
    domains: tuple[str, ...] = ("general knowledge",)
    parameters_b: float = 7.0
    description: str = ""

    def __post_init__(self) -> None:
        probabilities = [*self.accuracy.values(), self.default_accuracy]
        probabilities += [self.fault_rate, self.select_skill]
        if any(not 0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError(f"{self.id}: accuracies and rates must lie in [0, 1]")
        if self.latency_s < 0 or self.judge_noise < 0:
            raise ValueError(f"{self.id}: latency_s and judge_noise cannot be negative")

    def accuracy_for(self, entry: KeyEntry | None) -> float:
        """The probability of answering this question right."""
        for domain in entry.domains if entry else ():
            if domain in self.accuracy:
                return self.accuracy[domain]
        return self.default_accuracy

    def card(self) -> ModelCard:
        """A scripted card whose ``measured_accuracy`` is this spec (simulated)."""
        measured = {d: round(a, 4) for d, a in self.accuracy.items()}
        measured.setdefault("general", round(self.default_accuracy, 4))
        description = self.description or (
            f"A simulated agent for tests; strong in {', '.join(self.domains)}."
        )
        return ModelCard.model_validate(
            {
                "id": self.id,
                "backend": "scripted",
                "model": self.id,
                "description": description,
                "domains": list(self.domains),
                "parameters_b": self.parameters_b,
                "context_window": 8192,
                "license": "simulated",
                "measured_accuracy": {
                    d: {"accuracy": a, "source": "simulated spec"} for d, a in measured.items()
                },
            }
        )


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _letter(text: str) -> str | None:
    found = _ANSWER_LINE.findall(text)
    return found[-1].strip().rstrip(".").upper() if found else None


def weighted_majority(votes: Sequence[tuple[str, float]]) -> str | None:
    """The letter with the largest total weight (ties: the first seen)."""
    totals: dict[str, float] = {}
    for letter, weight in votes:
        totals[letter] = totals.get(letter, 0.0) + weight
    return max(totals, key=lambda x: totals[x]) if totals else None


class SimulatedAgent(ScriptedBackend):
    """A SIMULATED agent: replies from its spec and the answer key (module docstring)."""

    def __init__(self, spec: SimAgentSpec, key: AnswerKey, *, seed: int = 0) -> None:
        self.spec = spec
        self.key = key
        self.seed = seed
        self.faults = 0
        self._attempts: dict[tuple[str, str], int] = {}
        self._found: dict[str, tuple[str, KeyEntry | None]] = {}
        # Longest first, so that a full question wins over a bare stem it contains.
        self._texts = sorted(key, key=len, reverse=True)
        super().__init__(self._reply, model=spec.id, latency_s=spec.latency_s)

    # --- Knowledge -----------------------------------------------------------------

    def recognise(self, prompt: str) -> tuple[str, KeyEntry | None]:
        """The key text found in ``prompt`` and its entry (``None`` when unknown)."""
        for text in self._texts:
            if text in prompt:
                return text, self.key[text]
        return prompt, None

    def _question(self, request: ChatRequest) -> tuple[str, KeyEntry | None]:
        memo = request.tags.question
        if memo is not None and memo in self._found:
            return self._found[memo]
        found = self.recognise("\n".join(m.content for m in request.messages))
        if memo is not None:
            self._found[memo] = found
        return found

    def confidence(self, entry: KeyEntry | None) -> float:
        return self.spec.accuracy_for(entry)

    def answer_letter(self, question: str, entry: KeyEntry | None) -> str:
        """Its first answer: right with probability ``confidence`` (deterministic)."""
        rng = _rng(self.seed, self.spec.id, question, "answer")
        if entry is None:
            return rng.choice(LETTERS[:4])
        letters = LETTERS[: entry.n_options]
        if rng.random() < self.confidence(entry):
            return entry.gold
        return rng.choice([x for x in letters if x != entry.gold])

    # --- Replies -------------------------------------------------------------------

    def _reply(self, request: ChatRequest) -> Reply:
        stage = request.tags.stage or "answer"
        question, entry = self._question(request)
        attempt = self._attempts.get((stage, question), 0)
        self._attempts[(stage, question)] = attempt + 1
        if self.spec.fault_rate:
            draw = _rng(self.seed, self.spec.id, question, "fault", stage, attempt).random()
            if draw < self.spec.fault_rate:
                self.faults += 1
                return ModelRequestError(f"simulated fault of {self.spec.id} ({stage})")
        prompt = request.messages[-1].content
        if stage == "select":
            return self._select(prompt, question, entry)
        if stage == "difficulty":
            accuracy = self.confidence(entry)
            return json.dumps({"difficulty": 1 if accuracy >= 0.8 else 2 if accuracy >= 0.6 else 3})
        if stage == "score":
            return self._score(prompt, question, entry)
        if stage in ("forward", "reverse"):
            return self._refine(prompt, question, entry, stage)
        if stage == "pool":
            peers = [(x, w) for w, x in _labelled(prompt)]
            chosen = weighted_majority(peers) or self.answer_letter(question, entry)
            return f"Simulated synthesis: the relevance-weighted majority.\nAnswer: {chosen}"
        letter = self.answer_letter(question, entry)
        return f"Simulated reasoning by {self.spec.id}.\nAnswer: {letter}"

    def _score(self, prompt: str, question: str, entry: KeyEntry | None) -> str:
        believed = self.answer_letter(question, entry)
        tail = prompt.split("Answers from other experts:", 1)[-1]
        blocks = re.split(r"^Answer \d+:\n", tail, flags=re.MULTILINE)[1:]
        rng = _rng(self.seed, self.spec.id, question, "score", len(blocks))
        weights = []
        for block in blocks:
            inner = _BLOCK.search(block)
            letter = _letter(inner.group(1) if inner else block)
            base = BELIEVED_WEIGHT if letter == believed else DOUBTED_WEIGHT
            weights.append(base * math.exp(self.spec.judge_noise * rng.gauss(0.0, 1.0)))
        total = sum(weights) or 1.0
        scores = [round(w / total, 6) for w in weights]
        return json.dumps({"scores": scores})

    def _refine(self, prompt: str, question: str, entry: KeyEntry | None, stage: str) -> str:
        blocks = _BLOCK.findall(prompt)
        own_text = blocks[1] if len(blocks) > 1 else ""
        own = _letter(own_text) or self.answer_letter(question, entry)
        peers = [(x, w) for w, x in _labelled(prompt)]
        rule = self.spec.refine_rule
        chosen = own
        if rule == "majority" and peers:
            mean = sum(w for _, w in peers) / len(peers)
            chosen = weighted_majority([(own, mean), *peers]) or own
        elif rule == "confidence" and peers:
            rng = _rng(self.seed, self.spec.id, question, stage, own, len(peers))
            if rng.random() >= self.confidence(entry):
                chosen = weighted_majority(peers) or own
        verb = "kept" if chosen == own else "switched to the peers' majority"
        return f"Simulated refinement by {self.spec.id}: {verb}.\nAnswer: {chosen}"

    def _select(self, prompt: str, question: str, entry: KeyEntry | None) -> str:
        wanted = re.search(r"Pick the (\d+) candidates", prompt)
        profiles = re.split(r"^Candidate (\d+):\n", prompt, flags=re.MULTILINE)
        numbers = [int(n) for n in profiles[1::2]]
        k = min(int(wanted.group(1)) if wanted else 3, len(numbers))
        keywords = domain_keywords(entry) if entry else set()
        scored: list[tuple[float, int]] = []
        for number, text in zip(numbers, profiles[2::2], strict=True):
            line = re.search(r"^Domains: (.*)\.$", text, re.MULTILINE)
            domains = [d.strip().lower() for d in line.group(1).split(",")] if line else []
            matches = sum(1 for d in domains if d in keywords)
            general = 0.5 if any("general" in d for d in domains) else 0.0
            scored.append((-(matches + general), number))
        rng = _rng(self.seed, self.spec.id, question, "select")
        if rng.random() < self.spec.select_skill:
            picks = [n for _, n in sorted(scored)[:k]]
            reasons = [f"simulated: profile {n} matches the question's domain" for n in picks]
        else:
            picks = rng.sample(numbers, k)
            reasons = ["simulated: a random pick"] * k
        return json.dumps({"selected": picks, "reasons": reasons})


def _labelled(prompt: str) -> list[tuple[float, str]]:
    """(relevance, answer letter) of each labelled peer answer in a prompt."""
    found = []
    for relevance, text in _LABELLED.findall(prompt):
        letter = _letter(text)
        if letter is not None:
            found.append((float(relevance), letter))
    return found


# --- A ready pool ------------------------------------------------------------------

STEM = ("stem", "mathematics", "math", "physics", "chemistry", "computer science", "engineering")
HUMANITIES = ("humanities", "history", "philosophy", "law")
SOCIAL = ("social sciences", "economics", "psychology", "politics", "geography", "culture")
MEDICINE = ("medicine", "health", "biology")


def default_specs() -> list[SimAgentSpec]:
    """The simulated pool: four domain experts, a weak and a capable generalist.

    The capable generalist is the largest card, hence GoA's meta model.
    """
    return [
        SimAgentSpec(
            "sim-stem-expert",
            {"stem": 0.85, "math": 0.85},
            default_accuracy=0.5,
            domains=STEM,
            description="A simulated STEM specialist: strong in mathematics and science.",
        ),
        SimAgentSpec(
            "sim-humanities-expert",
            {"humanities": 0.85},
            default_accuracy=0.5,
            domains=HUMANITIES,
            description="A simulated humanities specialist: history, philosophy and law.",
        ),
        SimAgentSpec(
            "sim-social-expert",
            {"social_sciences": 0.85},
            default_accuracy=0.5,
            domains=SOCIAL,
            description="A simulated social-sciences specialist: economics, psychology.",
        ),
        SimAgentSpec(
            "sim-medical-expert",
            {"health": 0.85, "biology": 0.75, "other": 0.6},
            default_accuracy=0.5,
            domains=MEDICINE,
            description="A simulated medical specialist: clinical knowledge and biology.",
        ),
        SimAgentSpec(
            "sim-weak-generalist",
            default_accuracy=0.4,
            parameters_b=3.0,
            description="A simulated small general-purpose model, weak everywhere.",
        ),
        SimAgentSpec(
            "sim-generalist",
            default_accuracy=0.6,
            select_skill=0.9,
            parameters_b=70.0,
            description="A simulated large general-purpose model, fair everywhere.",
        ),
    ]


def simulated_pool(
    samples: Iterable[Sample],
    *,
    seed: int = 0,
    specs: Sequence[SimAgentSpec] | None = None,
) -> tuple[Pool, dict[str, SimulatedAgent]]:
    """A SIMULATED pool over ``samples``: its cards and their agents, by id.

    Pass both to :class:`~goa.pipeline.GraphOfAgents` as
    ``GraphOfAgents(pool, backends=agents)``. ``specs`` defaults to
    :func:`default_specs`.
    """
    key = answer_key(samples)
    chosen = list(specs) if specs is not None else default_specs()
    agents = {spec.id: SimulatedAgent(spec, key, seed=seed) for spec in chosen}
    pool = Pool("simulated", tuple(spec.card() for spec in chosen), "Simulated agents (tests).")
    return pool, agents
