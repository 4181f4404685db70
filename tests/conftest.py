"""Test-suite wide rules.

- Real model requests are forbidden unless a test is marked
  ``@pytest.mark.allow_model_requests``.
- The user's config and data directories are replaced by temporary ones; the
  models folder stays the real one so that downloaded models are reused.
- Tests marked ``gpu`` skip where there is no CUDA GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from goa import paths
from goa.inference import guard

# Fix the models folder before data_dir is redirected, so models are shared.
os.environ.setdefault("GOA_MODELS_DIR", str(paths.models_dir()))


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("gpu") for item in items) and not _has_gpu():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("GOA_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("GOA_CONFIG_DIR", str(root / "config"))


@pytest.fixture(autouse=True)
def _forbid_real_requests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    allowed = request.node.get_closest_marker("allow_model_requests") is not None
    if allowed:
        monkeypatch.delenv(guard.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(guard.ENV_VAR, "1")
    guard.forbid_model_requests(not allowed)
    yield
    guard.forbid_model_requests(False)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def shared_data(repo_root: Path) -> Path:
    """``../shared/data`` beside the project (CI lays it there too)."""
    path = repo_root.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path
