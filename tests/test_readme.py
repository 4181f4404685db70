"""README's examples stay valid: its code parses, its config files load."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from goa.eval.method_specs import load_method_specs

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_python_examples_parse() -> None:
    examples = blocks("python")
    assert examples
    for code in examples:
        ast.parse(code)


def test_methods_config_example_loads(tmp_path: Path) -> None:
    (example,) = [b for b in blocks("toml") if "[[methods]]" in b]
    path = tmp_path / "methods.toml"
    path.write_text(example)
    assert [spec.label for spec in load_method_specs(path)] == ["goa", "goa-fast", "single", "moa"]


def test_trust_ledger_example_runs_as_written(tmp_path: Path) -> None:
    """Each line of the ledger example, in a fresh data folder, exits 0."""
    import os
    import subprocess
    import sys

    (example,) = [b for b in blocks("bash") if "trust ledger append" in b]
    bin_dir = str(Path(sys.executable).parent) + "/"
    env = {**os.environ, "GOA_DATA_DIR": str(tmp_path / "data")}
    for line in example.strip().splitlines():
        command = line.split("  #")[0].strip().replace(".venv/bin/", bin_dir)
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (line, done.stdout, done.stderr)
