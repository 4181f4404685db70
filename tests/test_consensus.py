"""Tests for trust.consensus: commit-reveal rules, tally, escalation, settlement, ledger."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from trust.consensus import (
    BP,
    Ballot,
    BallotSource,
    Clock,
    CommitRevealRound,
    ConsensusEngine,
    ConsensusError,
    ConsensusParams,
    Decision,
    FaultKind,
    Phase,
    TierRules,
    commitment,
    commitment_bytes,
    new_salt,
)
from trust.ledger import Ledger
from trust.stakes import TREASURY, StakeBook
from trust.verdict import Tier, Verdict, Vote

SALT = "00112233445566778899aabbccddeeff"
FUND = 1_000_000
PARAMS = ConsensusParams(
    llm=TierRules(min_stake=100, quorum_stake=300, quorum_auditors=3, margin_bp=3_000),
    human=TierRules(min_stake=100, quorum_stake=200, quorum_auditors=2, margin_bp=1_000),
    fee=1_000,
    wrong_slash_bp=1_000,
    fault_slash_bp=5_000,
    commit_ticks=2,
    reveal_ticks=3,
)
AUDITORS = [f"a{i}" for i in range(8)]


@pytest.fixture
def book() -> StakeBook:
    book = StakeBook()
    for account in ("req", *AUDITORS):
        book.open(account, FUND)
    return book


@pytest.fixture
def engine(book: StakeBook) -> ConsensusEngine:
    return ConsensusEngine(book, PARAMS)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def _round(engine: ConsensusEngine, committee: Sequence[str] = AUDITORS) -> CommitRevealRound:
    return engine.open_round("seg", Tier.LLM, committee, audit_id="seg#1")


def _commit(rnd: CommitRevealRound, auditor: str, vote: Vote, stake: int = 100) -> None:
    assert rnd.commit(auditor, commitment("seg", auditor, vote, SALT), stake).accepted


def _to_reveal(rnd: CommitRevealRound) -> None:
    rnd.advance(rnd.commit_deadline - rnd.now)
    assert rnd.phase is Phase.REVEAL


def _to_end(rnd: CommitRevealRound) -> None:
    rnd.advance(rnd.reveal_deadline - rnd.now)
    assert rnd.phase is Phase.ENDED


# -------------------------------------------------------------------- commitments


def test_commitment_encoding_is_exact() -> None:
    data = commitment_bytes("s-1", "aud", Vote.INVALID, SALT)
    assert data == b"s-1|aud|invalid|" + bytes.fromhex(SALT)
    assert commitment("s-1", "aud", Vote.INVALID, SALT) == hashlib.sha256(data).hexdigest()
    assert commitment("s-1", "aud", Vote.VALID, SALT) != commitment(
        "s-1", "aud", Vote.INVALID, SALT
    )
    with pytest.raises(ConsensusError):
        commitment("s|1", "aud", Vote.VALID, SALT)
    with pytest.raises(ConsensusError):
        commitment("s", "", Vote.VALID, SALT)
    with pytest.raises(ConsensusError):
        commitment("s", "aud", Vote.VALID, "00" * 15)  # 15 bytes: too short
    with pytest.raises(ConsensusError):
        commitment("s", "aud", Vote.VALID, "zz" * 16)


def test_new_salt_is_16_random_bytes() -> None:
    salts = {new_salt() for _ in range(20)}
    assert len(salts) == 20
    assert all(len(bytes.fromhex(s)) == 16 for s in salts)


# -------------------------------------------------------------------- the round's rules


def test_phases_follow_logical_ticks(engine: ConsensusEngine) -> None:
    rnd = _round(engine)
    assert (rnd.opened_at, rnd.commit_deadline, rnd.reveal_deadline) == (0, 2, 5)
    phases = [rnd.phase]
    for _ in range(5):
        rnd.advance(1)
        phases.append(rnd.phase)
        if rnd.now < 5:
            with pytest.raises(ConsensusError, match="cannot close"):
                rnd.close()
    assert phases == [Phase.COMMIT] * 2 + [Phase.REVEAL] * 3 + [Phase.ENDED]
    rnd.close()
    assert rnd.phase is Phase.CLOSED
    with pytest.raises(ConsensusError):
        rnd.commit("a0", "0" * 64, 100)
    with pytest.raises(ConsensusError):
        rnd.close()
    with pytest.raises(ConsensusError):
        engine.clock.advance(-1)


def test_accepted_commit_locks_stake_and_reveal_counts(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    rnd = _round(engine)
    _commit(rnd, "a0", Vote.VALID, stake=250)
    assert book.locked("a0", rnd.lock_purpose) == 250
    _to_reveal(rnd)
    assert rnd.reveal("a0", Vote.VALID, SALT).accepted
    _to_end(rnd)
    result = rnd.close()
    assert result.votes == {"a0": Vote.VALID}
    assert result.tally.valid_stake == 250
    assert result.faults == ()


def test_misuse_raises(engine: ConsensusEngine) -> None:
    rnd = _round(engine, ["a0"])
    with pytest.raises(ConsensusError, match="committee"):
        rnd.commit("a1", commitment("seg", "a1", Vote.VALID, SALT), 100)
    with pytest.raises(ConsensusError, match="64 lowercase hex"):
        rnd.commit("a0", "abc", 100)
    with pytest.raises(ConsensusError, match="stake"):
        rnd.commit("a0", commitment("seg", "a0", Vote.VALID, SALT), 99)  # below min_stake
    with pytest.raises(ConsensusError):
        engine.open_round("seg", Tier.COMPUTATIONAL, ["a0"], audit_id="x")


def _penalty(stake: int = 100) -> int:
    return stake * PARAMS.fault_slash_bp // BP


def test_double_commit_is_rejected_penalised_and_disqualifies(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    rnd = _round(engine)
    _commit(rnd, "a0", Vote.VALID, stake=200)
    receipt = rnd.commit("a0", commitment("seg", "a0", Vote.INVALID, SALT), 200)
    assert not receipt.accepted
    assert receipt.fault is not None
    assert receipt.fault.kind is FaultKind.DOUBLE_COMMIT
    assert receipt.fault.penalty == _penalty(200) == 100
    assert book.locked("a0", rnd.lock_purpose) == 100
    assert book.escrow("seg#1") == 100
    _to_reveal(rnd)
    later = rnd.reveal("a0", Vote.VALID, SALT)
    assert not later.accepted
    assert later.fault is None
    _to_end(rnd)
    result = rnd.close()
    assert result.votes == {}
    assert [f.kind for f in result.faults] == [FaultKind.DOUBLE_COMMIT]


def test_early_reveal_is_rejected_and_penalised(engine: ConsensusEngine, book: StakeBook) -> None:
    rnd = _round(engine)
    _commit(rnd, "a0", Vote.VALID)
    receipt = rnd.reveal("a0", Vote.VALID, SALT)  # still the commit phase
    assert receipt.fault is not None
    assert receipt.fault.kind is FaultKind.EARLY_REVEAL
    assert receipt.fault.penalty == _penalty()
    assert book.free("a0") == FUND - 100
    _to_reveal(rnd)
    assert not rnd.reveal("a0", Vote.VALID, SALT).accepted


@pytest.mark.parametrize(
    ("vote", "salt"),
    [
        (Vote.INVALID, SALT),  # another vote
        (Vote.VALID, "ff" + SALT[2:]),  # another salt
        (Vote.VALID, SALT[:30]),  # 15 bytes
        (Vote.VALID, "not hex at all"),
    ],
)
def test_reveal_that_does_not_match_is_rejected_and_penalised(
    engine: ConsensusEngine, book: StakeBook, vote: Vote, salt: str
) -> None:
    rnd = _round(engine)
    _commit(rnd, "a0", Vote.VALID)
    _to_reveal(rnd)
    receipt = rnd.reveal("a0", vote, salt)
    assert receipt.fault is not None
    assert receipt.fault.kind is FaultKind.BAD_REVEAL
    assert receipt.fault.penalty == _penalty()
    assert book.escrow("seg#1") == _penalty()
    assert not rnd.reveal("a0", Vote.VALID, SALT).accepted  # disqualified for the round
    _to_end(rnd)
    assert rnd.close().votes == {}


def test_late_reveal_is_rejected_and_penalised(engine: ConsensusEngine) -> None:
    rnd = _round(engine)
    _commit(rnd, "a0", Vote.VALID)
    _to_reveal(rnd)
    _to_end(rnd)
    receipt = rnd.reveal("a0", Vote.VALID, SALT)
    assert receipt.fault is not None
    assert receipt.fault.kind is FaultKind.LATE_REVEAL
    assert receipt.fault.penalty == _penalty()
    result = rnd.close()  # no second (missing-reveal) penalty
    assert [f.kind for f in result.faults] == [FaultKind.LATE_REVEAL]
    assert result.votes == {}


def test_missing_reveal_is_penalised_at_close(engine: ConsensusEngine, book: StakeBook) -> None:
    rnd = _round(engine)
    _commit(rnd, "a0", Vote.VALID)
    _commit(rnd, "a1", Vote.VALID)
    _to_reveal(rnd)
    assert rnd.reveal("a1", Vote.VALID, SALT).accepted
    _to_end(rnd)
    result = rnd.close()
    assert [(f.auditor, f.kind, f.penalty) for f in result.faults] == [
        ("a0", FaultKind.MISSING_REVEAL, _penalty())
    ]
    assert book.escrow("seg#1") == _penalty()


def test_reveal_without_commit_is_penalised_from_free_balance(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    rnd = _round(engine)
    _to_reveal(rnd)
    receipt = rnd.reveal("a0", Vote.VALID, SALT)
    expected = PARAMS.llm.min_stake * PARAMS.fault_slash_bp // BP
    assert receipt.fault is not None
    assert receipt.fault.kind is FaultKind.REVEAL_WITHOUT_COMMIT
    assert receipt.fault.penalty == expected
    assert book.free("a0") == FUND - expected
    assert book.escrow("seg#1") == expected


def test_late_commit_and_repeated_reveal_are_rejected_without_penalty(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    rnd = _round(engine)
    _commit(rnd, "a1", Vote.INVALID)
    _to_reveal(rnd)
    late = rnd.commit("a0", commitment("seg", "a0", Vote.VALID, SALT), 100)
    assert late.fault is not None
    assert late.fault.kind is FaultKind.LATE_COMMIT
    assert late.fault.penalty == 0
    assert book.free("a0") == FUND
    assert book.locked("a0") == 0
    assert rnd.reveal("a1", Vote.INVALID, SALT).accepted
    again = rnd.reveal("a1", Vote.INVALID, SALT)
    assert again.fault is not None
    assert again.fault.kind is FaultKind.REPEATED_REVEAL
    assert again.fault.penalty == 0
    _to_end(rnd)
    result = rnd.close()
    assert result.votes == {"a1": Vote.INVALID}  # the accepted reveal still counts
    assert book.escrow("seg#1") == 0


# -------------------------------------------------------------------- tally


def _closed(engine: ConsensusEngine, ballots: Sequence[tuple[str, Vote, int]]) -> Decision:
    rnd = _round(engine)
    for auditor, vote, stake in ballots:
        _commit(rnd, auditor, vote, stake)
    _to_reveal(rnd)
    for auditor, vote, _ in ballots:
        rnd.reveal(auditor, vote, SALT)
    _to_end(rnd)
    return rnd.close().decision


def test_tally_is_stake_weighted_and_ignores_abstentions(engine: ConsensusEngine) -> None:
    # one large stake outweighs three small ones
    ballots = [
        ("a0", Vote.INVALID, 1_000),
        ("a1", Vote.VALID, 100),
        ("a2", Vote.VALID, 100),
        ("a3", Vote.VALID, 100),
        ("a4", Vote.ABSTAIN, 5_000),
    ]
    rnd = _round(engine)
    for auditor, vote, stake in ballots:
        _commit(rnd, auditor, vote, stake)
    _to_reveal(rnd)
    for auditor, vote, _ in ballots:
        rnd.reveal(auditor, vote, SALT)
    _to_end(rnd)
    result = rnd.close()
    assert (result.tally.valid_stake, result.tally.invalid_stake) == (300, 1_000)
    assert result.tally.abstain_stake == 5_000
    assert result.tally.abstain_count == 1
    assert result.tally.margin_bp == 700 * BP // 1_300
    assert result.decision is Decision.INVALID


def test_quorum_and_margin(book: StakeBook) -> None:
    v, i = Vote.VALID, Vote.INVALID
    engine = ConsensusEngine(book, PARAMS)
    # too few decisive auditors (quorum_auditors=3), though plenty of stake
    assert _closed(engine, [("a0", v, 5_000), ("a1", v, 5_000)]) is Decision.UNDECIDED
    # margin exactly 30% decides; just below does not
    assert _closed(engine, [("a0", v, 550), ("a1", v, 100), ("a2", i, 350)]) is Decision.VALID
    assert _closed(engine, [("a0", v, 549), ("a1", v, 100), ("a2", i, 351)]) is (Decision.UNDECIDED)
    # a tie never decides
    assert _closed(engine, [("a0", v, 200), ("a1", v, 100), ("a2", i, 300)]) is (Decision.UNDECIDED)
    # quorum on stake: 1,000 decisive units needed
    strict = ConsensusParams(llm=TierRules(min_stake=100, quorum_stake=1_000, quorum_auditors=3))
    engine = ConsensusEngine(book, strict)
    assert _closed(engine, [(a, v, 333) for a in AUDITORS[:3]]) is Decision.UNDECIDED
    assert _closed(engine, [(a, v, 334) for a in AUDITORS[:3]]) is Decision.VALID


# -------------------------------------------------------------------- escalation and settlement


def _ballots(votes: Sequence[Vote], stake: int = 100, first: int = 0) -> list[Ballot]:
    return [Ballot(f"a{first + k}", vote, stake, SALT) for k, vote in enumerate(votes)]


def test_computational_verdict_decides_without_a_vote(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    before = book.free("req")

    def never() -> list[Ballot]:
        raise AssertionError("no human round expected")

    outcome = engine.audit(
        "seg",
        requester="req",
        computational=Verdict(vote=Vote.INVALID, confidence=1.0, reason="2+2 != 5"),
        llm=_ballots([Vote.VALID] * 4),
        human=never,
    )
    assert (outcome.decision, outcome.tier, outcome.path) == (
        Decision.INVALID,
        Tier.COMPUTATIONAL,
        (Tier.COMPUTATIONAL,),
    )
    assert outcome.rounds == ()
    assert outcome.fee == 0
    assert book.free("req") == before
    assert all(book.locked(a) == 0 for a in AUDITORS)


def test_abstaining_computational_verdict_falls_through_to_llm(engine: ConsensusEngine) -> None:
    outcome = engine.audit(
        "seg",
        requester="req",
        computational=Verdict.abstain("no arithmetic"),
        llm=_ballots([Vote.VALID] * 4),
    )
    assert outcome.tier is Tier.LLM
    assert outcome.decision is Decision.VALID


def test_llm_committee_decides_and_settles_exactly(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    called = []

    def human() -> list[Ballot]:
        called.append(1)
        return []

    votes = [Vote.VALID] * 4 + [Vote.INVALID, Vote.ABSTAIN]
    llm = _ballots(votes, 100)
    llm[0] = Ballot("a0", Vote.VALID, 300, SALT)
    outcome = engine.audit("seg", requester="req", llm=llm, human=human)
    assert called == []
    assert (outcome.decision, outcome.tier, outcome.escalated) == (
        Decision.VALID,
        Tier.LLM,
        False,
    )
    # loser a4 loses 10% of 100; pool = fee 1000 + 10 = 1010, shared over stake 300+100*3
    assert outcome.slashes == {"a4": 10}
    assert outcome.rewards == {"a0": 505, "a1": 168, "a2": 168, "a3": 168}
    assert outcome.dust == 1010 - 505 - 3 * 168
    assert outcome.net("a5") == 0  # the abstainer
    assert book.free("a0") == FUND + 505
    assert book.free("a4") == FUND - 10
    assert book.free("req") == FUND - 1_000
    assert book.free(TREASURY) == outcome.dust
    assert all(book.locked(a) == 0 for a in AUDITORS)
    assert book.total() == book.deposited
    book.check()


def test_low_margin_escalates_to_humans_who_decide(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    llm = _ballots([Vote.VALID] * 2 + [Vote.INVALID] * 2)  # 0% margin
    human = _ballots([Vote.INVALID] * 3, stake=200, first=4)
    outcome = engine.audit("seg", requester="req", llm=llm, human=human)
    assert outcome.path == (Tier.LLM, Tier.HUMAN)
    assert (outcome.decision, outcome.tier) == (Decision.INVALID, Tier.HUMAN)
    assert not outcome.rounds[0].margin_met
    assert outcome.rounds[0].quorum_met
    # LLM auditors are settled against the humans' decision
    assert outcome.slashes == {"a0": 10, "a1": 10}
    pool = 1_000 + 20
    winners = {"a2": 100, "a3": 100, "a4": 200, "a5": 200, "a6": 200}
    assert outcome.rewards == {a: pool * s // 800 for a, s in winners.items()}
    book.check()


def test_quorum_failure_escalates_to_humans(engine: ConsensusEngine) -> None:
    llm = _ballots([Vote.VALID] * 2 + [Vote.ABSTAIN] * 3)  # only 2 decisive < 3
    human = _ballots([Vote.VALID] * 2, stake=100, first=5)
    outcome = engine.audit("seg", requester="req", llm=llm, human=human)
    assert not outcome.rounds[0].quorum_met
    assert (outcome.decision, outcome.tier) == (Decision.VALID, Tier.HUMAN)


def test_undecided_refunds_fee_and_slashes_no_wrong_votes(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    llm = [*_ballots([Vote.VALID, Vote.INVALID]), Ballot("a2", Vote.VALID, 100, SALT, False)]
    human = _ballots([Vote.VALID, Vote.INVALID], first=3)
    outcome = engine.audit("seg", requester="req", llm=llm, human=human)
    assert (outcome.decision, outcome.tier) == (Decision.UNDECIDED, Tier.HUMAN)
    assert outcome.refund == 1_000
    assert book.free("req") == FUND
    assert outcome.rewards == {}
    assert outcome.slashes == {"a2": _penalty()}  # only the missing reveal
    assert outcome.dust == _penalty() == book.free(TREASURY)
    assert all(book.locked(a) == 0 for a in AUDITORS)
    book.check()


def test_repeated_ballot_in_audit_is_a_double_commit(engine: ConsensusEngine) -> None:
    llm = [*_ballots([Vote.VALID] * 4), Ballot("a0", Vote.INVALID, 100, SALT)]
    outcome = engine.audit("seg", requester="req", llm=llm)
    assert [f.kind for f in outcome.faults] == [FaultKind.DOUBLE_COMMIT]
    assert "a0" not in outcome.rounds[0].votes
    assert outcome.decision is Decision.VALID  # a1..a3 still decide
    assert "a0" not in outcome.rewards
    assert outcome.slashes["a0"] == _penalty()


# -------------------------------------------------------------------- asynchronous escalation


def _source(ballots: Sequence[Ballot], asked: list[str], tier: str) -> BallotSource:
    async def source() -> Sequence[Ballot]:
        asked.append(tier)
        return ballots

    return source


async def _never() -> Sequence[Ballot]:
    raise AssertionError("a tier that escalation does not reach must not be asked")


def test_async_audit_asks_no_committee_when_the_computational_verdict_decides(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    before = book.free("req")
    outcome = asyncio.run(
        engine.audit_async(
            "seg",
            requester="req",
            computational=Verdict(vote=Vote.INVALID, confidence=1.0, reason="2+2 != 5"),
            llm_round=_never,
            human_round=_never,
        )
    )
    assert (outcome.decision, outcome.path) == (Decision.INVALID, (Tier.COMPUTATIONAL,))
    assert outcome.fee == 0
    assert book.free("req") == before


def test_async_audit_asks_the_humans_only_when_the_llm_round_is_undecided(
    engine: ConsensusEngine,
) -> None:
    asked: list[str] = []
    decided = asyncio.run(
        engine.audit_async(
            "seg",
            requester="req",
            computational=Verdict.abstain("no arithmetic"),
            llm_round=_source(_ballots([Vote.VALID] * 4), asked, "llm"),
            human_round=_never,
        )
    )
    assert (decided.decision, decided.path) == (Decision.VALID, (Tier.LLM,))
    assert asked == ["llm"]
    split = _ballots([Vote.VALID] * 2 + [Vote.INVALID] * 2)  # 0% margin
    escalated = asyncio.run(
        engine.audit_async(
            "seg",
            requester="req",
            llm_round=_source(split, asked, "llm"),
            human_round=_source(_ballots([Vote.INVALID] * 3, 200, first=4), asked, "human"),
        )
    )
    assert (escalated.decision, escalated.path) == (Decision.INVALID, (Tier.LLM, Tier.HUMAN))
    assert asked == ["llm", "llm", "human"]


def test_async_audit_without_a_human_tier_ends_with_the_llm_round(
    engine: ConsensusEngine, book: StakeBook
) -> None:
    split = _ballots([Vote.VALID] * 2 + [Vote.INVALID] * 2)
    outcome = asyncio.run(
        engine.audit_async("seg", requester="req", llm_round=_source(split, [], "llm"))
    )
    assert (outcome.decision, outcome.path) == (Decision.UNDECIDED, (Tier.LLM,))
    assert outcome.refund == 1_000
    assert book.free("req") == FUND
    assert all(book.locked(a) == 0 for a in AUDITORS)
    book.check()


@pytest.mark.parametrize(
    ("computational", "llm", "human"),
    [
        (Vote.VALID, [Vote.INVALID] * 4, [Vote.INVALID] * 2),
        (Vote.ABSTAIN, [Vote.VALID] * 4 + [Vote.INVALID], [Vote.INVALID] * 2),
        (None, [Vote.VALID] * 2 + [Vote.INVALID] * 2, [Vote.INVALID] * 3),
        (None, [Vote.VALID, Vote.INVALID], [Vote.VALID, Vote.INVALID]),
    ],
    ids=["computational", "llm", "human", "undecided"],
)
def test_async_audit_records_exactly_what_the_synchronous_audit_records(
    tmp_path: Path, computational: Vote | None, llm: list[Vote], human: list[Vote]
) -> None:
    verdict = None if computational is None else Verdict(vote=computational, confidence=1.0)
    llm_ballots = _ballots(llm)
    human_ballots = _ballots(human, 200, first=len(llm))
    runs = []
    for name in ("sync", "async"):
        with Ledger(tmp_path / f"{name}.sqlite") as ledger:
            book = StakeBook(ledger)
            for account in ("req", *AUDITORS):
                book.open(account, FUND)
            engine = ConsensusEngine(book, PARAMS, ledger=ledger, clock=Clock(3))
            if name == "sync":
                outcome = engine.audit(
                    "seg",
                    requester="req",
                    computational=verdict,
                    llm=llm_ballots,
                    human=human_ballots,
                )
            else:
                outcome = asyncio.run(
                    engine.audit_async(
                        "seg",
                        requester="req",
                        computational=verdict,
                        llm_round=_source(llm_ballots, [], "llm"),
                        human_round=_source(human_ballots, [], "human"),
                    )
                )
            records = [entry.record for entry in ledger.entries()]
            balances = {a: (book.free(a), book.locked(a)) for a in book.accounts()}
            runs.append((outcome, records, balances, engine.clock.now))
    assert runs[0] == runs[1]


# -------------------------------------------------------------------- ledger


def test_every_step_is_appended_to_the_ledger(ledger: Ledger) -> None:
    book = StakeBook(ledger)
    for account in ("req", *AUDITORS):
        book.open(account, FUND)
    engine = ConsensusEngine(book, PARAMS, ledger=ledger, clock=Clock(7))
    start = ledger.size
    llm = [*_ballots([Vote.VALID] * 2 + [Vote.INVALID] * 2), Ballot("a7", Vote.VALID, 100, SALT)]
    llm[4] = Ballot("a7", Vote.VALID, 100, SALT, reveal=False)
    outcome = engine.audit(
        "seg", requester="req", llm=llm, human=_ballots([Vote.VALID] * 2, 100, first=4)
    )
    entries = list(ledger.entries(start))
    assert list(outcome.entries) == [e.index for e in entries]
    kinds = [e.record["kind"] for e in entries]
    assert kinds.count("commit") == 5 + 2
    assert kinds.count("reveal") == 4 + 2
    assert kinds.count("fault") == 1
    assert kinds.count("tally") == 2
    assert kinds[-1] == "verdict"
    verdict = entries[-1].record
    assert verdict["decision"] == "valid"
    assert verdict["path"] == ["llm", "human"]
    assert verdict["rewards"] == outcome.rewards
    assert verdict["slashes"] == outcome.slashes
    ops = [e.record["op"] for e in entries if e.record["kind"] == "stake"]
    assert ops.count("fee") == 1
    assert ops.count("lock") == 7
    assert ops.count("release") == 7
    fault = next(e.record for e in entries if e.record["kind"] == "fault")
    assert fault["fault"] == "missing_reveal"
    assert fault["penalty"] == _penalty()
    first_commit = next(e.record for e in entries if e.record["kind"] == "commit")
    assert first_commit["tick"] == 7
    assert first_commit["audit"] == outcome.audit_id
    assert ledger.verify().ok
