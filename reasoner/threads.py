"""CPU threads for torch that give way to other busy processes.

With every core in use by torch's OpenMP threads, one other busy process on the machine makes
each parallel region wait for the thread that was descheduled, and spinning waiters burn the
time slices the others need: on 2 cores a small generation ran 10-17x slower (issue "Runs a
user can trust"). Two remedies, both on by default:

- OpenMP's wait policy is PASSIVE (set in ``reasoner/__init__.py`` before torch loads, unless
  the user set it): a waiting thread sleeps instead of spinning.
- ``run.threads = 0`` (auto): a daemon thread samples ``/proc/stat`` every ``INTERVAL`` seconds
  and counts the cores that *other* processes keep busy; the training and decoding loops call
  `adapt` between steps and use the cores left (at least 1). A fixed ``run.threads = N`` turns
  this off. Not covered: machines without ``/proc/stat`` (macOS) keep every core.
"""

from __future__ import annotations

import os
import threading
import time

import torch

INTERVAL = 1.0  # seconds between samples of the machine's load

_lock = threading.Lock()
_state = {"desired": 0, "auto": False}
_sampler: threading.Thread | None = None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _busy_jiffies() -> tuple[float, float] | None:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [float(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def others_busy(previous: tuple[float, float, float, float], now: tuple[float, float, float, float]) -> float:
    """Cores kept busy by other processes between two samples ``(busy, total, own_cpu_s, wall)``:
    the machine's busy share times its cores, minus this process's own CPU seconds per second."""
    busy, total = now[0] - previous[0], now[1] - previous[1]
    wall = now[3] - previous[3]
    if total <= 0 or wall <= 0:
        return 0.0
    machine = busy / total * cores()
    own = (now[2] - previous[2]) / wall
    return max(0.0, machine - own)


def choose(n_cores: int, others: float) -> int:
    """Threads to use: the cores the others leave free, rounded, at least 1."""
    return max(1, min(n_cores, int(n_cores - others + 0.5)))


def _sample() -> tuple[float, float, float, float] | None:
    machine = _busy_jiffies()
    if machine is None:
        return None
    return machine[0], machine[1], time.process_time(), time.monotonic()


def _watch() -> None:
    previous = _sample()
    while previous is not None:
        time.sleep(INTERVAL)
        now = _sample()
        if now is None:
            return
        with _lock:
            if _state["auto"]:
                _state["desired"] = choose(ceiling(), others_busy(previous, now))
        previous = now


def ceiling() -> int:
    """The most threads auto mode uses: ``$OMP_NUM_THREADS`` when set, else every core."""
    try:
        return max(1, min(cores(), int(os.environ["OMP_NUM_THREADS"])))
    except (KeyError, ValueError):
        return cores()


def configure(threads: int) -> None:
    """``threads > 0``: use exactly that many. ``0``: adapt to the machine's load (see above)."""
    global _sampler
    with _lock:
        _state["auto"] = threads == 0 and ceiling() > 1
        _state["desired"] = threads or ceiling()
    torch.set_num_threads(_state["desired"])
    if _state["auto"] and (_sampler is None or not _sampler.is_alive()):
        _sampler = threading.Thread(target=_watch, name="reasoner-threads", daemon=True)
        _sampler.start()


def adapt() -> None:
    """Apply the thread count the sampler chose. Call it from the thread that runs torch, between
    steps: OpenMP's thread count is a per-thread setting, so the sampler cannot set it."""
    desired = _state["desired"]
    if _state["auto"] and desired and desired != torch.get_num_threads():
        torch.set_num_threads(desired)
