"""Training engine `deepspeed`: DeepSpeed ZeRO stages 0-3 behind the engine protocol.

Built from a role's model spec, so that at ZeRO-3 the model is constructed inside
``deepspeed.zero.Init`` (each rank holds only its shard of the weights) and, for a folder or a
hub model, loaded by transformers under `HfDeepSpeedConfig`. The DeepSpeed JSON config comes
from the role's section: ``zero_stage``, ``offload`` (ZeRO-Offload: optimizer state in CPU
memory), batch sizes, clipping; a file named in ``deepspeed_config`` is read and its ``"auto"``
fields (and the ones it leaves out) are filled from the section, as transformers' Trainer does.

Data parallel: every rank sees the whole step's batch and takes its share of the micro-batches
(rank r takes micro-batches r, r + W, ...; a partial last batch is padded with weight-0 ones, so
every rank makes the same micro-steps and the optimizer steps once per step); the loss is
normalised by the units of the whole global step, and DeepSpeed's gradient average over W ranks
is undone by a factor W, so 1 rank and W ranks compute the same gradient for the same global
batch. Objectives see the module
(`engine.module`), never DeepSpeed's internals.

On CPU it runs with gloo (``DS_ACCELERATOR=cpu``); see ../shared/PLATFORM.md for what was
measured. DeepSpeed is an optional extra: ``pip install 'reasoner[deepspeed]'``.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import torch

from reasoner import ranks, threads
from reasoner.config import ConfigError, RoleTrainConfig
from reasoner.errors import UserError
from reasoner.training.engine import Objective, lr_lambda, register, with_lora


class DeepSpeedMissing(UserError):
    """The deepspeed engine was asked for where DeepSpeed is not installed."""


def require_deepspeed() -> None:
    """Raise `DeepSpeedMissing` (exit 2, with the install command) where DeepSpeed is absent."""
    _import_deepspeed()


def _import_deepspeed():
    try:
        import deepspeed
    except ImportError:
        raise DeepSpeedMissing(
            "train engine 'deepspeed' needs DeepSpeed: pip install 'reasoner[deepspeed]' (or engine = \"torch\")"
        ) from None
    return deepspeed


def ds_config(cfg: RoleTrainConfig, world: int) -> dict[str, Any]:
    """The DeepSpeed config of a role's section: ``cfg.deepspeed_config``'s file (if any) with
    every ``"auto"`` or missing field filled from the section.

    >>> ds_config(RoleTrainConfig(batch_size=8, micro_batch_size=2), world=2)["gradient_accumulation_steps"]
    2
    """
    if cfg.batch_size % (cfg.micro_batch_size * world):
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be a multiple of micro_batch_size {cfg.micro_batch_size}"
            f" x {world} processes"
        )
    data: dict[str, Any] = {}
    if cfg.deepspeed_config:
        path = Path(cfg.deepspeed_config)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"deepspeed_config {path} does not exist") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"deepspeed_config {path}: invalid JSON: {err}") from None
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if cfg.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    ours: dict[str, Any] = {
        "train_batch_size": cfg.batch_size,
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.batch_size // (cfg.micro_batch_size * world),
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.offload:  # ZeRO-Offload steps with DeepSpeed's CPU Adam (built on first use)
        ours["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay},
        }
    return _fill(data, ours)


def _fill(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    out = dict(theirs)
    for key, value in ours.items():
        if key not in out or out[key] == "auto":
            out[key] = value
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _fill(out[key], value)
    return out


def init_distributed(device: str) -> None:
    """One process without a launcher gets the rendezvous variables DeepSpeed expects; on CPU,
    the CPU accelerator (gloo) without the shared-memory op it would JIT-compile."""
    if torch.device(device).type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(ranks.free_port()))
    deepspeed = _import_deepspeed()
    from deepspeed import ops

    ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo" if torch.device(device).type == "cpu" else "nccl")
        ranks.destroy_group_at_exit()


class _Runner(torch.nn.Module):
    """What DeepSpeed wraps: the model, and a forward that runs an objective's loss on it, so
    an objective that calls the model's parts itself still goes through `engine(...)`."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn):
        return fn(self.model)


class DeepSpeedEngine:
    def __init__(self, spec: str, cfg: RoleTrainConfig, total_steps: int, device: str = "cpu", seed: int = 0):
        from reasoner import models

        init_distributed(device)
        deepspeed = _import_deepspeed()
        self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.cfg, self.total_steps, self.spec = cfg, total_steps, spec
        self.device = torch.device(device)
        self.config = ds_config(cfg, self.world)
        self.tokenizer = models.load_tokenizer(spec)
        self.pad_id = self.tokenizer.pad_token_id or 0
        model = with_lora(self._build(spec), cfg, seed)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = None
        if "optimizer" not in self.config:
            optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.engine, *_ = deepspeed.initialize(  # optimizer and scheduler live in the engine
            model=_Runner(model),
            model_parameters=trainable,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps, total_steps)),
            config=self.config,
        )
        self.model = self.engine.module.model
        self.step = 0

    def _build(self, spec: str):
        """The model; at stage 3 a folder or hub model is loaded by transformers under ZeRO-3's
        partitioning context, so no rank ever holds all of it. (A tiny test model is built whole
        and partitioned by `deepspeed.initialize`.)"""
        from reasoner import models

        if self.cfg.zero_stage < 3 or models.is_tiny(spec):
            return models.load(spec, str(self.device)).model
        from transformers import AutoModelForCausalLM
        from transformers.integrations import HfDeepSpeedConfig

        self._hf_ds = HfDeepSpeedConfig(self.config)  # kept alive: from_pretrained then loads under zero.Init
        return AutoModelForCausalLM.from_pretrained(models.resolve(spec), dtype=torch.float32)

    @classmethod
    def from_spec(cls, spec: str, cfg: RoleTrainConfig, total_steps: int, device: str = "cpu", seed: int = 0):
        return cls(spec, cfg, total_steps, device, seed)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, batch: list[Any], objective: Objective) -> dict[str, float]:
        threads.adapt()
        mb = self.cfg.micro_batch_size
        micro = [batch[i : i + mb] for i in range(0, len(batch), mb)]
        slots = self.config["gradient_accumulation_steps"] * self.world
        if len(micro) > slots:
            raise ValueError(f"{len(batch)} examples exceed the global batch of {slots} x {mb}")
        total_units = sum(objective.units(m) for m in micro)  # of the whole global step
        loss_total, metrics = 0.0, {}
        # Every rank runs the configured number of micro-steps, so DeepSpeed steps the optimizer
        # exactly once and every rank joins every gradient reduction; a step's last, partial
        # batch fills the missing slots with its first micro-batch at weight 0.
        for slot in range(self.rank, slots, self.world):
            m, weight = (micro[slot], 1.0) if slot < len(micro) else (micro[0], 0.0)
            # through engine(...): ZeRO-3 counts micro-steps and hooks the backward pass there
            # (calling the model's parts directly kept only the last micro-batch's gradient)
            loss_sum, _, mets = self.engine(lambda model, m=m: objective.loss(model, m, self.pad_id, self.device))
            # DeepSpeed averages gradients over ranks: x world gives the global step's sum
            self.engine.backward(loss_sum * (weight * self.world / max(total_units, 1)), scale_wrt_gas=False)
            self.engine.step()
            loss_total += weight * float(loss_sum.detach())
            for k, v in mets.items():  # every rank has every key, for the all-reduce below
                metrics[k] = metrics.get(k, 0.0) + weight * v
        sums = torch.tensor([loss_total, *metrics.values()], dtype=torch.float64)
        torch.distributed.all_reduce(sums)
        loss_total, metrics = float(sums[0]), dict(zip(metrics, sums[1:].tolist(), strict=True))
        self.step += 1
        loss = loss_total / max(total_units, 1)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at step {self.step}")
        norm = self.engine.get_global_grad_norm()
        return {"loss": loss, "grad_norm": float(norm or 0.0), "lr": self.engine.get_lr()[0], **metrics}

    @torch.no_grad()
    def score(self, prompts: list[list[int]], completions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        from reasoner.logprobs import completion_logprobs

        return completion_logprobs(self.model, prompts, completions, self.pad_id, self.device)

    # --------------------------------------------------------------------------- state
    def save_state(self, folder: Path) -> None:
        """DeepSpeed's checkpoint (weights, optimizer, scheduler; every rank writes its shard)
        plus each rank's random state and the step. Called on every rank."""
        client = {"step": self.step, "world": self.world, "zero_stage": self.cfg.zero_stage}
        self.engine.save_checkpoint(str(folder), tag="deepspeed", client_state=client)
        torch.save(
            {"rng_torch": torch.get_rng_state(), "rng_python": random.getstate()}, folder / f"rng_{self.rank}.pt"
        )

    def load_state(self, folder: Path) -> None:
        """Resume on as many processes as saved: ZeRO's shards are cut per rank (moving a
        checkpoint to another process count needs DeepSpeed's universal checkpoint, not done here)."""
        saved = sorted(folder.glob("rng_*.pt"))
        if saved and len(saved) != self.world:
            raise RuntimeError(
                f"{folder}: saved by {len(saved)} process(es), resumed on {self.world}; resume with {len(saved)}"
            )
        _, client = self.engine.load_checkpoint(str(folder), tag="deepspeed")
        if client is None:
            raise RuntimeError(f"{folder}: no DeepSpeed checkpoint to resume from")
        self.step = client["step"]
        state = torch.load(folder / f"rng_{self.rank}.pt", weights_only=False)
        torch.set_rng_state(state["rng_torch"])
        random.setstate(state["rng_python"])

    def export(self, folder: Path, tokenizer) -> None:
        """A plain model (LoRA merged) that `AutoModelForCausalLM.from_pretrained` loads: the
        weights are gathered from every rank's shard; rank 0 writes. Called on every rank."""
        deepspeed = _import_deepspeed()
        params = list(self.model.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=self.cfg.zero_stage == 3):
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()} if self.rank == 0 else {}
        if self.rank == 0:
            from reasoner import models

            plain = with_lora(models.load(self.spec, "cpu").model, self.cfg, 0)  # the adapters' shapes
            plain.load_state_dict(state)
            if self.cfg.lora_rank > 0:
                plain = plain.merge_and_unload()
            plain.eval()
            plain.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
        torch.distributed.barrier()


register("deepspeed")(DeepSpeedEngine.from_spec)
