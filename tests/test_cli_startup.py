"""``goa --help`` stays instant: the CLI imports no heavy library until a command needs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("litellm", "llama_cpp", "torch", "datasets", "transformers", "networkx", "openai")


def test_cli_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, cli.goa_app, cli.trust_app; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_console_scripts_answer_help() -> None:
    bin_dir = Path(sys.executable).parent
    for script in ("goa", "trust"):
        result = subprocess.run(
            [str(bin_dir / script), "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
