"""Run model-written Python (tool-integrated reasoning) in a limited subprocess.

What it does:
- a fresh `python -I` subprocess (no user site, no PYTHON* variables) in a new session, with an
  empty temporary working folder that is deleted afterwards and a scrubbed environment;
- resource limits: CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), size of any file it
  writes (RLIMIT_FSIZE), number of open files; a wall-clock limit after which the whole
  process group is killed; stdout and stderr cut at a byte cap;
- a network namespace of its own when the kernel allows one (`unshare(CLONE_NEWNET)`; then it
  has no network at all), and in any case a Python audit hook, installed before the code runs
  and impossible to remove from Python, that refuses: sockets, `os.system`, `subprocess`,
  `os.exec*`/`os.spawn*`/`os.posix_spawn`, `os.fork`, `ctypes`, and opening a file for writing
  outside the working folder (also renames, removals and directory changes outside it).

What it does not stop (it is a guard against accidents and casual misuse, not a security
boundary against a determined adversary):
- code that escapes the audit hook through native extensions already importable (a compiled
  module that calls libc directly); no seccomp filter, container or VM stands behind it;
- reading files the user running it can read (only writes are confined);
- without a network namespace, network access by such native code;
- memory the kernel counts outside RLIMIT_AS (page cache) and CPU used by the kernel.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

_PRELUDE = r"""
import sys, os
_root = os.path.realpath(os.getcwd())
_blocked = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "os.system",
            "subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn",
            "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "pty.spawn",
            "sys.addaudithook", "os.chdir", "os.chroot", "os.symlink", "os.link", "os.chmod", "os.chown"}
def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "/proc/self/fd")
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)
def _hook(event, args):
    if event in _blocked or event.startswith(("os.exec", "os.spawn")):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and len(args) >= 2:
        path, mode = args[0], args[1]
        flags = args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if writing and not isinstance(path, int) and not _inside(path):
            raise PermissionError(f"sandbox: writing outside the working folder: {path}")
    if event in ("os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "os.mkdir", "shutil.rmtree"):
        for p in args[:2]:
            if isinstance(p, (str, bytes, os.PathLike)) and not _inside(p):
                raise PermissionError(f"sandbox: {event} outside the working folder")
sys.addaudithook(_hook)
del _hook
__code = sys.stdin.read()
exec(compile(__code, "<sandbox>", "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_bytes: int = 512 * 1024**2
    file_bytes: int = 1024**2
    output_bytes: int = 64 * 1024
    open_files: int = 64


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    network_isolated: bool
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _unshare_net() -> bool:
    """Enter a new user+network namespace in the child; False when the kernel refuses."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        clone_newuser, clone_newnet = 0x10000000, 0x40000000
        if libc.unshare(clone_newnet) == 0 or libc.unshare(clone_newuser | clone_newnet) == 0:
            return True
    except OSError:
        pass
    return False


def _child_setup(limits: Limits, flag_fd: int) -> None:
    isolated = _unshare_net()
    os.write(flag_fd, b"1" if isolated else b"0")
    os.close(flag_fd)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(code: str, limits: Limits = Limits()) -> Result:
    """Run ``code`` under the limits above and return its output; never raises on bad code."""
    with tempfile.TemporaryDirectory(prefix="reasoner-sandbox-") as workdir:
        read_fd, write_fd = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _PRELUDE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
            pass_fds=(write_fd,),
            preexec_fn=lambda: _child_setup(limits, write_fd),  # noqa: PLW1509 - no threads run here
        )
        os.close(write_fd)
        timed_out = False
        started = time.monotonic()
        try:
            out, err = proc.communicate(code.encode(), timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        finally:
            _kill_group(proc)  # anything it left running in its session
        isolated = os.read(read_fd, 1) == b"1"
        os.close(read_fd)
        if proc.returncode is not None and proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            timed_out = timed_out or time.monotonic() - started >= limits.cpu_seconds * 0.5
        truncated = len(out) > limits.output_bytes or len(err) > limits.output_bytes
        return Result(
            stdout=out[: limits.output_bytes].decode("utf-8", "replace"),
            stderr=err[: limits.output_bytes].decode("utf-8", "replace"),
            returncode=proc.returncode,
            timed_out=timed_out,
            network_isolated=isolated,
            truncated=truncated,
        )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
