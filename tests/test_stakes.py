"""Tests for trust.stakes: integer stake accounts whose total is conserved exactly."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from goa.errors import GoaError
from trust.ledger import Ledger
from trust.stakes import (
    TREASURY,
    Bucket,
    InsufficientStakeError,
    StakeBook,
    StakeError,
    UnknownAccountError,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def _snapshot(book: StakeBook) -> tuple[object, ...]:
    accounts = book.accounts()
    return (
        book.total(),
        book.deposited,
        book.withdrawn,
        tuple((a, book.free(a), book.locked(a)) for a in accounts),
    )


def test_deposit_lock_slash_reward_release_sweep_move_exact_amounts() -> None:
    book = StakeBook()
    book.open("alice", 1_000)
    book.open("bob", 500)
    book.lock("alice", 600, "p")
    assert (book.free("alice"), book.locked("alice", "p")) == (400, 600)
    book.slash("alice", 60, "p")
    assert book.locked("alice", "p") == 540
    assert book.escrow("p") == 60
    book.pay_in("bob", 40, "p")
    assert (book.free("bob"), book.escrow("p")) == (460, 100)
    book.pay_out("bob", 70, "p")
    assert (book.free("bob"), book.escrow("p")) == (530, 30)
    assert book.release("alice", "p").amount == 540
    assert (book.free("alice"), book.locked("alice")) == (940, 0)
    assert book.sweep("p").amount == 30
    assert (book.free(TREASURY), book.escrow("p")) == (30, 0)
    assert book.total() == 1_500 == book.deposited
    book.withdraw("bob", 30)
    assert book.total() == 1_470 == book.deposited - book.withdrawn
    book.check()


def test_slash_into_another_pool_and_transfer() -> None:
    book = StakeBook()
    book.open("a", 100)
    book.open("b")
    book.lock("a", 50, "round/llm")
    change = book.slash("a", 20, "round/llm", pool="round")
    assert change.pool == "round"
    assert book.escrow("round") == 20
    assert book.escrow("round/llm") == 0
    assert book.locked("a", "round/llm") == 30
    book.transfer("a", "b", 25)
    assert (book.free("a"), book.free("b")) == (25, 25)
    book.check()


def test_errors_are_goa_errors_and_change_nothing() -> None:
    book = StakeBook()
    book.open("a", 100)
    book.lock("a", 40, "p")
    before = _snapshot(book)
    with pytest.raises(InsufficientStakeError) as info:
        book.lock("a", 61, "p")
    assert (info.value.have, info.value.need) == (60, 61)
    with pytest.raises(InsufficientStakeError):
        book.slash("a", 41, "p")
    with pytest.raises(InsufficientStakeError):
        book.pay_out("a", 1, "p")  # the pool is empty
    with pytest.raises(InsufficientStakeError):
        book.withdraw("a", 61)
    with pytest.raises(InsufficientStakeError):
        book.transfer("a", TREASURY, 61)
    with pytest.raises(UnknownAccountError):
        book.deposit("nobody", 1)
    with pytest.raises(UnknownAccountError):
        book.transfer("a", "nobody", 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(StakeError):
            book.deposit("a", bad)  # type: ignore[arg-type]
    with pytest.raises(StakeError):
        book.open("")
    assert issubclass(StakeError, GoaError)
    assert _snapshot(book) == before


def test_check_notices_a_broken_invariant() -> None:
    book = StakeBook()
    book.open("a", 10)
    book.deposited += 1  # as an outside edit would
    with pytest.raises(StakeError, match="not conserved"):
        book.check()


def test_random_operations_conserve_the_total_exactly() -> None:
    rng = random.Random(20260101)
    book = StakeBook()
    accounts = [f"a{i}" for i in range(6)]
    purposes = ["p0", "p1", "p2"]
    for account in accounts:
        book.open(account, rng.randrange(0, 10_000))
    refused = done = 0
    for _ in range(5_000):
        account = rng.choice([*accounts, TREASURY])
        purpose = rng.choice(purposes)
        amount = rng.randrange(1, 3_000)
        op = rng.randrange(9)
        before = _snapshot(book)
        try:
            if op == 0:
                book.deposit(account, amount)
            elif op == 1:
                book.withdraw(account, amount)
            elif op == 2:
                book.lock(account, amount, purpose)
            elif op == 3:
                book.release(account, purpose)
            elif op == 4:
                book.slash(account, amount, purpose, pool=rng.choice(purposes))
            elif op == 5:
                book.pay_in(account, amount, purpose)
            elif op == 6:
                book.pay_out(account, amount, purpose)
            elif op == 7:
                book.transfer(account, rng.choice(accounts), amount)
            else:
                book.sweep(purpose)
            done += 1
        except StakeError:
            refused += 1
            assert _snapshot(book) == before
        # The invariant, recomputed independently from the public accessors.
        inside = sum(book.free(a) + book.locked(a) for a in book.accounts())
        inside += sum(book.escrow(p) for p in purposes)  # transfers leave no escrow behind
        assert inside == book.total() == book.deposited - book.withdrawn
        assert all(book.free(a) >= 0 and book.locked(a) >= 0 for a in book.accounts())
    book.check()
    assert done > 1_000
    assert refused > 100


def test_changes_are_appended_to_the_ledger(ledger: Ledger) -> None:
    book = StakeBook(ledger)
    book.open("a", 100)
    lock = book.lock("a", 30, "p")
    slash = book.slash("a", 3, "p", pool="q")
    assert book.release("a", "p").entry == 3
    assert book.release("a", "p").entry is None  # nothing left: no record
    assert book.slash("a", 0, "p").entry is None
    records = [e.record for e in ledger.entries()]
    assert [r["op"] for r in records] == ["deposit", "lock", "slash", "release"]
    assert all(r["kind"] == "stake" for r in records)
    assert lock.entry == 1
    assert slash.entry == 2
    assert records[2] == {
        "kind": "stake",
        "seq": 2,
        "op": "slash",
        "account": "a",
        "amount": 3,
        "purpose": "p",
        "pool": "q",
        "source": Bucket.LOCKED.value,
        "target": Bucket.ESCROW.value,
    }
    assert records[0]["source"] == "external"
    assert records[0]["purpose"] is None
