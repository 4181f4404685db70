"""Tests for trust.checkpoint: signed (size, root, time) checkpoints and offline verification.

The trees are built with trust.merkle directly, so these tests do not depend on the ledger.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from goa import paths
from goa.errors import GoaError
from trust import merkle
from trust.checkpoint import (
    MESSAGE_TAG,
    Checkpoint,
    CheckpointError,
    SigningKey,
    default_key_path,
    key_id_of,
    read_checkpoint,
    verify_checkpoint,
    verify_entry_against_checkpoint,
    verify_growth,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def _leaves(n: int, tag: str = "entry") -> list[bytes]:
    return [merkle.leaf_hash(f'{{"{tag}":{i}}}'.encode()) for i in range(n)]


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "keys" / "ledger-key.pem")


@pytest.fixture
def other_key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "other" / "ledger-key.pem")


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


# --- signing and verifying -------------------------------------------------------------------


def test_sign_verify_round_trip(key: SigningKey) -> None:
    leaves = _leaves(7)
    checkpoint = key.sign_checkpoint(7, merkle.root(leaves), time=1_700_000_000.25)
    assert checkpoint.size == 7
    assert checkpoint.key_id == key.key_id
    verify_checkpoint(checkpoint, key.public_pem())
    # Through JSON text and back: the same checkpoint, still valid.
    again = Checkpoint.from_json(json.loads(json.dumps(checkpoint.to_json())))
    assert again == checkpoint
    verify_checkpoint(again, key.public_pem())


def test_message_format(key: SigningKey) -> None:
    root = merkle.root(_leaves(3))
    checkpoint = key.sign_checkpoint(3, root, time=12.5)
    assert checkpoint.message() == MESSAGE_TAG + b"\n3\n" + root.hex().encode() + b"\n12.5\n"


def test_time_defaults_to_now(key: SigningKey) -> None:
    import time

    before = time.time()
    checkpoint = key.sign_checkpoint(0, merkle.EMPTY_ROOT)
    assert before <= checkpoint.time <= time.time()
    verify_checkpoint(checkpoint, key.public_pem())


def test_key_id_is_sha256_prefix_of_raw_public_key(key: SigningKey) -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    public = serialization.load_pem_public_key(key.public_pem())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert key.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert key_id_of(key.public_pem()) == key.key_id


def test_every_flipped_signature_byte_is_rejected(key: SigningKey) -> None:
    checkpoint = key.sign_checkpoint(5, merkle.root(_leaves(5)), time=1000.0)
    for position in range(len(checkpoint.signature)):
        forged = replace(checkpoint, signature=_flip(checkpoint.signature, position))
        with pytest.raises(CheckpointError, match="bad signature"):
            verify_checkpoint(forged, key.public_pem())


def test_every_flipped_root_byte_is_rejected(key: SigningKey) -> None:
    checkpoint = key.sign_checkpoint(5, merkle.root(_leaves(5)), time=1000.0)
    for position in range(len(checkpoint.root)):
        forged = replace(checkpoint, root=_flip(checkpoint.root, position))
        with pytest.raises(CheckpointError, match="bad signature"):
            verify_checkpoint(forged, key.public_pem())


@pytest.mark.parametrize(
    "changes",
    [
        {"size": 4},
        {"size": 6},
        {"size": 5 ^ (1 << 40)},
        {"time": 1000.0000001},
        {"time": 999.0},
        {"time": -1000.0},
    ],
)
def test_changed_size_or_time_is_rejected(key: SigningKey, changes: dict[str, float]) -> None:
    checkpoint = key.sign_checkpoint(5, merkle.root(_leaves(5)), time=1000.0)
    forged = replace(checkpoint, **changes)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_checkpoint(forged, key.public_pem())


def test_every_changed_character_of_the_json_is_rejected(key: SigningKey) -> None:
    """Flip one bit of any character of the saved JSON: either it no longer parses, or it
    parses to a different checkpoint that fails verification. Never accepted."""
    checkpoint = key.sign_checkpoint(9, merkle.root(_leaves(9)), time=1_700_000_123.5)
    text = json.dumps(checkpoint.to_json()).encode()
    public = key.public_pem()
    for position in range(len(text)):
        changed = _flip(text, position)
        try:
            parsed = Checkpoint.from_json(json.loads(changed))
        except (CheckpointError, ValueError):
            continue  # malformed: refused
        assert parsed != checkpoint
        with pytest.raises(CheckpointError):
            verify_checkpoint(parsed, public)


def test_resigned_with_another_key_is_rejected(key: SigningKey, other_key: SigningKey) -> None:
    root = merkle.root(_leaves(4))
    original = key.sign_checkpoint(4, root, time=50.0)
    forged = other_key.sign_checkpoint(4, root, time=50.0)
    verify_checkpoint(forged, other_key.public_pem())  # valid for its own key
    with pytest.raises(CheckpointError, match="wrong key"):
        verify_checkpoint(forged, key.public_pem())
    # Even if the forger writes the original key id into it, the signature gives it away.
    disguised = replace(forged, key_id=original.key_id)
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_checkpoint(disguised, key.public_pem())


def test_errors_are_goa_errors() -> None:
    assert issubclass(CheckpointError, GoaError)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "must be a JSON object"),
        ({"size": 1}, "missing"),
        ("not a dict", "must be a JSON object"),
    ],
)
def test_malformed_json_documents(document: object, problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        Checkpoint.from_json(document)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("size", -1, "size"),
        ("size", "3", "size"),
        ("size", True, "size"),
        ("root", "ab", "root"),
        ("root", "zz" * 32, "root"),
        ("root", "AB" * 32, "lowercase hex"),
        ("time", "now", "time"),
        ("time", None, "time"),
        ("key_id", "1234", "key_id"),
        ("signature", "00" * 63, "signature"),
        ("extra", 1, "unknown fields"),
    ],
)
def test_malformed_fields(key: SigningKey, field: str, value: object, problem: str) -> None:
    document = key.sign_checkpoint(1, merkle.root(_leaves(1)), time=1.0).to_json()
    document[field] = value
    with pytest.raises(CheckpointError, match=problem):
        Checkpoint.from_json(document)


def test_read_checkpoint_file(key: SigningKey, tmp_path: Path) -> None:
    checkpoint = key.sign_checkpoint(2, merkle.root(_leaves(2)), time=3.0)
    saved = tmp_path / "cp.json"
    saved.write_text(json.dumps(checkpoint.to_json(), indent=2))
    assert read_checkpoint(saved) == checkpoint
    saved.write_text("{\n  not json")
    with pytest.raises(CheckpointError, match=r"cp\.json: line 2: .*not valid JSON"):
        read_checkpoint(saved)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "missing.json")


def test_bad_public_key_pem(key: SigningKey) -> None:
    checkpoint = key.sign_checkpoint(0, merkle.EMPTY_ROOT, time=0.0)
    with pytest.raises(CheckpointError, match="not a PEM"):
        verify_checkpoint(checkpoint, b"-----BEGIN PUBLIC KEY-----\ngarbage\n")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(CheckpointError, match="not an Ed25519"):
        verify_checkpoint(checkpoint, ec_pem)


def test_sign_rejects_bad_inputs(key: SigningKey) -> None:
    with pytest.raises(CheckpointError, match="size"):
        key.sign_checkpoint(-1, merkle.EMPTY_ROOT)
    with pytest.raises(CheckpointError, match="root"):
        key.sign_checkpoint(1, b"short")
    with pytest.raises(CheckpointError, match="time"):
        key.sign_checkpoint(1, merkle.EMPTY_ROOT, time=float("nan"))


# --- the key file ----------------------------------------------------------------------------


@posix_only
def test_default_key_is_created_private_in_the_data_dir() -> None:
    path = default_key_path()
    assert path == paths.data_dir() / "trust" / "ledger-key.pem"
    assert not path.exists()
    key = SigningKey.load_or_create()
    assert key.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no leftovers
    # Loading again gives the same key.
    assert SigningKey.load_or_create().key_id == key.key_id


@posix_only
def test_existing_trust_folder_is_tightened_for_the_default_key() -> None:
    folder = paths.data_dir() / "trust"
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    SigningKey.load_or_create()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_key_readable_by_others_is_refused(key: SigningKey, mode: int) -> None:
    assert key.path is not None
    key.path.chmod(mode)
    with pytest.raises(CheckpointError) as caught:
        SigningKey.load_or_create(key.path)
    message = str(caught.value)
    assert str(key.path) in message
    assert f"chmod 600 {key.path}" in message
    key.path.chmod(0o600)
    assert SigningKey.load_or_create(key.path).key_id == key.key_id


def test_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "ledger-key.pem"
    path.write_bytes(b"hello")
    path.chmod(0o600)
    with pytest.raises(CheckpointError, match="not an unencrypted PKCS#8 PEM"):
        SigningKey.load_or_create(path)


def test_distinct_keys_have_distinct_ids(key: SigningKey, other_key: SigningKey) -> None:
    assert key.key_id != other_key.key_id
    assert key.public_pem() != other_key.public_pem()


# --- entries and growth ----------------------------------------------------------------------


def test_entry_with_inclusion_proof_verifies_against_checkpoint(key: SigningKey) -> None:
    leaves = _leaves(13)
    checkpoint = key.sign_checkpoint(13, merkle.root(leaves), time=10.0)
    public = key.public_pem()
    for index in range(13):
        proof = merkle.inclusion_proof(leaves, index)
        verify_entry_against_checkpoint(checkpoint, public, index, leaves[index], proof)


def test_wrong_leaf_or_proof_does_not_verify(key: SigningKey) -> None:
    leaves = _leaves(13)
    checkpoint = key.sign_checkpoint(13, merkle.root(leaves), time=10.0)
    public = key.public_pem()
    proof = merkle.inclusion_proof(leaves, 5)
    with pytest.raises(CheckpointError, match="proof mismatch: entry 5"):
        verify_entry_against_checkpoint(checkpoint, public, 5, leaves[6], proof)
    with pytest.raises(CheckpointError, match="proof mismatch"):
        verify_entry_against_checkpoint(checkpoint, public, 6, leaves[5], proof)
    with pytest.raises(CheckpointError, match="proof mismatch"):
        verify_entry_against_checkpoint(
            checkpoint, public, 5, leaves[5], [*proof[:-1], _flip(proof[-1], 0)]
        )
    with pytest.raises(CheckpointError, match="proof mismatch"):
        verify_entry_against_checkpoint(checkpoint, public, 5, leaves[5], proof[:-1])
    with pytest.raises(CheckpointError, match="proof mismatch"):
        verify_entry_against_checkpoint(checkpoint, public, 13, leaves[5], proof)
    # An entry of a different, unsigned tree is not in the checkpoint either.
    other = _leaves(13, tag="other")
    with pytest.raises(CheckpointError, match="proof mismatch"):
        verify_entry_against_checkpoint(
            checkpoint, public, 5, other[5], merkle.inclusion_proof(other, 5)
        )


def test_entry_check_needs_a_valid_signature(key: SigningKey) -> None:
    leaves = _leaves(4)
    checkpoint = key.sign_checkpoint(4, merkle.root(leaves), time=10.0)
    forged = replace(checkpoint, time=11.0)
    with pytest.raises(CheckpointError, match="bad signature"):
        verify_entry_against_checkpoint(
            forged, key.public_pem(), 1, leaves[1], merkle.inclusion_proof(leaves, 1)
        )


@pytest.mark.parametrize(("old_size", "new_size"), [(1, 1), (1, 2), (3, 7), (4, 8), (5, 13)])
def test_growth_with_consistency_proof_verifies(
    key: SigningKey, old_size: int, new_size: int
) -> None:
    leaves = _leaves(new_size)
    old = key.sign_checkpoint(old_size, merkle.root(leaves[:old_size]), time=1.0)
    new = key.sign_checkpoint(new_size, merkle.root(leaves), time=2.0)
    proof = merkle.consistency_proof(leaves, old_size, new_size)
    verify_growth(old, new, key.public_pem(), proof)


def test_growth_from_the_empty_tree(key: SigningKey) -> None:
    leaves = _leaves(3)
    old = key.sign_checkpoint(0, merkle.EMPTY_ROOT, time=1.0)
    new = key.sign_checkpoint(3, merkle.root(leaves), time=2.0)
    verify_growth(old, new, key.public_pem(), [])


def test_forked_history_does_not_verify(key: SigningKey) -> None:
    history = _leaves(10)
    fork = [*history[:3], merkle.leaf_hash(b"rewritten entry 3"), *history[4:]]
    old = key.sign_checkpoint(5, merkle.root(history[:5]), time=1.0)
    new = key.sign_checkpoint(10, merkle.root(fork), time=2.0)
    public = key.public_pem()
    # Neither the honest proof of the original history nor the fork's own proof links them.
    for proof in (merkle.consistency_proof(history, 5, 10), merkle.consistency_proof(fork, 5, 10)):
        with pytest.raises(CheckpointError, match="proof mismatch"):
            verify_growth(old, new, public, proof)


def test_shrinking_or_foreign_growth_does_not_verify(
    key: SigningKey, other_key: SigningKey
) -> None:
    leaves = _leaves(8)
    old = key.sign_checkpoint(8, merkle.root(leaves), time=1.0)
    new = key.sign_checkpoint(4, merkle.root(leaves[:4]), time=2.0)
    with pytest.raises(CheckpointError, match="shrank"):
        verify_growth(old, new, key.public_pem(), [])
    small = key.sign_checkpoint(4, merkle.root(leaves[:4]), time=1.0)
    foreign = other_key.sign_checkpoint(8, merkle.root(leaves), time=2.0)
    with pytest.raises(CheckpointError, match="wrong key"):
        verify_growth(small, foreign, key.public_pem(), merkle.consistency_proof(leaves, 4, 8))
