"""The processes of one job under a launcher (torchrun, or the deepspeed launcher with a
hostfile): which one this is, and which one writes the run directory.

A launcher sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in every process it starts; a
process without them is rank 0 of 1. Rank 0 writes the run directory (manifest, metrics, the
folders it renames into place) and holds its lock; every other rank reads the same artefacts and
writes only its own shards into folders rank 0 made (`shared_dir`). Folders are made, filled and
renamed between barriers, so no rank reads a half-written one; a rank that dies makes the
launcher stop the others, and the resume starts from the last saved step.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reasoner.errors import UserError


class LaunchError(UserError):
    """The launcher's environment is inconsistent, or a launched phase failed."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """This process writes the run directory."""
        return self.rank == 0

    @property
    def launched(self) -> bool:
        return self.world > 1


def current() -> Ranks:
    """This process's place in the job, from the launcher's variables.

    >>> current() == Ranks() if "WORLD_SIZE" not in os.environ else True
    True
    """
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = os.environ.get(name, "")
        try:
            values[name] = int(raw) if raw else default
        except ValueError:
            raise LaunchError(f"environment variable {name}={raw!r} is not an integer") from None
    ranks = Ranks(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if ranks.world < 1 or not 0 <= ranks.rank < ranks.world:
        raise LaunchError(f"RANK={ranks.rank} does not lie in WORLD_SIZE={ranks.world}")
    return ranks


def barrier() -> None:
    """Wait for every rank (a no-op in a single process or before the process group exists)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def install_dir(tmp: Path, target: Path) -> None:
    """Make the filled folder ``tmp`` become ``target``: its files synced to disk, then renamed
    into place (an older ``target`` moved aside first and removed), the parent synced. Shared by
    `reasoner.atomic.atomic_dir` (one process) and `shared_dir` (rank 0 of a job)."""
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def shared_dir(target: Path, ranks: Ranks) -> Iterator[Path]:
    """`reasoner.atomic.atomic_dir` for all ranks at once: rank 0 makes one temporary folder
    beside ``target`` (a fixed name, so every rank finds it), every rank writes its part, and
    after a barrier rank 0 renames it into place; no rank leaves before the rename."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.ranks")
    if ranks.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    try:
        yield tmp
        barrier()
        if ranks.main:
            install_dir(tmp, target)
        barrier()
    finally:
        if ranks.main:
            shutil.rmtree(tmp, ignore_errors=True)


def init_group(device: str) -> None:
    """The job's process group (gloo on CPU, NCCL on GPUs), from the launcher's variables; each
    rank on its own GPU. DeepSpeed's engine then runs on this group."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(current().local_rank)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    destroy_group_at_exit()


def destroy_group_at_exit() -> None:
    """Destroy the process group when the interpreter exits normally. Left to interpreter
    teardown, the group's communication threads can still be alive when their C++ objects are
    destructed, and a finished rank aborts ("terminate called without an active exception")
    instead of exiting 0; a SIGKILL skips this, as it skips every other exit hook."""
    atexit.register(_destroy_group)


def leave(code: int = 0) -> None:
    """End a launched rank whose work is done and saved. First a barrier, so no rank tears the
    process group down while another's last collective is still in flight to it; then the
    group's destruction; then, with its output flushed, the process leaves without the
    interpreter's teardown. Under ZeRO-3 (gloo) a finished rank could abort in that teardown,
    after its last Python line ("terminate called without an active exception", no Python frame
    left), which the launcher reports as the job failing; nothing is left to clean up by then (the
    run's files are written and its lock released)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    _destroy_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port nothing on this host listens on now, for a rendezvous of this host's ranks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
