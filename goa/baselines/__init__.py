"""The methods GoA is evaluated against, all behind :class:`~goa.eval.method.Method`.

- :class:`SingleModel`: one agent answers (1 call).
- :class:`MixtureOfAgents`: layered proposers and an aggregator (p * L + 1 calls).
- :class:`SelfMoA`: one model sampled n times, then aggregated (n + 1 calls).
- :class:`MajorityVote`: n agents answer, the plurality final answer wins (n calls).
- :class:`GoAMethod`: a :class:`~goa.pipeline.GraphOfAgents` run as a method.
- :func:`random_goa`: GoA with random agent selection (ablation).

The call-and-record logic they share is in :mod:`goa.baselines.calls`.
"""

from goa.baselines.calls import Agents, Session
from goa.baselines.goa_method import GoAMethod, RandomGoA, random_goa
from goa.baselines.methods import MajorityVote, MixtureOfAgents, SelfMoA, SingleModel

__all__ = [
    "Agents",
    "GoAMethod",
    "MajorityVote",
    "MixtureOfAgents",
    "RandomGoA",
    "SelfMoA",
    "Session",
    "SingleModel",
    "random_goa",
]
