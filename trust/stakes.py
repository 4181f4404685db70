"""Stake accounts for TRUST's auditors, in integer units, with exact conservation.

The model
---------
Every unit of stake lies in exactly one *bucket*:

* ``free``: an account's spendable balance;
* ``locked``: stake an account has put up for one purpose (a vote on one piece, say), kept
  per ``(account, purpose)``;
* ``escrow``: a pool kept per purpose, owned by no account (the fee a requester paid for a
  piece plus whatever was slashed on it, waiting to be paid out).

Amounts are Python ``int`` (e.g. micro-units of some token); floats never appear, so every
sum is exact.  Each operation of :class:`StakeBook` is one call of a single private primitive
that takes ``x`` units out of one bucket and puts the same ``x`` into another (or, for
:meth:`StakeBook.deposit` and :meth:`StakeBook.withdraw`, moves ``x`` between a bucket and
the outside world and adds ``x`` to the matching counter).  Hence, after *any* sequence of
successful operations::

    book.total() == book.deposited - book.withdrawn

which :meth:`StakeBook.check` asserts.  No operation mints or burns stake: rewards are paid
out of an escrow pool that was filled by fees and slashes.  A failed operation (overdraft,
unknown account, bad amount) raises before anything changes.

``TREASURY`` is an ordinary account that always exists; it receives rounding dust and
slashes that nobody wins, and may pay fees like any account.

Ledger
------
Give the book a :class:`trust.ledger.Ledger` and every successful change is appended as one
record ``{"kind": "stake", "seq", "op", "account", "amount", "purpose", "pool", "source",
"target"}``
(``source``/``target`` name the buckets: ``"external"``, ``"free"``, ``"locked"`` or
``"escrow"``; ``purpose`` is ``None`` for operations that have none; ``pool`` names the escrow
pool when it is not ``purpose``, as when a lock for one purpose is slashed into another's
pool).  The returned :class:`StakeChange` carries the ledger index in ``entry``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from goa.errors import GoaError
from trust.ledger import Ledger

__all__ = [
    "TREASURY",
    "Bucket",
    "InsufficientStakeError",
    "StakeBook",
    "StakeChange",
    "StakeError",
    "UnknownAccountError",
]

TREASURY: Final = "treasury"
"""The id of the account that always exists and takes dust and unclaimed slashes."""


_POOLED: Final = frozenset({"locked", "escrow"})


class StakeError(GoaError):
    """A stake operation was refused; nothing changed."""


class UnknownAccountError(StakeError):
    """The account was never opened."""

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"unknown stake account {account!r}")


class InsufficientStakeError(StakeError):
    """A bucket holds less than the operation takes out (an overdraft)."""

    def __init__(self, account: str, bucket: str, have: int, need: int) -> None:
        self.account = account
        self.bucket = bucket
        self.have = have
        self.need = need
        super().__init__(f"stake account {account!r}: {bucket} holds {have}, {need} needed")


class Bucket(StrEnum):
    """Where stake sits (see the module docstring)."""

    EXTERNAL = "external"
    FREE = "free"
    LOCKED = "locked"
    ESCROW = "escrow"


@dataclass(frozen=True, slots=True)
class StakeChange:
    """One successful operation: ``amount`` moved from ``source`` to ``target``."""

    seq: int
    """0-based number of the change in this book."""
    op: str
    account: str
    amount: int
    purpose: str | None
    source: Bucket
    target: Bucket
    pool: str | None = None
    """The escrow pool, where it differs from ``purpose`` (a slash of a lock into a pool)."""
    entry: int | None = None
    """Index of the ledger entry that records it (``None`` without a ledger)."""

    def record(self) -> dict[str, Any]:
        """The ledger record (canonical-JSON-able: strings, ints and ``None`` only)."""
        return {
            "kind": "stake",
            "seq": self.seq,
            "op": self.op,
            "account": self.account,
            "amount": self.amount,
            "purpose": self.purpose,
            "pool": self.pool,
            "source": self.source.value,
            "target": self.target.value,
        }


def _check_amount(amount: int, *, allow_zero: bool = False) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise StakeError(f"a stake amount must be an int, not {type(amount).__name__}")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise StakeError(f"a stake amount must be {'>= 0' if allow_zero else '> 0'}: {amount}")


def _key(bucket: Bucket, purpose: str | None, pool: str | None) -> str | None:
    """The key a bucket is kept under: the pool for escrow (when given), else the purpose."""
    return pool if bucket is Bucket.ESCROW and pool is not None else purpose


class StakeBook:
    """All stake accounts, locks and escrow pools of one TRUST deployment.

    Every method that moves stake either succeeds completely or raises a :class:`StakeError`
    with nothing changed.  Moving zero units is allowed where an amount is computed (a slash
    or reward that rounds to zero) and is then a no-op that records nothing.
    """

    def __init__(self, ledger: Ledger | None = None) -> None:
        self._ledger = ledger
        self._free: dict[str, int] = {TREASURY: 0}
        self._locked: dict[tuple[str, str], int] = {}
        self._escrow: dict[str, int] = {}
        self._seq = 0
        self.deposited = 0
        """Units that came in through :meth:`deposit`."""
        self.withdrawn = 0
        """Units that went out through :meth:`withdraw`."""

    # ------------------------------------------------------------------ accounts

    def open(self, account: str, deposit: int = 0) -> None:
        """Open ``account`` (idempotent) and optionally deposit into it."""
        if not isinstance(account, str) or not account:
            raise StakeError("an account id must be a non-empty string")
        self._free.setdefault(account, 0)
        if deposit:
            self.deposit(account, deposit)

    def has(self, account: str) -> bool:
        """Whether ``account`` was opened."""
        return account in self._free

    def accounts(self) -> tuple[str, ...]:
        """Every open account, the treasury included, in opening order."""
        return tuple(self._free)

    def free(self, account: str) -> int:
        """The spendable balance of ``account``."""
        self._known(account)
        return self._free[account]

    def locked(self, account: str, purpose: str | None = None) -> int:
        """Stake ``account`` has locked for ``purpose`` (all purposes when ``None``)."""
        self._known(account)
        if purpose is not None:
            return self._locked.get((account, purpose), 0)
        return sum(v for (a, _), v in self._locked.items() if a == account)

    def balance(self, account: str) -> int:
        """Free plus locked stake of ``account``."""
        return self.free(account) + self.locked(account)

    def escrow(self, purpose: str) -> int:
        """Units held in the escrow pool of ``purpose``."""
        return self._escrow.get(purpose, 0)

    def total(self) -> int:
        """Every unit inside the book: all free, locked and escrow buckets."""
        return sum(self._free.values()) + sum(self._locked.values()) + sum(self._escrow.values())

    def check(self) -> None:
        """Raise :class:`StakeError` unless ``total() == deposited - withdrawn`` and no bucket
        is negative (which the operations never allow; this guards against outside edits)."""
        buckets: Iterable[int] = (
            *self._free.values(),
            *self._locked.values(),
            *self._escrow.values(),
        )
        if any(v < 0 for v in buckets):
            raise StakeError("a stake bucket is negative")
        if self.total() != self.deposited - self.withdrawn:
            raise StakeError(
                f"stake not conserved: total {self.total()} != deposited {self.deposited} "
                f"- withdrawn {self.withdrawn}"
            )

    # ------------------------------------------------------------------ operations

    def deposit(self, account: str, amount: int) -> StakeChange:
        """Bring ``amount`` from outside into the free balance of ``account``."""
        return self._move("deposit", account, amount, None, Bucket.EXTERNAL, Bucket.FREE)

    def withdraw(self, account: str, amount: int) -> StakeChange:
        """Take ``amount`` of free balance out of the book."""
        return self._move("withdraw", account, amount, None, Bucket.FREE, Bucket.EXTERNAL)

    def transfer(self, source: str, target: str, amount: int) -> StakeChange:
        """Move free balance from ``source`` to ``target`` (two records: out, in)."""
        self._known(target)
        _check_amount(amount)
        if self.free(source) < amount:
            raise InsufficientStakeError(source, "free", self._free[source], amount)
        purpose = f"transfer:{self._seq}"
        self._move("transfer_out", source, amount, purpose, Bucket.FREE, Bucket.ESCROW)
        return self._move("transfer_in", target, amount, purpose, Bucket.ESCROW, Bucket.FREE)

    def lock(self, account: str, amount: int, purpose: str) -> StakeChange:
        """Lock ``amount`` of free balance for ``purpose``."""
        return self._move("lock", account, amount, purpose, Bucket.FREE, Bucket.LOCKED)

    def release(self, account: str, purpose: str) -> StakeChange:
        """Unlock everything ``account`` still has locked for ``purpose`` (maybe nothing)."""
        amount = self.locked(account, purpose)
        return self._move("release", account, amount, purpose, Bucket.LOCKED, Bucket.FREE)

    def pay_in(self, account: str, amount: int, purpose: str, op: str = "fee") -> StakeChange:
        """Move free balance of ``account`` into the escrow pool of ``purpose`` (a fee)."""
        return self._move(op, account, amount, purpose, Bucket.FREE, Bucket.ESCROW)

    def slash(
        self, account: str, amount: int, purpose: str, pool: str | None = None
    ) -> StakeChange:
        """Move ``amount`` of the stake ``account`` locked for ``purpose`` into the escrow pool
        ``pool`` (by default the pool of ``purpose`` itself)."""
        return self._move(
            "slash", account, amount, purpose, Bucket.LOCKED, Bucket.ESCROW, pool=pool
        )

    def slash_free(self, account: str, amount: int, purpose: str) -> StakeChange:
        """Move ``amount`` of free balance into the escrow of ``purpose`` as a penalty (for an
        auditor who had nothing locked there)."""
        return self._move("slash_free", account, amount, purpose, Bucket.FREE, Bucket.ESCROW)

    def pay_out(self, account: str, amount: int, purpose: str, op: str = "reward") -> StakeChange:
        """Pay ``amount`` from the escrow of ``purpose`` to the free balance of ``account``."""
        return self._move(op, account, amount, purpose, Bucket.ESCROW, Bucket.FREE)

    def sweep(self, purpose: str) -> StakeChange:
        """Move whatever is left in the escrow of ``purpose`` (maybe nothing) to the treasury."""
        amount = self.escrow(purpose)
        return self._move("sweep", TREASURY, amount, purpose, Bucket.ESCROW, Bucket.FREE)

    # ------------------------------------------------------------------ the one primitive

    def _known(self, account: str) -> None:
        if account not in self._free:
            raise UnknownAccountError(account)

    def _move(
        self,
        op: str,
        account: str,
        amount: int,
        purpose: str | None,
        source: Bucket,
        target: Bucket,
        *,
        pool: str | None = None,
    ) -> StakeChange:
        """Take ``amount`` out of ``source`` and put it into ``target``, or raise first.

        All checks, and the ledger append, happen before any balance changes, so a refused
        operation (or a ledger that cannot be written) leaves the book as it was.
        """
        self._known(account)
        _check_amount(amount, allow_zero=True)
        if purpose is None and (source in _POOLED or target in _POOLED):
            raise StakeError(f"moving {source.value} -> {target.value} stake needs a purpose")
        if pool == purpose:
            pool = None
        if source is not Bucket.EXTERNAL:
            have = self._get(account, _key(source, purpose, pool), source)
            if have < amount:
                raise InsufficientStakeError(account, source.value, have, amount)
        if amount == 0:
            return StakeChange(self._seq, op, account, 0, purpose, source, target, pool)
        change = StakeChange(self._seq, op, account, amount, purpose, source, target, pool)
        if self._ledger is not None:
            entry = self._ledger.append(change.record()).index
            change = StakeChange(
                self._seq, op, account, amount, purpose, source, target, pool, entry
            )
        self._seq += 1
        if source is Bucket.EXTERNAL:
            self.deposited += amount
        else:
            self._add(account, _key(source, purpose, pool), source, -amount)
        if target is Bucket.EXTERNAL:
            self.withdrawn += amount
        else:
            self._add(account, _key(target, purpose, pool), target, amount)
        return change

    def _get(self, account: str, purpose: str | None, bucket: Bucket) -> int:
        if bucket is Bucket.FREE:
            return self._free[account]
        if purpose is None:
            raise StakeError(f"{bucket.value} stake needs a purpose")
        if bucket is Bucket.LOCKED:
            return self._locked.get((account, purpose), 0)
        return self._escrow.get(purpose, 0)

    def _add(self, account: str, purpose: str | None, bucket: Bucket, delta: int) -> None:
        if bucket is Bucket.FREE:
            self._free[account] += delta
            return
        if purpose is None:
            raise StakeError(f"{bucket.value} stake needs a purpose")
        if bucket is Bucket.LOCKED:
            key = (account, purpose)
            value = self._locked.get(key, 0) + delta
            if value:
                self._locked[key] = value
            else:
                self._locked.pop(key, None)
        else:
            value = self._escrow.get(purpose, 0) + delta
            if value:
                self._escrow[purpose] = value
            else:
                self._escrow.pop(purpose, None)
