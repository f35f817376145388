"""Training engines behind one protocol, built from a role's model spec (the registered
factory loads the weights its own way: `torch` with transformers, a DeepSpeed engine under
ZeRO-3's context). `torch`: one process, CPU or one GPU, full or LoRA.

Objectives never touch the engine's internals: an objective turns a micro-batch into
``(loss_sum, n_units, metrics)`` and the engine normalises by the units of the whole step, so
gradient accumulation gives the same gradient as one big batch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file

from reasoner import threads
from reasoner.config import RoleTrainConfig
from reasoner.registry import Registry

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Objective(Protocol):
    def loss(self, model, batch: list[Any], pad_id: int, device) -> tuple[torch.Tensor, int, dict]:
        """Summed loss over the micro-batch, the number of units it sums over, and metrics."""


class Engine(Protocol):
    """Built by its registered factory from ``(spec, cfg, total_steps, device, seed)``."""

    step: int
    tokenizer: Any

    def train_step(self, batch: list[Any], objective: Objective) -> dict[str, float]: ...
    def save_state(self, folder: Path) -> None: ...
    def load_state(self, folder: Path) -> None: ...
    def export(self, folder: Path, tokenizer) -> None: ...
    def score(self, prompts: list[list[int]], completions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """No-grad (B, L) log-probs and mask of completions under the model being trained."""


ENGINES: Registry[Callable[..., Engine]] = Registry("training engine")
register = ENGINES.register
get_engine = ENGINES.lookup


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def with_lora(model, cfg: RoleTrainConfig, seed: int):
    """``model`` with LoRA adapters (peft) on `LORA_TARGETS` when ``cfg.lora_rank > 0``, else
    itself. LoRA's A is drawn at random: same seed, same start."""
    if cfg.lora_rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, lora)


class TorchEngine:
    def __init__(
        self, model, cfg: RoleTrainConfig, total_steps: int, device: str = "cpu", pad_id: int = 0, seed: int = 0
    ):
        self.cfg, self.device, self.pad_id, self.total_steps = cfg, torch.device(device), pad_id, total_steps
        self.model = with_lora(model, cfg, seed).to(self.device)
        self.model.train()
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            list(self.params.values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.warmup_steps, total_steps))
        self.step = 0
        self.tokenizer = None

    @classmethod
    def from_spec(cls, spec: str, cfg: RoleTrainConfig, total_steps: int, device: str = "cpu", seed: int = 0):
        """The engine for model spec ``spec`` (a folder, a name; see `reasoner.models`)."""
        from reasoner import models

        loaded = models.load(spec, device)
        engine = cls(loaded.model, cfg, total_steps, device, loaded.tokenizer.pad_token_id or 0, seed=seed)
        engine.tokenizer = loaded.tokenizer
        return engine

    def train_step(self, batch: list[Any], objective: Objective) -> dict[str, float]:
        threads.adapt()
        mb = self.cfg.micro_batch_size
        micro = [batch[i : i + mb] for i in range(0, len(batch), mb)]
        self.optimizer.zero_grad(set_to_none=True)
        # Units (tokens, pairs) of the whole step, so accumulation normalises like one batch.
        total_units = sum(objective.units(m) for m in micro)
        loss_total, metrics = 0.0, {}
        for m in micro:
            loss_sum, _, mets = objective.loss(self.model, m, self.pad_id, self.device)
            (loss_sum / total_units).backward()
            loss_total += float(loss_sum.detach())
            for k, v in mets.items():
                metrics[k] = metrics.get(k, 0.0) + v
        grad_norm = 0.0
        if self.cfg.max_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        loss = loss_total / max(total_units, 1)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at step {self.step}")
        return {"loss": loss, "grad_norm": grad_norm, "lr": self.scheduler.get_last_lr()[0], **metrics}

    @torch.no_grad()
    def score(self, prompts: list[list[int]], completions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        from reasoner.logprobs import completion_logprobs

        return completion_logprobs(self.model, prompts, completions, self.pad_id, self.device)

    # --------------------------------------------------------------------------- state
    def save_state(self, folder: Path) -> None:
        """Trainable weights (safetensors), optimizer, scheduler, RNG and step."""
        save_file(
            {n: p.detach().cpu().contiguous() for n, p in self.params.items()}, str(folder / "trainable.safetensors")
        )
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "rng_torch": torch.get_rng_state(),
                "rng_python": random.getstate(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            folder / "state.pt",
        )

    def load_state(self, folder: Path) -> None:
        weights = load_file(str(folder / "trainable.safetensors"), device=str(self.device))
        missing = set(self.params) - set(weights)
        if missing:
            raise RuntimeError(f"{folder}: train state lacks {sorted(missing)[:3]}...")
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(weights[name])
        state = torch.load(folder / "state.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        torch.set_rng_state(state["rng_torch"])
        random.setstate(state["rng_python"])
        if state.get("rng_cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def export(self, folder: Path, tokenizer) -> None:
        """Save a plain model (LoRA merged) that `AutoModelForCausalLM.from_pretrained` loads."""
        model = self.model
        if self.cfg.lora_rank > 0:
            model = model.merge_and_unload()
            self.model = model
        model.eval()
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)


register("torch")(TorchEngine.from_spec)

from reasoner.training import zero as _zero  # noqa: E402,F401  (registers "deepspeed"; imports DeepSpeed on use)
