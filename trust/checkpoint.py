"""Signed checkpoints of the TRUST ledger: a tree size and root, vouched for by an Ed25519 key.

What a checkpoint is for
------------------------
The ledger itself can show that its entries hang together (each leaf hash matches its data, the
chain hashes link up, the root is recomputed from the leaves).  It cannot show that nobody
rewrote the whole file and recomputed every hash.  A checkpoint closes that gap: at some moment
the holder of the ledger key signs the triple (size, root, time) and hands the result out.
Anyone who keeps the checkpoint and the public key can later check, without the ledger and
without trusting its holder, that

* the checkpoint is authentic (:func:`verify_checkpoint`),
* a given entry was part of the tree that was signed, from the entry's leaf hash and an
  inclusion proof (:func:`verify_entry_against_checkpoint`),
* a later checkpoint extends an earlier one, i.e. the history was only appended to and never
  rewritten, from a consistency proof (:func:`verify_growth`).

What is signed
--------------
The signature covers a short, fixed text rather than the JSON form, so that the signed bytes do
not depend on how a JSON library orders keys or writes numbers::

    goa-trust-checkpoint/v1\\n<size>\\n<root as lowercase hex>\\n<repr(float(time))>\\n

The leading tag names the purpose and version, so a signature made for a checkpoint can never be
replayed as a signature over something else.  ``repr`` of a float is the shortest text that
reads back as exactly the same float, and JSON carries floats the same way, so a checkpoint
that goes through JSON and back yields the very same message.  The ``key_id`` is not signed: it
only says which key to verify with, and a checkpoint that names another key than the one given
is refused before the signature is even looked at.

The key
-------
One Ed25519 key per user lives in ``<data dir>/trust/ledger-key.pem`` as an unencrypted PKCS#8
PEM file.  It is created on first use with permissions ``0600`` inside a folder created ``0700``,
written to a temporary file first and then hard-linked into place, so that two processes
starting at once can never both create a key or read a half-written one.  A key file that group
or others may read or write is refused (on POSIX systems), because a signature made with a key
that others could have copied proves nothing.  The key id is the first 16 hex digits of the
SHA-256 of the raw 32-byte public key: short enough to print, long enough to tell keys apart.

Every failure, from a malformed JSON document to a signature that does not match, raises
:class:`CheckpointError`, whose message says what was wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from goa import paths
from goa.errors import GoaError
from trust import merkle

__all__ = [
    "KEY_FILE_NAME",
    "MESSAGE_TAG",
    "Checkpoint",
    "CheckpointError",
    "SigningKey",
    "default_key_path",
    "key_id_of",
    "load_public_key",
    "read_checkpoint",
    "verify_checkpoint",
    "verify_entry_against_checkpoint",
    "verify_growth",
    "verify_log_against_checkpoint",
]

MESSAGE_TAG = b"goa-trust-checkpoint/v1"
"""First line of every signed message: what is signed, and in which version of the format."""

KEY_FILE_NAME = "ledger-key.pem"
SIGNATURE_SIZE = 64
"""Length in bytes of an Ed25519 signature."""
KEY_ID_LENGTH = 16
"""Hex digits of the SHA-256 of the raw public key kept as its id."""

_JSON_FIELDS = ("size", "root", "time", "key_id", "signature")
_HEX_DIGITS = frozenset("0123456789abcdef")


class CheckpointError(GoaError):
    """A checkpoint, key or proof is malformed, or does not verify."""


def default_key_path() -> Path:
    """Where the user's ledger key lives: ``<data dir>/trust/ledger-key.pem``."""
    return paths.data_dir() / "trust" / KEY_FILE_NAME


def _message(size: int, root: bytes, time: float) -> bytes:
    return b"%s\n%d\n%s\n%s\n" % (
        MESSAGE_TAG,
        size,
        root.hex().encode("ascii"),
        repr(float(time)).encode("ascii"),
    )


def _is_lower_hex(text: str) -> bool:
    return bool(text) and set(text) <= _HEX_DIGITS


@dataclass(frozen=True)
class Checkpoint:
    """The signed statement "the ledger had ``size`` entries with ``root`` at ``time``".

    ``time`` is in unix seconds; ``key_id`` names the key that made ``signature``.  The fields
    are checked on construction (sizes of the hashes, a finite time, a non-negative size), so a
    malformed checkpoint cannot exist; whether it is *authentic* is :func:`verify_checkpoint`'s
    job.
    """

    size: int
    root: bytes
    time: float
    key_id: str
    signature: bytes

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise CheckpointError(f"checkpoint size must be a whole number >= 0, got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != merkle.HASH_SIZE:
            raise CheckpointError(f"checkpoint root must be {merkle.HASH_SIZE} bytes")
        if (
            isinstance(self.time, bool)
            or not isinstance(self.time, int | float)
            or not math.isfinite(self.time)
        ):
            raise CheckpointError(f"checkpoint time must be a finite number, got {self.time!r}")
        if (
            not isinstance(self.key_id, str)
            or len(self.key_id) != KEY_ID_LENGTH
            or not _is_lower_hex(self.key_id)
        ):
            raise CheckpointError(
                f"checkpoint key_id must be {KEY_ID_LENGTH} lowercase hex digits, "
                f"got {self.key_id!r}"
            )
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise CheckpointError(f"checkpoint signature must be {SIGNATURE_SIZE} bytes")

    def message(self) -> bytes:
        """The exact bytes the signature covers (see the module docstring)."""
        return _message(self.size, self.root, self.time)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; hashes and the signature as lowercase hex."""
        return {
            "size": self.size,
            "root": self.root.hex(),
            "time": float(self.time),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        """Read back what :meth:`to_json` wrote.

        Strict on purpose: exactly the five fields, hex in lowercase only, so that every
        checkpoint has one written form and a changed character can never read back as the
        same checkpoint.
        """
        if not isinstance(data, Mapping):
            raise CheckpointError(f"a checkpoint must be a JSON object, got {type(data).__name__}")
        missing = [name for name in _JSON_FIELDS if name not in data]
        if missing:
            raise CheckpointError(f"checkpoint is missing {', '.join(missing)}")
        extra = sorted(str(name) for name in data if name not in _JSON_FIELDS)
        if extra:
            raise CheckpointError(f"checkpoint has unknown fields: {', '.join(extra)}")
        return cls(
            size=data["size"],
            root=_from_hex(data["root"], "root"),
            time=data["time"],
            key_id=data["key_id"],
            signature=_from_hex(data["signature"], "signature"),
        )


def _from_hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) % 2 or not _is_lower_hex(value):
        raise CheckpointError(f"checkpoint {what} must be lowercase hex")
    return bytes.fromhex(value)


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint saved as JSON (what ``trust ledger checkpoint`` prints)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path}: line {exc.lineno}: the checkpoint is not valid JSON: {exc.msg}"
        ) from None
    try:
        return Checkpoint.from_json(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(public)).hexdigest()[:KEY_ID_LENGTH]


def load_public_key(public_pem: bytes) -> Ed25519PublicKey:
    """Parse an Ed25519 public key in PEM (SubjectPublicKeyInfo) form."""
    try:
        public = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CheckpointError("the public key is not a PEM-encoded public key") from None
    if not isinstance(public, Ed25519PublicKey):
        raise CheckpointError(
            f"the public key is a {type(public).__name__}, not an Ed25519 public key"
        )
    return public


def key_id_of(public_pem: bytes) -> str:
    """The key id of a PEM public key: first 16 hex digits of SHA-256 of its raw 32 bytes."""
    return _key_id(load_public_key(public_pem))


class SigningKey:
    """The user's Ed25519 ledger key, with which checkpoints are signed.

    Build it with :meth:`load_or_create`; the private key never leaves this object except in
    the key file it came from.
    """

    __slots__ = ("_private", "_public", "key_id", "path")

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private
        self._public = private.public_key()
        self.key_id: str = _key_id(self._public)
        """First 16 hex digits of SHA-256 of the raw public key."""
        self.path = path
        """The key file, or None for a key that only lives in memory."""

    @classmethod
    def load_or_create(cls, path: Path | None = None) -> SigningKey:
        """Load the key file at ``path`` (default :func:`default_key_path`), creating it first
        if it does not exist yet.

        Refuses a key file that group or others may access, or one that is not an unencrypted
        PKCS#8 PEM Ed25519 key.
        """
        own_folder = path is None
        path = default_key_path() if path is None else path
        if not path.exists():
            _create_key_file(path, tighten_folder=own_folder)
        return cls(_read_key_file(path), path)

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo): what verifiers need."""
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_checkpoint(self, size: int, root: bytes, time: float | None = None) -> Checkpoint:
        """Sign (size, root, time); ``time`` defaults to now."""
        when = _time.time() if time is None else float(time)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise CheckpointError(f"checkpoint size must be a whole number >= 0, got {size!r}")
        if not isinstance(root, bytes) or len(root) != merkle.HASH_SIZE:
            raise CheckpointError(f"checkpoint root must be {merkle.HASH_SIZE} bytes")
        if not math.isfinite(when):
            raise CheckpointError(f"checkpoint time must be a finite number, got {when!r}")
        signature = self._private.sign(_message(size, root, when))
        return Checkpoint(size, root, when, self.key_id, signature)


def _create_key_file(path: Path, *, tighten_folder: bool) -> None:
    """Write a fresh key to ``path`` without ever exposing it or clobbering another one.

    The folder is created ``0700`` (and the default ``trust`` folder is tightened to ``0700``
    even if it existed already, since it is goa's own); a folder the caller named and that
    exists is left as it is.  The key goes to a temporary file opened ``0600`` with O_EXCL and
    is then hard-linked to its name: if another process got there first, the link fails and
    that process's key is used instead.
    """
    folder = path.parent
    try:
        created = not folder.exists()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created or tighten_folder:
            os.chmod(folder, 0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        temporary = folder / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            # If someone else created the key meanwhile, the link fails and theirs is the key.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot create the ledger key: {exc}") from None


def _read_key_file(path: Path) -> Ed25519PrivateKey:
    """Read a key file, checking its permissions on the opened file itself (no race)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open the ledger key: {exc}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if os.name == "posix" and mode & 0o077:
            raise CheckpointError(
                f"{path}: the ledger key may be accessed by group or others "
                f"(mode {mode & 0o777:04o}); it must be private to its owner: "
                f"run `chmod 600 {path}`"
            )
        data = handle.read()
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CheckpointError(f"{path}: not an unencrypted PKCS#8 PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: the key is a {type(private).__name__}, not Ed25519")
    return private


def verify_checkpoint(checkpoint: Checkpoint, public_pem: bytes) -> None:
    """Check that ``checkpoint`` was signed by the key whose PEM is ``public_pem``.

    Returns nothing when it was; raises :class:`CheckpointError` for a checkpoint that names
    another key, or whose signature does not match its size, root and time.
    """
    public = load_public_key(public_pem)
    expected = _key_id(public)
    if checkpoint.key_id != expected:
        raise CheckpointError(
            f"wrong key: the checkpoint was signed by key {checkpoint.key_id}, "
            f"the given public key is {expected}"
        )
    try:
        public.verify(checkpoint.signature, checkpoint.message())
    except InvalidSignature:
        raise CheckpointError(
            f"bad signature: the checkpoint (size {checkpoint.size}) was altered or not "
            f"signed by key {expected}"
        ) from None


def verify_entry_against_checkpoint(
    checkpoint: Checkpoint,
    public_pem: bytes,
    index: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the entry with ``leaf_hash`` is entry ``index`` of the signed tree.

    Both must hold: the checkpoint's signature, and the inclusion proof from the leaf up to
    the checkpoint's root at the checkpoint's size.
    """
    verify_checkpoint(checkpoint, public_pem)
    try:
        merkle.verify_inclusion(index, checkpoint.size, leaf_hash, proof, checkpoint.root)
    except merkle.ProofError as exc:
        raise CheckpointError(
            f"proof mismatch: entry {index} is not shown to be in the checkpoint of size "
            f"{checkpoint.size}: {exc}"
        ) from None


def verify_growth(
    old: Checkpoint, new: Checkpoint, public_pem: bytes, proof: Sequence[bytes]
) -> None:
    """Check that ``new`` only appended to ``old``: both signed, and the consistency proof
    links ``old.root`` at ``old.size`` to ``new.root`` at ``new.size``.

    A checkpoint of the empty tree is extended by anything (with an empty proof), since every
    tree starts with the empty one; RFC 9162 has no proof for that case.
    """
    verify_checkpoint(old, public_pem)
    verify_checkpoint(new, public_pem)
    if new.size < old.size:
        raise CheckpointError(
            f"the new checkpoint (size {new.size}) is smaller than the old one "
            f"(size {old.size}): the ledger shrank"
        )
    if old.size == 0 and new.size > 0:
        if old.root != merkle.EMPTY_ROOT:
            raise CheckpointError("the old checkpoint has size 0 but not the empty root")
        if proof:
            raise CheckpointError("growth from the empty tree takes an empty proof")
        return
    try:
        merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    except merkle.ProofError as exc:
        raise CheckpointError(
            f"proof mismatch: the checkpoint of size {new.size} does not extend the one of "
            f"size {old.size}: {exc}"
        ) from None


class _Log(Protocol):
    """What :func:`verify_log_against_checkpoint` needs of a ledger."""

    @property
    def size(self) -> int: ...

    def root(self, size: int | None = None) -> bytes: ...


def verify_log_against_checkpoint(log: _Log, checkpoint: Checkpoint, public_pem: bytes) -> None:
    """Check that a ledger still holds what ``checkpoint`` signed: the signature is good,
    the ledger has at least ``checkpoint.size`` entries, and its first ``checkpoint.size``
    entries have the signed root. This catches what recomputing the ledger alone cannot:
    entries removed from the end, or the whole log rewritten consistently. Raises
    :class:`CheckpointError` naming what no longer matches."""
    verify_checkpoint(checkpoint, public_pem)
    if log.size < checkpoint.size:
        raise CheckpointError(
            f"the ledger has {log.size} entries, fewer than the {checkpoint.size} the "
            "checkpoint signed: entries were removed from its end"
        )
    if log.root(checkpoint.size) != checkpoint.root:
        raise CheckpointError(
            f"the first {checkpoint.size} entries no longer have the root the checkpoint "
            "signed: the ledger was rewritten"
        )
