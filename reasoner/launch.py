"""`iterate` runs a training phase on several processes (or nodes) through a launcher.

With ``train.launcher`` set, the loop does not train in its own process: it starts the
launcher on the phase's own command (``reasoner train --run RUN --iteration K``, likewise
`reward`, `judge`, `prime`, `mstep`) and waits. The loop keeps the run's writer lock; the
launched rank 0 writes under it (``--launched-by PID@HOST`` names the holder it may write
for) and marks the phase complete or failed in the manifest, which the loop then reads. If the
loop dies, the launcher gets SIGTERM and stops its ranks (Linux's parent-death signal), so no
orphaned job writes a run that a new `iterate` has taken over.

| launcher | command (then ``reasoner.cli PHASE --run-dir RUN --iteration K --launched-by ...``) |
|---|---|
| `torchrun` | ``python -m torch.distributed.run --nproc_per_node P [--master_port F] [ARGS] -m`` |
| `deepspeed` | ``deepspeed [--hostfile H] --num_gpus P [--master_port F] --no_local_rank [ARGS] --module`` |

``P`` is ``train.processes``, ``H`` ``train.hostfile`` and ``ARGS`` ``train.launcher_args``;
``F`` is a free port of this host, given when neither a hostfile nor ARGS place the rendezvous.
A user can also run the phase command under a launcher by hand (see README "Scaling out").
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from reasoner.config import ConfigError, TrainConfig
from reasoner.ranks import LaunchError, free_port
from reasoner.registry import Registry

Prefix = Callable[[TrainConfig], list[str]]
LAUNCHERS: Registry[Prefix] = Registry("launcher")


# launcher arguments that place the rendezvous themselves; without any of them (and without a
# hostfile) the job is this host's alone and gets a port nothing listens on, so two runs on one
# host, or a launcher still shutting down on the default 29500, do not collide
_RENDEZVOUS = ("--master_port", "--master-port", "--rdzv", "--standalone", "--nnodes", "--master_addr", "--master-addr")


def _port(tc: TrainConfig) -> list[str]:
    if tc.hostfile or any(a.startswith(_RENDEZVOUS) for a in tc.launcher_args):
        return []
    return ["--master_port", str(free_port())]


def _torchrun(tc: TrainConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(tc.processes),
        *_port(tc),
        *tc.launcher_args,
        "-m",
    ]


def _deepspeed(tc: TrainConfig) -> list[str]:
    exe = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    if not Path(exe).exists():
        raise LaunchError("train.launcher = 'deepspeed' needs DeepSpeed's launcher: pip install 'reasoner[deepspeed]'")
    nodes = ["--hostfile", tc.hostfile] if tc.hostfile else ["--num_gpus", str(tc.processes)]
    # --no_local_rank: the phase command reads LOCAL_RANK from the environment, not an argument
    return [exe, *nodes, *_port(tc), "--no_local_rank", *tc.launcher_args, "--module"]


LAUNCHERS["torchrun"] = _torchrun
LAUNCHERS["deepspeed"] = _deepspeed


def check(tc: TrainConfig) -> None:
    """Fail before any phase runs: an unknown launcher, a hostfile that is not there."""
    if not tc.launcher:
        return
    LAUNCHERS.lookup(tc.launcher)
    if tc.hostfile:
        if tc.launcher != "deepspeed":
            raise ConfigError("train.hostfile is read by the deepspeed launcher; set train.launcher = 'deepspeed'")
        if not Path(tc.hostfile).is_file():
            raise ConfigError(f"train.hostfile {tc.hostfile} does not exist")


def holder_token() -> str:
    """How this process names itself to the ranks it launches (the run lock's holder)."""
    return f"{os.getpid()}@{socket.gethostname()}"


def command(tc: TrainConfig, phase: str, run: Path, iteration: int) -> list[str]:
    prefix = LAUNCHERS.lookup(tc.launcher)(tc)
    # --run-dir, not --run: torchrun's parser reads --run as an abbreviation of its --run-path
    args = ["reasoner.cli", phase, "--run-dir", str(run), "--iteration", str(iteration)]
    return [*prefix, *args, "--launched-by", holder_token()]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run(tc: TrainConfig, phase: str, run_path: Path, iteration: int) -> None:
    """Start the launcher on one phase and wait; raise `LaunchError` if it fails. Its output
    goes to this process's stderr, so ``--json`` results on stdout stay clean."""
    argv = command(tc, phase, run_path, iteration)
    done = subprocess.run(argv, stdout=sys.stderr, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    if done.returncode != 0:
        raise LaunchError(
            f"{phase} of iteration {iteration} under {tc.launcher} exited with status {done.returncode}"
            f" (its output is above); `reasoner iterate --run {run_path}` resumes from its last saved step"
        )
