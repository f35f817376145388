"""One writer per run: an advisory lock on ``RUN/lock`` with the holder written inside.

The lock is ``flock(2)`` on a file that is never renamed or deleted, so:

- the kernel releases it when the holder's process dies, SIGKILL included: a killed run never
  blocks the next one, and no stale-lock timeout is needed;
- on NFS (v3 with lockd, v4) Linux turns ``flock`` into a POSIX lock held by the server, so two
  hosts sharing a run folder exclude each other too. Not covered: file systems mounted without
  lock support (``nolock``, some FUSE mounts), where every ``flock`` succeeds; and a client host
  that dies holds an NFSv4 lock until the server's lease expires (about 90 s).

The holder (host, pid, since, command) is written into the file after the lock is taken, so a
refused writer can say who holds it. A reader finds whether anyone holds it with a shared,
non-blocking probe that writes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reasoner.errors import UserError

RETRY_SECONDS = 2.0  # a reader's probe holds a shared lock for microseconds; wait that out


class LockHeld(UserError):
    """Another live process is writing this run."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since} ({self.command})"


# path -> (fd, depth): the lock is re-entrant within one process (a command that opens the
# same run twice must not refuse itself; flock would, since each open() is a new description).
_HELD: dict[str, tuple[int, int]] = {}


def _key(path: Path) -> str:
    return str(Path(path).resolve())


def acquire(path: Path, command: str | None = None) -> None:
    """Take the lock at ``path`` (creating the file) or raise `LockHeld` naming the holder."""
    key = _key(path)
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = read_holder(path)
                os.close(fd)
                who = holder.describe() if holder else "another process"
                raise LockHeld(f"{Path(path).parent} is being written by {who}; wait for it or stop it") from None
            time.sleep(0.05)
    holder = Holder(socket.gethostname(), os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), command or _command())
    data = (json.dumps(holder.__dict__, sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
    _HELD[key] = (fd, 1)


def release(path: Path) -> None:
    key = _key(path)
    if key not in _HELD:
        return
    fd, depth = _HELD.pop(key)
    if depth > 1:
        _HELD[key] = (fd, depth - 1)
        return
    os.ftruncate(fd, 0)  # no holder to name once released
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def held_here(path: Path) -> bool:
    return _key(path) in _HELD


def live_holder(path: Path) -> Holder | None:
    """The live process holding the lock, or None. Opens the file read-only and writes nothing."""
    if held_here(path):
        return read_holder(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or Holder("?", 0, "?", "?")
    finally:
        os.close(fd)  # closing the descriptor drops a shared lock we took
    return None


def read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "null")
        return Holder(**data) if isinstance(data, dict) else None
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def _command() -> str:
    args = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else ["python"]
    return " ".join(args)[:200]
