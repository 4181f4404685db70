"""Run untrusted HumanEval completions in a contained child process.

The program (prompt + completion + test + ``check(entry_point)``) is written into
a throw-away directory and run by a fresh Python interpreter (``-I -S``) started
through a small launcher. What contains it, when the host process is root (the
usual case in the evaluation containers):

- **Own user.** The child runs as a private, otherwise unused uid/gid
  (``SANDBOX_UID_BASE + slot``; one per concurrent run) with no supplementary
  groups and no capabilities. It can write only its own work directory and
  world-writable places (``/tmp``, ``/dev/shm``); it cannot delete or change
  files owned by root. It *can still read* world-readable files.
- **Own network and PID namespaces** (``unshare(CLONE_NEWNET | CLONE_NEWPID)``
  in the launcher). The new network namespace has only a loopback device, and it
  is down: no connection to the host's loopback or to anything else. The child
  is PID 1 of its PID namespace, so when it dies the kernel kills every process
  it left behind (even ones that called ``setsid``); ``PR_SET_PDEATHSIG`` kills
  it when the launcher dies.
- **Resource limits**: ``RLIMIT_AS`` (memory), ``RLIMIT_NPROC`` (per private
  uid, so a fork bomb cannot starve other runs), ``RLIMIT_FSIZE``,
  ``RLIMIT_NOFILE``, ``RLIMIT_CPU`` and ``RLIMIT_CORE = 0``; a wall-clock
  timeout kills the launcher's process group and the namespace's PID 1.
- **Minimal environment**: only ``PATH``, ``HOME``, ``TMPDIR``, ``LANG``; no API
  keys from the parent.
- **Audit hook** (defence in depth, and the only network block when the
  namespaces are not available): the program starts by installing a
  ``sys.addaudithook`` hook that refuses socket connect/bind/sendto/
  getaddrinfo. Pure Python cannot remove it, but ``ctypes`` can bypass it.

Not contained: reading world-readable host files, writing to world-writable
directories, CPU/memory pressure within the limits, kernel exploits. Without
root (no setuid, no namespaces) only the rlimits, the timeout, the environment
and the audit hook remain; the child then runs as the caller's own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "error", "oom"]

SANDBOX_UID_BASE = 2_000_000
"""First private uid/gid used for sandboxed children (no passwd entry needed)."""
MAX_SLOTS = 64
DETAIL_LIMIT = 2000

_EXIT_LAUNCH_FAILED = 126


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed run."""

    passed: bool
    status: Status
    detail: str
    duration_s: float


# The launcher runs as the caller (root), takes the namespaces, forks the child,
# which sets its limits, drops to the private uid and execs the interpreter.
# argv: uid gid mem_bytes nproc fsize cpu_s use_ns python program pid_fd
_LAUNCHER = r"""
import ctypes, os, resource, sys
uid, gid, mem, nproc, fsize, cpu, use_ns = (int(a) for a in sys.argv[1:8])
python, program, pid_fd = sys.argv[8], sys.argv[9], int(sys.argv[10])
libc = ctypes.CDLL(None, use_errno=True)
ns = bool(use_ns) and libc.unshare(0x40000000 | 0x20000000) == 0
pid = os.fork()
if pid == 0:
    try:
        os.close(pid_fd)
        lim = resource.setrlimit
        lim(resource.RLIMIT_CORE, (0, 0))
        lim(resource.RLIMIT_AS, (mem, mem))
        lim(resource.RLIMIT_FSIZE, (fsize, fsize))
        lim(resource.RLIMIT_CPU, (cpu, cpu))
        lim(resource.RLIMIT_NOFILE, (256, 256))
        lim(resource.RLIMIT_NPROC, (nproc, nproc))
        if uid >= 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        if not ns and os.getppid() == 1:
            os._exit(126)
        env = {k: v for k, v in os.environ.items()}
        env["GOA_SANDBOX_NETNS"] = "1" if ns else "0"
        os.execve(python, [python, "-I", "-S", program], env)
    except BaseException as exc:
        os.write(2, ("sandbox launch failed: %r\n" % (exc,)).encode())
        os._exit(126)
os.write(pid_fd, b"%d\n" % pid)
os.close(pid_fd)
_, status = os.waitpid(pid, 0)
if os.WIFSIGNALED(status):
    os._exit(128 + os.WTERMSIG(status))
os._exit(os.WEXITSTATUS(status))
"""

_PROGRAM_HEADER = """\
import sys as _goa_sys
def _goa_no_network(event, args):
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                 "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        raise PermissionError("network access is disabled in the sandbox")
_goa_sys.addaudithook(_goa_no_network)
del _goa_sys, _goa_no_network
"""


def build_program(completion: str, prompt: str, test: str, entry_point: str) -> str:
    """The HumanEval check program: prompt, completion, test and the check call."""
    return f"{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n"


def _world_accessible(path: Path) -> bool:
    """True when every directory above ``path`` is world-searchable and it is world-readable."""
    try:
        real = path.resolve()
        for parent in real.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        return bool(real.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


@cache
def sandbox_python() -> str:
    """An interpreter that an unprivileged uid can run (``sys.executable`` if possible)."""
    if os.geteuid() != 0:
        return sys.executable
    candidates = [
        (Path(sys.executable), Path(sys.base_prefix)),
        (Path("/usr/bin/python3"), Path("/usr/lib")),
        (Path("/usr/local/bin/python3"), Path("/usr/local/lib")),
    ]
    for exe, lib in candidates:
        if exe.exists() and _world_accessible(exe) and _world_accessible(lib):
            return str(exe.resolve())
    return sys.executable


class _Slots:
    """Hands out private uids so concurrent runs never share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free = list(range(MAX_SLOTS))
        self._available = threading.Semaphore(MAX_SLOTS)

    @contextlib.contextmanager
    def take(self) -> Iterator[int]:
        self._available.acquire()
        with self._lock:
            slot = self._free.pop()
        try:
            yield slot
        finally:
            with self._lock:
                self._free.append(slot)
            self._available.release()


_slots = _Slots()


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= DETAIL_LIMIT else "..." + text[-DETAIL_LIMIT:]


def _read_tail(path: Path) -> bytes:
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 4 * DETAIL_LIMIT))
        return f.read()


def _kill(proc: subprocess.Popen[bytes], child_pid: int | None) -> None:
    """Kill the namespace's PID 1 first: the launcher's wait for it returns only once
    the kernel has killed every process in the namespace. Then the process group."""
    if child_pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _classify(returncode: int, stderr: str) -> Status:
    if returncode == 0:
        return "passed"
    if "MemoryError" in stderr:
        return "oom"
    if "AssertionError" in stderr:
        return "failed"
    return "error"


def run_program(
    program: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 32,
    max_file_mb: int = 16,
    network_namespace: bool = True,
    audit_hook: bool = True,
) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox; exit status 0 means passed."""
    root = os.geteuid() == 0
    with _slots.take() as slot, tempfile.TemporaryDirectory(prefix="goa-sandbox-") as tmp:
        base = Path(tmp)
        base.chmod(0o711)
        work = base / "work"
        work.mkdir(mode=0o700)
        uid = gid = SANDBOX_UID_BASE + slot if root else -1
        if root:
            os.chown(work, uid, gid)
        prog_path = work / "program.py"
        prog_path.write_text((_PROGRAM_HEADER if audit_hook else "") + program, encoding="utf-8")
        prog_path.chmod(0o444)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "TMPDIR": str(work),
            "LANG": "C.UTF-8",
        }
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _LAUNCHER,
            str(uid),
            str(gid),
            str(memory_mb * 1024 * 1024),
            str(max_processes),
            str(max_file_mb * 1024 * 1024),
            str(int(timeout_s) + 2),
            "1" if (root and network_namespace) else "0",
            sandbox_python(),
            str(prog_path),
        ]
        out_path, err_path = base / "stdout", base / "stderr"
        pid_r, pid_w = os.pipe()
        argv.append(str(pid_w))
        start = time.monotonic()
        timed_out = False
        child_pid: int | None = None
        try:
            with out_path.open("wb") as out, err_path.open("wb") as err:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=work,
                    env=env,
                    start_new_session=True,
                    pass_fds=(pid_w,),
                    close_fds=True,
                )
            os.close(pid_w)
            pid_w = -1
            with os.fdopen(pid_r, "rb") as pid_pipe:
                pid_r = -1
                line = pid_pipe.readline().strip()
            child_pid = int(line) if line else None
            try:
                returncode = proc.wait(timeout=max(0.0, timeout_s - (time.monotonic() - start)))
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill(proc, child_pid)
                returncode = proc.wait()
        finally:
            for fd in (pid_r, pid_w):
                if fd >= 0:
                    os.close(fd)
        duration = time.monotonic() - start
        # Anything that escaped the process group (only possible without a PID namespace).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        stderr = _tail(_read_tail(err_path))
        stdout = _tail(_read_tail(out_path))
    if timed_out:
        status: Status = "timeout"
        detail = f"timed out after {timeout_s:g} s\n{stderr}"
    else:
        status = _classify(returncode, stderr)
        detail = stderr or stdout
        if returncode < 0 or returncode > 128:
            detail = f"exit status {returncode}\n{detail}"
    return SandboxResult(
        passed=status == "passed",
        status=status,
        detail=_tail(detail.encode()),
        duration_s=duration,
    )


def run_humaneval(
    completion: str,
    prompt: str,
    test: str,
    entry_point: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
) -> SandboxResult:
    """Check one HumanEval completion in the sandbox."""
    program = build_program(completion, prompt, test, entry_point)
    return run_program(program, timeout_s=timeout_s, memory_mb=memory_mb)


_DEFAULT_CONCURRENCY = max(1, min(4, os.cpu_count() or 1))
_semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _semaphores.get(loop)
    if sem is None:
        for old in [lp for lp in _semaphores if lp.is_closed()]:
            del _semaphores[old]
        sem = _semaphores[loop] = asyncio.Semaphore(_DEFAULT_CONCURRENCY)
    return sem


async def arun_humaneval(
    completion: str,
    prompt: str,
    test: str,
    entry_point: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    semaphore: asyncio.Semaphore | None = None,
) -> SandboxResult:
    """Async :func:`run_humaneval`; at most ``semaphore`` (default: min(4, CPUs)) at once."""
    async with semaphore or _semaphore():
        return await asyncio.to_thread(
            run_humaneval,
            completion,
            prompt,
            test,
            entry_point,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
        )


__all__ = [
    "SandboxResult",
    "Status",
    "arun_humaneval",
    "build_program",
    "run_humaneval",
    "run_program",
    "sandbox_python",
]
