"""Methods named in a command line or a config file, built for a pool.

A :class:`MethodSpec` says which method and with which settings; :func:`build_method`
turns it into a :class:`~goa.eval.method.Method`. Defaults follow the papers:
GoA k=3 with max pooling; single model = the pool's largest card; MoA = every
agent proposes for 2 layers, the largest aggregates; Self-MoA = the largest card
sampled 4 times; majority vote = every agent of the pool. Evaluation runs use
the response cache unless told not to.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from goa.baselines import (
    GoAMethod,
    MajorityVote,
    MixtureOfAgents,
    SelfMoA,
    SingleModel,
    random_goa,
)
from goa.errors import ConfigError
from goa.eval.method import Method
from goa.pipeline import GraphOfAgents, largest_card
from goa.pools import Pool

MethodName = Literal["goa", "goa-random", "single", "moa", "self-moa", "vote"]


class MethodSpec(BaseModel):
    """One method and its settings (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: MethodName
    name: str | None = None
    k: int = Field(default=3, ge=1)
    pooling: Literal["max", "mean"] = "max"
    selector: Literal["llm", "embedding", "all", "profile"] = "llm"
    judge: Literal["prompt", "likelihood", "auto"] = "prompt"
    early_exit: bool | Literal["all", "majority"] = False
    structured: bool = False
    rounds: int = Field(default=1, ge=1)
    model: str | None = None
    proposers: tuple[str, ...] = ()
    aggregator: str | None = None
    layers: int = Field(default=2, ge=1)
    samples: int = Field(default=4, ge=1)
    seed: int = 0
    max_tokens: int = Field(default=512, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    cache: bool = True

    @property
    def label(self) -> str:
        return self.name or self.method


def build_method(spec: MethodSpec, pool: Pool) -> Method:
    """The method ``spec`` describes, over ``pool``."""
    ids = [card.id for card in pool.cards]
    top = largest_card(pool.cards).id
    tokens, timeout, cache = spec.max_tokens, spec.timeout_s, spec.cache
    if spec.method in ("goa", "goa-random"):
        options = {
            "pooling": spec.pooling,
            "early_exit": spec.early_exit,
            "structured": spec.structured,
            "rounds": spec.rounds,
            "judge": spec.judge,
            "max_tokens": tokens,
            "timeout_s": timeout,
            "cache": cache,
        }
        if spec.method == "goa-random":
            return random_goa(pool, spec.k, seed=spec.seed, **options)
        graph = GraphOfAgents(pool, k=spec.k, selector=spec.selector, **options)  # type: ignore[arg-type]
        return GoAMethod(graph, name=spec.label)
    if spec.method == "single":
        return SingleModel(
            spec.model or top,
            name=spec.name,
            pool=pool,
            max_tokens=tokens,
            timeout_s=timeout,
            cache=cache,
        )
    if spec.method == "moa":
        return MixtureOfAgents(
            spec.proposers or ids,
            spec.aggregator or top,
            layers=spec.layers,
            name=spec.label,
            pool=pool,
            max_tokens=tokens,
            timeout_s=timeout,
            cache=cache,
        )
    if spec.method == "self-moa":
        return SelfMoA(
            spec.model or top,
            samples=spec.samples,
            aggregator=spec.aggregator,
            name=spec.label,
            pool=pool,
            max_tokens=tokens,
            timeout_s=timeout,
            cache=cache,
        )
    return MajorityVote(
        spec.proposers or ids,
        name=spec.label,
        pool=pool,
        max_tokens=tokens,
        timeout_s=timeout,
        cache=cache,
    )


def method_spec(**options: object) -> MethodSpec:
    """A spec from command-line options; a bad value names the option."""
    try:
        return MethodSpec.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "?"
        raise ConfigError(f"--{field.replace('_', '-')}", error["msg"]) from None


def load_method_specs(path: Path) -> list[MethodSpec]:
    """``[[methods]]`` tables of a TOML file, each a :class:`MethodSpec`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), str(exc)) from None
    tables = data.get("methods")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(str(path), "no [[methods]] tables")
    specs = []
    for index, table in enumerate(tables, 1):
        try:
            specs.append(MethodSpec.model_validate(table))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "?"
            raise ConfigError(f"{path} (methods #{index}, {field})", error["msg"]) from None
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(str(path), "two methods share a name: give each a distinct `name`")
    return specs
