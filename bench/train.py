"""Training step time and peak memory of the `torch` engine against TRL's trainers, side by side.

Two objectives, each on both sides, on the same model, the same examples, batch, sequence
lengths and precision (float32 on a CPU), full fine-tune, AdamW at the same learning rate:
- SFT: the `rft` objective (completion-only NLL) against TRL's `SFTTrainer` on prompt-completion
  examples (GSM8K train questions and their solutions).
- DPO: the `dpo` objective against TRL's `DPOTrainer` with `precompute_ref_log_probs=True`
  (reference log-probs computed once, as this project does; that pass is not timed on either
  side). Chosen: a problem's own solution; rejected: the next problem's.

The batch is the same ``--batch`` examples at every step (one epoch per step on TRL's side), so
both sides pad the same batch to the same length. Both tokenise the same way (prompt, then
prompt + completion + EOS, the completion starting where they diverge), and the token counts
are compared before anything is timed. TRL's gradient checkpointing, on by default, is off
(this project does not checkpoint; ``--trl-checkpointing`` times TRL with it on). Each side
runs in its own process: step time is the median of the steps after the first (``--steps``);
peak memory is the process's peak RSS above its RSS once the model is loaded (on a GPU, peak
allocated CUDA memory). Goal: at most 1.0x TRL on both. TRL is in the `bench` extra.

    python bench/train.py                       # embedded model, batch 8, 6 steps
    python bench/train.py --model tiny --steps 3  # a quick check
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
LR = 1e-5


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _examples(n: int, eos: str) -> list[dict]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[: n + 1]]
    out = []
    for i in range(n):
        prompt = f"Question: {rows[i]['question']}\nAnswer:"
        out.append(
            {
                "prompt": prompt,
                "completion": " " + rows[i]["answer"] + eos,
                "chosen": " " + rows[i]["answer"] + eos,
                "rejected": " " + rows[i + 1]["answer"] + eos,
            }
        )
    return out


def _split(tok, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Prompt and completion ids as TRL cuts them: where prompt and prompt + completion diverge."""
    p, full = tok(prompt)["input_ids"], tok(prompt + completion)["input_ids"]
    n = 0
    while n < min(len(p), len(full)) and p[n] == full[n]:
        n += 1
    return full[:n], full[n:]


def _load(spec: str, device: str):
    from reasoner import models

    loaded = models.load(spec, device)
    loaded.model.train()
    return loaded.model, loaded.tokenizer


def _memory(device: str, base: float) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return _peak_mb() - base


# ------------------------------------------------------------------------------ one side
def ours(task: str, args) -> dict:
    from reasoner.config import RoleTrainConfig
    from reasoner.logprobs import completion_logprobs
    from reasoner.training.engine import TorchEngine
    from reasoner.training.objectives.dpo import DPO, DPOExample
    from reasoner.training.objectives.rft import RFT, SFTExample

    model, tok = _load(args.model, args.device)
    data = _examples(args.batch, tok.eos_token)
    cfg = RoleTrainConfig(
        lora_rank=0, learning_rate=LR, warmup_steps=0, batch_size=args.batch, micro_batch_size=args.batch
    )
    if task == "sft":
        batch = [SFTExample(*_split(tok, d["prompt"], d["completion"]), source_id=str(i)) for i, d in enumerate(data)]
        objective, tokens = RFT(), sum(len(e.prompt_ids) + len(e.completion_ids) for e in batch)
    else:
        pairs = [(_split(tok, d["prompt"], d["chosen"]), _split(tok, d["prompt"], d["rejected"])) for d in data]
        prompts = [c[0] for c, _ in pairs]
        with torch.no_grad():  # the reference pass, once, not timed
            lp_c, m_c = completion_logprobs(model, prompts, [c[1] for c, _ in pairs], tok.pad_token_id, args.device)
            lp_r, m_r = completion_logprobs(model, prompts, [r[1] for _, r in pairs], tok.pad_token_id, args.device)
        ref_c, ref_r = (lp_c * m_c).sum(-1).tolist(), (lp_r * m_r).sum(-1).tolist()
        batch = [DPOExample(c[0], c[1], r[1], ref_c[i], ref_r[i]) for i, (c, r) in enumerate(pairs)]
        objective = DPO(beta=0.1)
        tokens = sum(len(c[0]) + len(c[1]) + len(r[0]) + len(r[1]) for c, r in pairs)
    base = _rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    engine = TorchEngine(model, cfg, args.steps, args.device, tok.pad_token_id or 0)
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        got = engine.train_step(batch, objective)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(got["loss"])
    return {"times": times, "losses": losses, "tokens": tokens, "memory_mb": _memory(args.device, base)}


def trl(task: str, args) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    model, tok = _load(args.model, args.device)
    data = _examples(args.batch, tok.eos_token)
    times: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    common = dict(
        output_dir=str(Path(args.scratch) / f"trl-{task}"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        fp16=False,
        use_cpu=not args.device.startswith("cuda"),
        gradient_checkpointing=args.trl_checkpointing,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    if task == "sft":
        ds = Dataset.from_list([{"prompt": d["prompt"], "completion": d["completion"]} for d in data])
        trainer = SFTTrainer(
            model=model, args=SFTConfig(**common, max_length=None), train_dataset=ds, processing_class=tok
        )
        tokens = sum(len(r["input_ids"]) for r in trainer.train_dataset)
    else:
        ds = Dataset.from_list([{k: d[k] for k in ("prompt", "chosen", "rejected")} for d in data])
        config = DPOConfig(**common, max_length=None, beta=0.1, precompute_ref_log_probs=True)
        trainer = DPOTrainer(model=model, args=config, train_dataset=ds, processing_class=tok)
        tokens = sum(
            2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset
        )
    trainer.add_callback(Clock())
    base = _rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    return {"times": times, "losses": losses, "tokens": tokens, "memory_mb": _memory(args.device, base)}


# ---------------------------------------------------------------------------- the bench
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--trl-checkpointing", action="store_true", help="TRL with its default gradient checkpointing")
    ap.add_argument("--scratch", default="/tmp/reasoner-bench-train")
    ap.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--task", choices=["sft", "dpo"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.side:  # one side in this process: print its figures
        print("RESULT " + json.dumps((ours if args.side == "ours" else trl)(args.task, args)))
        return
    load = os.getloadavg()[0]
    results: dict[str, dict] = {}
    for task in ("sft", "dpo"):
        got = {}
        for side in ("ours", "trl"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--task", task]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{side} {task} failed:\n{done.stderr[-3000:]}")
            got[side] = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))[7:])
        if got["ours"]["tokens"] != got["trl"]["tokens"]:
            sys.exit(f"{task}: the two sides tokenised differently ({got['ours']['tokens']} vs {got['trl']['tokens']})")
        step = {s: statistics.median(got[s]["times"][1:] or got[s]["times"]) for s in got}
        results[task] = {
            "ours_step_s": round(step["ours"], 3),
            "trl_step_s": round(step["trl"], 3),
            "time_ratio": round(step["ours"] / step["trl"], 3),
            "ours_memory_mb": round(got["ours"]["memory_mb"], 1),
            "trl_memory_mb": round(got["trl"]["memory_mb"], 1),
            "memory_ratio": round(got["ours"]["memory_mb"] / max(got["trl"]["memory_mb"], 1e-9), 3),
            "ours_first_loss": round(got["ours"]["losses"][0], 4),
            "trl_first_loss": round(got["trl"]["losses"][0], 4) if got["trl"]["losses"] else None,
            "tokens_per_step": got["ours"]["tokens"],
        }
        r = results[task]
        print(
            f"{task}: step {r['ours_step_s']:.2f}s vs TRL {r['trl_step_s']:.2f}s ({r['time_ratio']:.2f}x), "
            f"memory {r['ours_memory_mb']:.0f} vs {r['trl_memory_mb']:.0f} MB ({r['memory_ratio']:.2f}x), "
            f"first loss {r['ours_first_loss']} vs {r['trl_first_loss']}"
        )
    print(f"goal: at most 1.0x TRL on step time and memory; load avg {load:.2f} -> {os.getloadavg()[0]:.2f}")
    summary = {
        "bench": "train",
        "model": args.model,
        "batch": args.batch,
        "steps": args.steps,
        "device": args.device,
        "threads": args.threads,
        "trl_checkpointing": args.trl_checkpointing,
        **{f"{t}_{k}": v for t, r in results.items() for k, v in r.items()},
        "load_avg_before": round(load, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
