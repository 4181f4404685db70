"""Where goa keeps its files: the platform's user data and config directories.

``GOA_DATA_DIR``, ``GOA_CONFIG_DIR`` and ``GOA_MODELS_DIR`` override them (the
test suite points data and config at temporary folders but keeps the models).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_dir, user_data_dir

APP = "goa"


def data_dir() -> Path:
    """Models, caches and ledgers live here."""
    override = os.environ.get("GOA_DATA_DIR")
    return Path(override) if override else Path(user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    """``config.toml`` (user pools and settings) lives here."""
    override = os.environ.get("GOA_CONFIG_DIR")
    return Path(override) if override else Path(user_config_dir(APP, appauthor=False))


def models_dir() -> Path:
    """Downloaded and assembled GGUF files; ``GOA_MODELS_DIR`` overrides it."""
    override = os.environ.get("GOA_MODELS_DIR")
    return Path(override) if override else data_dir() / "models"


def cache_path() -> Path:
    return data_dir() / "cache" / "responses.sqlite"


def config_path() -> Path:
    return config_dir() / "config.toml"
