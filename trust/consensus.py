"""Commit-reveal, stake-weighted consensus on one piece of a trace, with tier escalation.

Commitments
-----------
An auditor first publishes only a hash of its vote, and shows the vote itself once nobody can
commit any more; nobody can copy another's vote or follow the crowd.  The commitment is the
lowercase hex SHA-256 of the bytes::

    utf8(segment_id) || b"|" || utf8(auditor_id) || b"|" || ascii(vote) || b"|" || salt

where ``vote`` is ``"valid"``, ``"invalid"`` or ``"abstain"`` and ``salt`` is the *raw* bytes
of the hex salt (at least :data:`SALT_BYTES` = 16 bytes, from :func:`new_salt`).  Segment and
auditor ids must be non-empty and must not contain ``"|"``, so the fields before the salt
split unambiguously (the salt, last, may hold any byte).

Phases, in logical ticks
------------------------
A :class:`CommitRevealRound` opened at tick ``t0`` of a shared :class:`Clock` accepts commits
while ``now < t0 + commit_ticks`` (the commit deadline) and reveals while
``commit deadline <= now < commit deadline + reveal_ticks`` (the reveal deadline); it can be
closed once ``now >= reveal deadline``.  Nothing sleeps: callers advance the clock.

Rejections (each is a :class:`Fault`, appended to the ledger)
-------------------------------------------------------------
=========================  =======================================================  =========
fault                      when                                                     penalty
=========================  =======================================================  =========
``double_commit``          a second commit by an auditor that already committed    F x lock
``early_reveal``           a reveal before the commit deadline (it leaks the vote)  F x lock
``bad_reveal``             vote and salt do not hash to the commitment, or the      F x lock
                           salt is shorter than 16 bytes
``late_reveal``            a reveal at or after the reveal deadline                 F x lock
``missing_reveal``         a committed auditor never revealed (found at close)      F x lock
``reveal_without_commit``  a committee member reveals but never committed           F x min
``late_commit``            a commit at or after the commit deadline                 none
``repeated_reveal``        a second reveal after an accepted one                    none
=========================  =======================================================  =========

``F`` is ``ConsensusParams.fault_slash_bp / 10_000``; "lock" is the stake the auditor locked
when it committed; "min" is the tier's ``min_stake``, taken from the free balance (capped at
what is there) because nothing is locked.  A penalised auditor is *disqualified*: its vote, if
any, is dropped and later messages from it are refused without a further penalty.  Late
commits and repeated reveals cost nothing: nothing was at stake or nothing changed.  Messages
from auditors outside the committee, malformed commitments, stakes below ``min_stake`` and
actions on a closed round raise :class:`ConsensusError` (they are the caller's mistakes, not an
auditor's); an overdraft raises the book's :class:`trust.stakes.InsufficientStakeError`.

Tally, quorum, margin
---------------------
Only accepted reveals count.  ``valid`` and ``invalid`` votes weigh their locked stake;
``abstain`` weighs nothing.  A round decides when its *decisive* votes (valid + invalid) reach
the tier's quorum (``quorum_stake`` units and ``quorum_auditors`` auditors) and the winning
side leads by the margin: ``(W - L) * 10_000 >= margin_bp * (W + L)`` with ``W > L``.

Escalation (:meth:`ConsensusEngine.audit`, :meth:`ConsensusEngine.audit_async`)
--------------------------------------------------------------------------------
1. A computational verdict that is not ``abstain`` decides on its own: no vote, no fee, no stake.
2. Otherwise the requester pays ``fee`` into the piece's escrow pool and the LLM committee
   votes.  If it decides, that is the decision.
3. If it does not (quorum or margin missed), the human committee votes; its decision is final,
   and if it does not decide either the piece is ``undecided``.

The sequence is written once (``ConsensusEngine._escalate``, a generator that asks for a
tier's ballots only when escalation reaches it) and driven two ways:
:meth:`~ConsensusEngine.audit` takes ballots already cast (the human ones may be a callable),
and :meth:`~ConsensusEngine.audit_async` awaits one callable per tier, so that auditors who
judge asynchronously (models, people) are asked only when their tier is reached.  With
``audit_async(human_round=None)`` there is no human tier: an undecided LLM round is final.

Settlement
----------
All rounds of a piece are settled together against the *final* decision, so an LLM auditor that
was outvoted by humans is judged by what the humans found.  Losers (decisive votes against the
decision) are slashed ``wrong_slash_bp / 10_000`` of their lock into the pool.  The pool (fee +
fault penalties + losers' slashes) is then shared by the winners in proportion to their locked
stake, rounded down; the rounding dust goes to the treasury.  Abstainers neither gain nor lose.
If the piece ends undecided nobody is slashed for a wrong vote, the fee goes back to the
requester and fault penalties go to the treasury.  All locks are then released.  Every commit,
reveal, fault, tally, stake change and the final verdict are appended to the ledger when one is
given; :attr:`Outcome.entries` lists their indexes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, TypeAlias

from goa.errors import GoaError
from trust.ledger import Ledger
from trust.stakes import StakeBook, StakeChange
from trust.verdict import Tier, Verdict, Vote

__all__ = [
    "BP",
    "SALT_BYTES",
    "Ballot",
    "BallotSource",
    "Clock",
    "CommitRevealRound",
    "ConsensusEngine",
    "ConsensusError",
    "ConsensusParams",
    "Decision",
    "Fault",
    "FaultKind",
    "Outcome",
    "Phase",
    "Receipt",
    "RoundResult",
    "Tally",
    "TierRules",
    "commitment",
    "commitment_bytes",
    "new_salt",
]

BP: Final = 10_000
"""Basis points: fractions are integers out of 10,000 so that every amount stays an int."""

SALT_BYTES: Final = 16
"""The least number of random salt bytes a commitment must use."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


class ConsensusError(GoaError):
    """A consensus call was misused: outsider, malformed message, closed round, bad params."""


class Decision(StrEnum):
    """What the audit of one piece concluded."""

    VALID = "valid"
    INVALID = "invalid"
    UNDECIDED = "undecided"


class FaultKind(StrEnum):
    """Why a commit or reveal was rejected (see the module docstring's table)."""

    DOUBLE_COMMIT = "double_commit"
    EARLY_REVEAL = "early_reveal"
    BAD_REVEAL = "bad_reveal"
    LATE_REVEAL = "late_reveal"
    MISSING_REVEAL = "missing_reveal"
    REVEAL_WITHOUT_COMMIT = "reveal_without_commit"
    LATE_COMMIT = "late_commit"
    REPEATED_REVEAL = "repeated_reveal"

    @property
    def penalised(self) -> bool:
        """Whether this fault costs stake and disqualifies the auditor."""
        return self not in (FaultKind.LATE_COMMIT, FaultKind.REPEATED_REVEAL)


class Phase(StrEnum):
    """Where a round stands at the current tick."""

    COMMIT = "commit"
    REVEAL = "reveal"
    ENDED = "ended"
    """The reveal deadline has passed; the round may be closed."""
    CLOSED = "closed"


# ---------------------------------------------------------------------- commitments


def new_salt() -> str:
    """A fresh salt: :data:`SALT_BYTES` bytes from :mod:`secrets`, as lowercase hex."""
    return secrets.token_hex(SALT_BYTES)


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or "|" in value:
        raise ConsensusError(f"{what} must be a non-empty string without '|': {value!r}")


def _salt_bytes(salt: str) -> bytes | None:
    """The raw salt, or ``None`` when it is not hex or shorter than :data:`SALT_BYTES`."""
    try:
        raw = bytes.fromhex(salt)
    except (ValueError, TypeError):
        return None
    return raw if len(raw) >= SALT_BYTES else None


def commitment_bytes(segment_id: str, auditor_id: str, vote: Vote, salt: str) -> bytes:
    """The exact bytes that are hashed into a commitment (see the module docstring)."""
    _check_id("segment id", segment_id)
    _check_id("auditor id", auditor_id)
    raw = _salt_bytes(salt)
    if raw is None:
        raise ConsensusError(f"a salt must be hex of at least {SALT_BYTES} bytes")
    return b"|".join(
        (segment_id.encode("utf-8"), auditor_id.encode("utf-8"), Vote(vote).value.encode(), raw)
    )


def commitment(segment_id: str, auditor_id: str, vote: Vote, salt: str) -> str:
    """``sha256(commitment_bytes(...))`` as 64 lowercase hex digits."""
    return hashlib.sha256(commitment_bytes(segment_id, auditor_id, vote, salt)).hexdigest()


# ---------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class TierRules:
    """How one staked tier votes.

    ``min_stake``: least stake one vote must lock.  ``quorum_stake`` / ``quorum_auditors``: least
    decisive (valid + invalid) stake and number of auditors.  ``margin_bp``: least lead of the
    winning side, in basis points of the decisive stake.
    """

    min_stake: int = 1_000
    quorum_stake: int = 5_000
    quorum_auditors: int = 5
    margin_bp: int = 3_000

    def __post_init__(self) -> None:
        for name in ("min_stake", "quorum_stake", "quorum_auditors", "margin_bp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConsensusError(f"{name} must be an int >= 0: {value!r}")
        if self.min_stake < 1 or self.margin_bp > BP:
            raise ConsensusError("min_stake must be >= 1 and margin_bp <= 10000")


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    """Parameters of the whole protocol (amounts in stake units, fractions in basis points)."""

    llm: TierRules = field(default_factory=TierRules)
    human: TierRules = field(
        default_factory=lambda: TierRules(
            min_stake=5_000, quorum_stake=15_000, quorum_auditors=3, margin_bp=1_000
        )
    )
    fee: int = 2_000
    """Paid by the requester into the pool of every piece that goes to a stake vote."""
    wrong_slash_bp: int = 1_000
    """Share of its lock a decisive vote against the final decision loses (s in the docs)."""
    fault_slash_bp: int = 5_000
    """Share of its lock a penalised fault loses."""
    commit_ticks: int = 2
    reveal_ticks: int = 2

    def __post_init__(self) -> None:
        for name in ("fee", "wrong_slash_bp", "fault_slash_bp", "commit_ticks", "reveal_ticks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConsensusError(f"{name} must be an int >= 0: {value!r}")
        if self.wrong_slash_bp > BP or self.fault_slash_bp > BP:
            raise ConsensusError("slash fractions must be <= 10000 basis points")
        if self.commit_ticks < 1 or self.reveal_ticks < 1:
            raise ConsensusError("each phase must last at least one tick")

    def rules(self, tier: Tier) -> TierRules:
        """The rules of a staked tier (``llm`` or ``human``)."""
        if tier is Tier.LLM:
            return self.llm
        if tier is Tier.HUMAN:
            return self.human
        raise ConsensusError("the computational tier does not vote with stake")


class Clock:
    """Logical time in ticks, shared by the rounds of one engine."""

    def __init__(self, start: int = 0) -> None:
        self.now = start

    def advance(self, ticks: int = 1) -> int:
        """Move time forward by ``ticks`` (>= 0) and return the new tick."""
        if ticks < 0:
            raise ConsensusError("time only moves forward")
        self.now += ticks
        return self.now


# ---------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Fault:
    """A rejected commit or reveal and what it cost."""

    auditor: str
    kind: FaultKind
    tick: int
    penalty: int
    entry: int | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """The answer to one commit or reveal: accepted, or rejected with its fault.

    ``fault`` is ``None`` on a rejection only for an auditor already disqualified.
    """

    accepted: bool
    fault: Fault | None = None
    entry: int | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    """Stake-weighted counts of the accepted reveals of one round."""

    valid_stake: int = 0
    invalid_stake: int = 0
    abstain_stake: int = 0
    valid_count: int = 0
    invalid_count: int = 0
    abstain_count: int = 0

    @property
    def decisive_stake(self) -> int:
        """Valid plus invalid stake (abstentions excluded)."""
        return self.valid_stake + self.invalid_stake

    @property
    def decisive_count(self) -> int:
        return self.valid_count + self.invalid_count

    @property
    def margin_bp(self) -> int:
        """``|valid - invalid| / (valid + invalid)`` in basis points, rounded down (0 if none)."""
        total = self.decisive_stake
        return abs(self.valid_stake - self.invalid_stake) * BP // total if total else 0

    def record(self) -> dict[str, int]:
        return {
            "valid_stake": self.valid_stake,
            "invalid_stake": self.invalid_stake,
            "abstain_stake": self.abstain_stake,
            "valid_count": self.valid_count,
            "invalid_count": self.invalid_count,
            "abstain_count": self.abstain_count,
        }


@dataclass(frozen=True, slots=True)
class RoundResult:
    """A closed round: its tally, whether it decided, and who locked and voted what."""

    audit_id: str
    segment_id: str
    tier: Tier
    lock_purpose: str
    tally: Tally
    quorum_met: bool
    margin_met: bool
    decision: Decision
    stakes: dict[str, int]
    """Stake each auditor locked when it committed (disqualified ones included)."""
    votes: dict[str, Vote]
    """The accepted reveals of auditors that were not disqualified."""
    faults: tuple[Fault, ...]
    entries: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Ballot:
    """How one auditor takes part in :meth:`ConsensusEngine.audit`: commit at the round's
    opening tick, reveal at the commit deadline unless ``reveal`` is false.  ``salt=None``
    draws one with :func:`new_salt`."""

    auditor: str
    vote: Vote
    stake: int
    salt: str | None = None
    reveal: bool = True


@dataclass(frozen=True, slots=True)
class Outcome:
    """The audit of one piece: decision, deciding tier, tallies, money flows, ledger entries."""

    audit_id: str
    segment_id: str
    decision: Decision
    tier: Tier
    """The tier that decided, or the last one tried when undecided."""
    path: tuple[Tier, ...]
    """Tiers tried, in order (``(computational,)``, ``(llm,)`` or ``(llm, human)``)."""
    rounds: tuple[RoundResult, ...]
    fee: int
    rewards: dict[str, int]
    """Units paid to each winner out of the pool."""
    slashes: dict[str, int]
    """Units each auditor lost: fault penalties plus wrong-side slashes."""
    refund: int
    dust: int
    """Pool left after the pro-rata shares (rounding), or fault penalties nobody won."""
    entries: tuple[int, ...]

    @property
    def escalated(self) -> bool:
        return Tier.HUMAN in self.path

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(f for r in self.rounds for f in r.faults)

    def net(self, auditor: str) -> int:
        """What ``auditor`` gained (positive) or lost on this piece."""
        return self.rewards.get(auditor, 0) - self.slashes.get(auditor, 0)


# ---------------------------------------------------------------------- one round


class CommitRevealRound:
    """One committee's commit-reveal vote on one piece (see the module docstring).

    Stake is locked from the book at commit under :attr:`lock_purpose`; fault penalties go to
    the escrow pool ``audit_id``.  :meth:`close` tallies; settling and releasing the locks is
    the engine's job (:meth:`ConsensusEngine.settle`).
    """

    def __init__(
        self,
        book: StakeBook,
        params: ConsensusParams,
        *,
        segment_id: str,
        tier: Tier,
        committee: Iterable[str],
        audit_id: str,
        clock: Clock,
        ledger: Ledger | None = None,
    ) -> None:
        _check_id("segment id", segment_id)
        self._rules = params.rules(tier)
        self._book = book
        self._params = params
        self.segment_id = segment_id
        self.tier = tier
        self.audit_id = audit_id
        self.lock_purpose = f"{audit_id}/{tier.value}"
        self.committee = frozenset(committee)
        for auditor in self.committee:
            _check_id("auditor id", auditor)
        self._clock = clock
        self._ledger = ledger
        self.opened_at = clock.now
        self.commit_deadline = self.opened_at + params.commit_ticks
        self.reveal_deadline = self.commit_deadline + params.reveal_ticks
        self._commitments: dict[str, str] = {}
        self._stakes: dict[str, int] = {}
        self._votes: dict[str, Vote] = {}
        self._disqualified: set[str] = set()
        self._faults: list[Fault] = []
        self._entries: list[int] = []
        self._closed = False

    @property
    def now(self) -> int:
        return self._clock.now

    @property
    def phase(self) -> Phase:
        if self._closed:
            return Phase.CLOSED
        if self.now < self.commit_deadline:
            return Phase.COMMIT
        return Phase.REVEAL if self.now < self.reveal_deadline else Phase.ENDED

    def advance(self, ticks: int = 1) -> int:
        """Advance the shared clock."""
        return self._clock.advance(ticks)

    # ------------------------------------------------------------------ messages

    def commit(self, auditor: str, digest: str, stake: int) -> Receipt:
        """Commit ``digest`` (from :func:`commitment`) and lock ``stake`` from the book."""
        self._usable(auditor)
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ConsensusError("a commitment is 64 lowercase hex digits")
        if isinstance(stake, bool) or not isinstance(stake, int) or stake < self._rules.min_stake:
            raise ConsensusError(f"stake must be an int >= {self._rules.min_stake}: {stake!r}")
        if auditor in self._disqualified:
            return Receipt(False)
        if auditor in self._commitments:
            return self._fault(auditor, FaultKind.DOUBLE_COMMIT)
        if self.now >= self.commit_deadline:
            return self._fault(auditor, FaultKind.LATE_COMMIT)
        change = self._book.lock(auditor, stake, self.lock_purpose)
        self._commitments[auditor] = digest
        self._stakes[auditor] = stake
        self._note(change)
        entry = self._append(
            {"kind": "commit", "auditor": auditor, "commitment": digest, "stake": stake}
        )
        return Receipt(True, None, entry)

    def reveal(self, auditor: str, vote: Vote, salt: str) -> Receipt:
        """Reveal ``vote`` and ``salt``; accepted only if they hash to the commitment in time."""
        self._usable(auditor)
        try:
            vote = Vote(vote)
        except ValueError:
            raise ConsensusError(f"not a vote: {vote!r}") from None
        if auditor in self._disqualified:
            return Receipt(False)
        if auditor not in self._commitments:
            return self._fault(auditor, FaultKind.REVEAL_WITHOUT_COMMIT)
        if auditor in self._votes:
            return self._fault(auditor, FaultKind.REPEATED_REVEAL)
        if self.now < self.commit_deadline:
            return self._fault(auditor, FaultKind.EARLY_REVEAL)
        if self.now >= self.reveal_deadline:
            return self._fault(auditor, FaultKind.LATE_REVEAL)
        raw = _salt_bytes(salt) if isinstance(salt, str) else None
        if raw is None or not self._matches(auditor, vote, raw):
            return self._fault(auditor, FaultKind.BAD_REVEAL)
        self._votes[auditor] = vote
        entry = self._append(
            {"kind": "reveal", "auditor": auditor, "vote": vote.value, "salt": salt}
        )
        return Receipt(True, None, entry)

    def close(self) -> RoundResult:
        """End the round (at or after the reveal deadline): penalise missing reveals, tally."""
        if self._closed:
            raise ConsensusError("the round is already closed")
        if self.now < self.reveal_deadline:
            raise ConsensusError(
                f"the round cannot close before tick {self.reveal_deadline} (now {self.now})"
            )
        for auditor in list(self._commitments):
            if auditor not in self._votes and auditor not in self._disqualified:
                self._fault(auditor, FaultKind.MISSING_REVEAL)
        self._closed = True
        tally = _tally(self._votes, self._stakes)
        rules = self._rules
        quorum = (
            tally.decisive_stake >= rules.quorum_stake
            and tally.decisive_count >= rules.quorum_auditors
        )
        high = max(tally.valid_stake, tally.invalid_stake)
        low = min(tally.valid_stake, tally.invalid_stake)
        margin = high > low and (high - low) * BP >= rules.margin_bp * (high + low)
        decision = Decision.UNDECIDED
        if quorum and margin:
            decision = (
                Decision.VALID if tally.valid_stake > tally.invalid_stake else Decision.INVALID
            )
        self._append(
            {
                "kind": "tally",
                **tally.record(),
                "quorum_met": quorum,
                "margin_met": margin,
                "decision": decision.value,
            }
        )
        return RoundResult(
            audit_id=self.audit_id,
            segment_id=self.segment_id,
            tier=self.tier,
            lock_purpose=self.lock_purpose,
            tally=tally,
            quorum_met=quorum,
            margin_met=margin,
            decision=decision,
            stakes=dict(self._stakes),
            votes=dict(self._votes),
            faults=tuple(self._faults),
            entries=tuple(self._entries),
        )

    # ------------------------------------------------------------------ helpers

    def _matches(self, auditor: str, vote: Vote, salt: bytes) -> bool:
        data = b"|".join(
            (self.segment_id.encode("utf-8"), auditor.encode("utf-8"), vote.value.encode(), salt)
        )
        return hashlib.sha256(data).hexdigest() == self._commitments[auditor]

    def _usable(self, auditor: str) -> None:
        if self._closed:
            raise ConsensusError("the round is closed")
        if auditor not in self.committee:
            raise ConsensusError(f"{auditor!r} is not on this round's committee")

    def _fault(self, auditor: str, kind: FaultKind) -> Receipt:
        penalty = 0
        if kind.penalised:
            fraction = self._params.fault_slash_bp
            if auditor in self._stakes:
                locked = self._book.locked(auditor, self.lock_purpose)
                penalty = self._stakes[auditor] * fraction // BP
                penalty = min(penalty, locked)
                self._note(self._book.slash(auditor, penalty, self.lock_purpose, self.audit_id))
            else:
                penalty = min(self._rules.min_stake * fraction // BP, self._book.free(auditor))
                self._note(self._book.slash_free(auditor, penalty, self.audit_id))
            self._disqualified.add(auditor)
            self._votes.pop(auditor, None)
        entry = self._append(
            {"kind": "fault", "auditor": auditor, "fault": kind.value, "penalty": penalty}
        )
        fault = Fault(auditor, kind, self.now, penalty, entry)
        self._faults.append(fault)
        return Receipt(False, fault, entry)

    def _note(self, change: StakeChange) -> None:
        if change.entry is not None:
            self._entries.append(change.entry)

    def _append(self, record: dict[str, Any]) -> int | None:
        if self._ledger is None:
            return None
        full = {
            **record,
            "audit": self.audit_id,
            "segment": self.segment_id,
            "tier": self.tier.value,
            "tick": self.now,
        }
        index = self._ledger.append(full).index
        self._entries.append(index)
        return index


def _tally(votes: dict[str, Vote], stakes: dict[str, int]) -> Tally:
    sums = {Vote.VALID: 0, Vote.INVALID: 0, Vote.ABSTAIN: 0}
    counts = {Vote.VALID: 0, Vote.INVALID: 0, Vote.ABSTAIN: 0}
    for auditor, vote in votes.items():
        sums[vote] += stakes[auditor]
        counts[vote] += 1
    return Tally(
        sums[Vote.VALID],
        sums[Vote.INVALID],
        sums[Vote.ABSTAIN],
        counts[Vote.VALID],
        counts[Vote.INVALID],
        counts[Vote.ABSTAIN],
    )


# ---------------------------------------------------------------------- the engine

BallotSource: TypeAlias = Callable[[], Awaitable[Sequence[Ballot]]]
"""What :meth:`ConsensusEngine.audit_async` awaits for one tier's ballots."""

_Escalation: TypeAlias = Generator[Tier, Sequence[Ballot] | None, Outcome]


class ConsensusEngine:
    """Runs audits of pieces over one :class:`StakeBook`, one :class:`Clock` and an optional
    ledger: escalation, settlement, ledger records (see the module docstring)."""

    def __init__(
        self,
        book: StakeBook,
        params: ConsensusParams | None = None,
        *,
        ledger: Ledger | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.book = book
        self.params = params or ConsensusParams()
        self.ledger = ledger
        self.clock = clock or Clock()
        self._audits = 0

    def new_audit_id(self, segment_id: str) -> str:
        """A unique id for one audit of ``segment_id`` (its escrow pool's name)."""
        _check_id("segment id", segment_id)
        self._audits += 1
        return f"{segment_id}#{self._audits}"

    def open_round(
        self, segment_id: str, tier: Tier, committee: Iterable[str], *, audit_id: str
    ) -> CommitRevealRound:
        """A round of ``tier`` opening now, whose penalties go to the pool ``audit_id``."""
        return CommitRevealRound(
            self.book,
            self.params,
            segment_id=segment_id,
            tier=tier,
            committee=committee,
            audit_id=audit_id,
            clock=self.clock,
            ledger=self.ledger,
        )

    def run_round(
        self, segment_id: str, tier: Tier, ballots: Sequence[Ballot], *, audit_id: str
    ) -> RoundResult:
        """Open a round for ``ballots``' auditors, commit all, reveal at the commit deadline,
        close at the reveal deadline.  A ballot repeated for one auditor is a double commit."""
        rnd = self.open_round(
            segment_id, tier, dict.fromkeys(b.auditor for b in ballots), audit_id=audit_id
        )
        salts: dict[str, tuple[Vote, str]] = {}
        for ballot in ballots:
            salt = ballot.salt if ballot.salt is not None else new_salt()
            digest = commitment(segment_id, ballot.auditor, ballot.vote, salt)
            if rnd.commit(ballot.auditor, digest, ballot.stake).accepted and ballot.reveal:
                salts[ballot.auditor] = (ballot.vote, salt)
        self.clock.advance(rnd.commit_deadline - self.clock.now)
        for auditor, (vote, salt) in salts.items():
            rnd.reveal(auditor, vote, salt)
        self.clock.advance(rnd.reveal_deadline - self.clock.now)
        return rnd.close()

    def audit(
        self,
        segment_id: str,
        *,
        requester: str,
        computational: Verdict | None = None,
        llm: Sequence[Ballot] = (),
        human: Sequence[Ballot] | Callable[[], Sequence[Ballot]] = (),
    ) -> Outcome:
        """Audit one piece through the tiers; ``human`` is only used (or called) on escalation.

        ``requester`` pays the fee when the piece goes to a stake vote.
        """
        steps = self._escalate(segment_id, requester, computational)
        answer: Sequence[Ballot] | None = None
        while True:
            try:
                tier = steps.send(answer)
            except StopIteration as done:
                outcome: Outcome = done.value
                return outcome
            answer = llm if tier is Tier.LLM else (human() if callable(human) else human)

    async def audit_async(
        self,
        segment_id: str,
        *,
        requester: str,
        computational: Verdict | None = None,
        llm_round: BallotSource,
        human_round: BallotSource | None = None,
    ) -> Outcome:
        """:meth:`audit` for auditors that judge asynchronously: ``llm_round`` is awaited for
        the LLM committee's ballots only when the computational verdict does not decide, and
        ``human_round`` for the human committee's only when the LLM round does not decide.
        With ``human_round=None`` there is no human tier (an undecided LLM round is final).
        Same decisions, stake changes and ledger records as :meth:`audit` given the same
        ballots."""
        steps = self._escalate(segment_id, requester, computational)
        answer: Sequence[Ballot] | None = None
        while True:
            try:
                tier = steps.send(answer)
            except StopIteration as done:
                outcome: Outcome = done.value
                return outcome
            if tier is Tier.LLM:
                answer = await llm_round()
            else:
                answer = None if human_round is None else await human_round()

    def _escalate(
        self, segment_id: str, requester: str, computational: Verdict | None
    ) -> _Escalation:
        """The escalation sequence (see the module docstring), written once for :meth:`audit`
        and :meth:`audit_async`: it yields the tier whose ballots it needs next and is sent
        them back (``None`` for the human tier: there is none), and returns the outcome."""
        audit_id = self.new_audit_id(segment_id)
        if computational is not None and computational.vote is not Vote.ABSTAIN:
            return self._computational(audit_id, segment_id, computational)
        fee_change = self.book.pay_in(requester, self.params.fee, audit_id)
        llm = yield Tier.LLM
        rounds = [self.run_round(segment_id, Tier.LLM, llm or (), audit_id=audit_id)]
        if rounds[0].decision is Decision.UNDECIDED:
            human = yield Tier.HUMAN
            if human is not None:
                rounds.append(self.run_round(segment_id, Tier.HUMAN, human, audit_id=audit_id))
        return self.settle(audit_id, segment_id, requester, rounds, fee_change=fee_change)

    def _computational(self, audit_id: str, segment_id: str, verdict: Verdict) -> Outcome:
        """The outcome of a piece the computational verdict decides: no vote, fee or stake."""
        decision = Decision(verdict.vote.value)
        entries: list[int] = []
        if self.ledger is not None:
            entries.append(
                self.ledger.append(
                    {
                        "kind": "verdict",
                        "audit": audit_id,
                        "segment": segment_id,
                        "decision": decision.value,
                        "tier": Tier.COMPUTATIONAL.value,
                        "path": [Tier.COMPUTATIONAL.value],
                        "reason": verdict.reason,
                        "tick": self.clock.now,
                    }
                ).index
            )
        return Outcome(
            audit_id=audit_id,
            segment_id=segment_id,
            decision=decision,
            tier=Tier.COMPUTATIONAL,
            path=(Tier.COMPUTATIONAL,),
            rounds=(),
            fee=0,
            rewards={},
            slashes={},
            refund=0,
            dust=0,
            entries=tuple(entries),
        )

    def settle(
        self,
        audit_id: str,
        segment_id: str,
        requester: str,
        rounds: Sequence[RoundResult],
        *,
        fee_change: StakeChange | None = None,
    ) -> Outcome:
        """Settle every round of one piece against the last round's decision (see the module
        docstring), release all locks, and append the verdict record."""
        if not rounds:
            raise ConsensusError("nothing to settle: no rounds")
        book = self.book
        decision = rounds[-1].decision
        changes: list[StakeChange] = [] if fee_change is None else [fee_change]
        entries = [e for r in rounds for e in r.entries]
        slashes: dict[str, int] = {}
        for r in rounds:
            for fault in r.faults:
                if fault.penalty:
                    slashes[fault.auditor] = slashes.get(fault.auditor, 0) + fault.penalty
        rewards: dict[str, int] = {}
        refund = 0
        if decision is Decision.UNDECIDED:
            refund = min(fee_change.amount if fee_change else 0, book.escrow(audit_id))
            changes.append(book.pay_out(requester, refund, audit_id, op="refund"))
        else:
            right = Vote(decision.value)
            winners: list[tuple[str, int]] = []
            for r in rounds:
                for auditor, vote in r.votes.items():
                    stake = r.stakes[auditor]
                    if vote is right:
                        winners.append((auditor, stake))
                    elif vote is not Vote.ABSTAIN:
                        cut = stake * self.params.wrong_slash_bp // BP
                        changes.append(book.slash(auditor, cut, r.lock_purpose, audit_id))
                        slashes[auditor] = slashes.get(auditor, 0) + cut
            pool = book.escrow(audit_id)
            total = sum(stake for _, stake in winners)
            for auditor, stake in winners if total else ():
                share = pool * stake // total
                changes.append(book.pay_out(auditor, share, audit_id))
                rewards[auditor] = rewards.get(auditor, 0) + share
        for r in rounds:
            for auditor in r.stakes:
                changes.append(book.release(auditor, r.lock_purpose))
        swept = book.sweep(audit_id)
        changes.append(swept)
        dust = swept.amount
        entries = sorted(entries + [c.entry for c in changes if c.entry is not None])
        last = rounds[-1]
        outcome = Outcome(
            audit_id=audit_id,
            segment_id=segment_id,
            decision=decision,
            tier=last.tier,
            path=tuple(r.tier for r in rounds),
            rounds=tuple(rounds),
            fee=fee_change.amount if fee_change else 0,
            rewards=rewards,
            slashes=slashes,
            refund=refund,
            dust=dust,
            entries=tuple(entries),
        )
        if self.ledger is not None:
            entry = self.ledger.append(_verdict_record(outcome, self.clock.now))
            outcome = replace(outcome, entries=(*outcome.entries, entry.index))
        return outcome


def _verdict_record(outcome: Outcome, tick: int) -> dict[str, Any]:
    return {
        "kind": "verdict",
        "audit": outcome.audit_id,
        "segment": outcome.segment_id,
        "decision": outcome.decision.value,
        "tier": outcome.tier.value,
        "path": [t.value for t in outcome.path],
        "fee": outcome.fee,
        "rewards": dict(outcome.rewards),
        "slashes": dict(outcome.slashes),
        "refund": outcome.refund,
        "dust": outcome.dust,
        "tick": tick,
    }
