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
