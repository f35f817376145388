"""A training job for the DeepSpeed tests, run as one process or under torchrun: N steps of RFT
on a fixed batch, printing rank 0's losses as JSON. ``--save-at K`` saves the train state after
step K; ``--die-at K`` then SIGKILLs every rank; ``--resume`` loads the state first."""

import argparse
import json
import os
import random
import signal
from dataclasses import replace
from pathlib import Path

import torch

from reasoner.config import RoleTrainConfig
from reasoner.ranks import leave
from reasoner.training.engine import get_engine
from reasoner.training.objectives.rft import RFT, SFTExample


def batch() -> list[SFTExample]:
    rng = random.Random(0)
    return [
        SFTExample(
            [rng.randrange(3, 90) for _ in range(6)], [rng.randrange(3, 90) for _ in range(rng.randint(3, 9))], str(i)
        )
        for i in range(8)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="deepspeed")
    ap.add_argument("--spec", default="tiny")
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--lora", type=int, default=0)
    ap.add_argument("--micro", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--state", default="")
    ap.add_argument("--save-at", type=int, default=0)
    ap.add_argument("--die-at", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", default="")
    ap.add_argument("--matrix", default="", help="ENGINE:STAGE:LORA,...: --steps steps of each, in one process")
    a = ap.parse_args()
    if a.matrix:
        out = {}
        for item in a.matrix.split(","):
            name, stage, lora = item.split(":")
            cfg = RoleTrainConfig(lora_rank=int(lora), batch_size=8, micro_batch_size=a.micro, zero_stage=int(stage))
            engine = get_engine(name)(a.spec, replace(cfg, learning_rate=1e-2), 10, "cpu", seed=1)
            out[item] = [engine.train_step(batch(), RFT())["loss"] for _ in range(a.steps)]
        print("MATRIX " + json.dumps(out), flush=True)
        return
    cfg = RoleTrainConfig(
        lora_rank=a.lora, batch_size=8, micro_batch_size=a.micro, zero_stage=a.stage, learning_rate=1e-2
    )
    engine = get_engine(a.engine)(a.spec, cfg, 10, "cpu", seed=1)
    state = Path(a.state) if a.state else None
    if a.resume:
        engine.load_state(state)
    losses = []
    data = batch()
    while engine.step < a.steps:
        losses.append(engine.train_step(data, RFT())["loss"])
        if a.save_at and engine.step == a.save_at:
            state.mkdir(parents=True, exist_ok=True)
            engine.save_state(state)
            if a.die_at == a.save_at:
                if torch.distributed.is_initialized():
                    torch.distributed.barrier()
                os.kill(os.getpid(), signal.SIGKILL)
    if a.export:
        engine.export(Path(a.export), engine.tokenizer)
    if int(os.environ.get("RANK", "0")) == 0:
        print("LOSSES " + json.dumps(losses), flush=True)
    leave()  # as a launched phase command ends (reasoner.cli)


if __name__ == "__main__":
    main()
