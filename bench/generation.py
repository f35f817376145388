"""Tokens/s of the `hf` backend against plain `model.generate` and against a bare decode step,
same prompts, same machine load; and of the `vllm` backend where vLLM is installed.

Both sample at T=0.8 with up to N new tokens. `generate` takes the prompts in fixed batches (its
padding and finished rows included, as a user would call it); the backend takes them all and
keeps `--batch` rows busy. Tokens counted are the generated tokens each returns before EOS.
The compute limit is a bare decode step: the batch's prompts prefilled once, then forward
passes of one token per row with a KV cache and sampling, every row busy and nothing else
(no refills, stop checks or bookkeeping); ``backend / bare`` is the share of it the backend
reaches (goal >= 0.9). The bare step is timed before and after the backend and the two are
averaged, since this machine's speed drifts by 10-20% between minutes.

Rows that end at different lengths make any continuous-batching engine drain at the end of a
run (fewer live rows per step), and a step's cost is mostly fixed (a + c * rows, both fitted
from the bare step at the full and at half the batch). The bench prints that ceiling: an ideal
scheduler (free, instant refills) on the backend's own completion lengths; with few prompts per
batch row it lies below 0.9 whatever the engine. With vLLM importable (its own environment on
a CPU, README "Scaling out") the same prompts also go through the `vllm` backend. The last
line is one JSON object.

    python bench/generation.py --prompts 64 --batch 32 --new-tokens 256
    python bench/generation.py --prompts 256 --batch 32 --new-tokens 128 --no-generate

With ``--load`` it measures instead how the backend shares the machine: its tokens/s alone,
then beside one other busy process (a Python busy loop, started 2 s before the clock so the
thread sampler has seen it), and the ratio. ``--threads 0`` (the default) is the shipped
auto mode; compare with the old fixed setting by running
``OMP_WAIT_POLICY=ACTIVE python bench/generation.py --load --threads 2``.

    python bench/generation.py --load --prompts 32 --batch 32 --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from reasoner import models, threads
from reasoner.generation import Sampling
from reasoner.generation.hf import HFBackend

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-vllm", action="store_true", help="skip the vllm backend even where it is installed")
    ap.add_argument("--model", default=models.EMBEDDED)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="0: auto (the shipped run.threads)")
    ap.add_argument("--load", action="store_true", help="idle vs beside one busy process")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--device", default="cpu", help="torch device for generate, the hf backend and the bare step")
    ap.add_argument("--no-generate", action="store_true", help="skip model.generate (long runs)")
    args = ap.parse_args()
    threads.configure(args.threads)
    models.check_device(args.device)
    loaded = models.load(args.model, args.device)
    tok = loaded.tokenizer
    questions = [json.loads(line)["question"] for line in open(args.data)][: args.prompts]
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    if args.load:
        return under_load(args, loaded, prompts)
    load_before = os.getloadavg()[0]

    base_tps = None if args.no_generate else generate_tokens_per_second(args, loaded, prompts)
    bare_before = bare_decode(loaded, prompts[: args.batch], min(args.new_tokens, 128), args.device)
    backend = HFBackend(loaded.model, tok, args.device)
    sampling = Sampling(temperature=0.8, max_new_tokens=args.new_tokens, seed=0, batch_size=args.batch)
    t0 = time.perf_counter()
    outs = backend.generate(prompts, sampling)
    ours_time = time.perf_counter() - t0
    ours_tokens = sum(len(c.token_ids) for c in outs)

    bare_after = bare_decode(loaded, prompts[: args.batch], min(args.new_tokens, 128), args.device)
    bare_tps = (bare_before + bare_after) / 2  # the machine's speed drifts: bracket the backend
    vllm_tps = vllm_tokens_per_second(args, prompts)

    # The step's cost grows with its rows as a + c * rows; a run whose rows end at different
    # lengths must drain (fewer live rows at its end), which caps any scheduler below the bare
    # full-batch step. The cap: an ideal scheduler (free, instant refills) on these lengths.
    half = max(1, args.batch // 2)
    bare_half = bare_decode(loaded, prompts[:half], min(args.new_tokens, 128), args.device)
    step_full, step_half = args.batch / bare_tps, half / bare_half
    c = (step_full - step_half) / (args.batch - half) if args.batch > half else 0.0
    a = step_full - c * args.batch
    lengths = [len(o.token_ids) for o in outs]
    ideal_tps = ideal_scheduler_tokens_per_second(lengths, args.batch, a, c)
    ours_tps = ours_tokens / ours_time
    work = backend.stats
    occupancy = work["decode_tokens"] / max(work["decode_steps"], 1) / args.batch
    if base_tps is not None:
        print(f"model.generate : {base_tps:.1f} tok/s")
    print(f"hf backend     : {ours_tokens} tokens in {ours_time:.1f}s = {ours_tps:.1f} tok/s")
    print(
        f"bare decode    : {bare_tps:.1f} tok/s at batch {args.batch} ({bare_before:.1f} before,"
        f" {bare_after:.1f} after; {bare_half:.1f} at batch {half}) -> hf backend reaches {ours_tps / bare_tps:.2f}"
    )
    print(
        f"drain ceiling  : an ideal scheduler on these lengths reaches {ideal_tps / bare_tps:.2f} of the bare step"
        f" (step = {a * 1000:.0f} ms + {c * 1000:.1f} ms per row); the backend reaches {ours_tps / ideal_tps:.2f} of it"
    )
    print(
        f"hf backend work: {work['prefill_tokens']} prompt tokens prefilled ({work['prefill_computed']} positions"
        f" computed), {work['decode_tokens']} decoded in {work['decode_steps']} steps"
        f" ({occupancy:.0%} of the rows busy)"
    )
    if vllm_tps is not None:
        print(f"vllm backend   : {vllm_tps:.1f} tok/s ({vllm_tps / ours_tps:.2f}x the hf backend)")
    if base_tps is not None:
        print(f"speedup        : {ours_tps / base_tps:.2f}x model.generate")
    print(f"load avg       : {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(
        json.dumps(
            {
                "bench": "generation",
                "model": args.model,
                "prompts": len(prompts),
                "batch": args.batch,
                "max_new_tokens": args.new_tokens,
                "threads": args.threads,
                "device": args.device,
                "generate_tok_s": None if base_tps is None else round(base_tps, 1),
                "backend_tok_s": round(ours_tps, 1),
                "speedup_vs_generate": None if base_tps is None else round(ours_tps / base_tps, 2),
                "bare_decode_tok_s": round(bare_tps, 1),
                "bare_before_after": [round(bare_before, 1), round(bare_after, 1)],
                "prefill_tokens": work["prefill_tokens"],
                "prefill_computed": work["prefill_computed"],
                "decode_tokens": work["decode_tokens"],
                "occupancy": round(occupancy, 3),
                "backend_over_bare": round(ours_tps / bare_tps, 2),
                "ideal_over_bare": round(ideal_tps / bare_tps, 2),
                "backend_over_ideal": round(ours_tps / ideal_tps, 2),
                "vllm_tok_s": None if vllm_tps is None else round(vllm_tps, 1),
                "load_avg_before": round(load_before, 2),
                "load_avg_after": round(os.getloadavg()[0], 2),
            }
        )
    )


def ideal_scheduler_tokens_per_second(lengths: list[int], batch: int, a: float, c: float) -> float:
    """Tokens/s of continuous batching with free, instant refills (no prefill, no bookkeeping)
    when a decode step over ``rows`` rows takes ``a + c * rows`` seconds."""
    pending, live, seconds, tokens = sorted(lengths, reverse=True), [], 0.0, 0
    while pending or live:
        free = batch - len(live)
        live, pending = live + pending[:free], pending[free:]
        live = [n for n in live if n > 0]
        if not live:
            continue
        seconds += a + c * len(live)
        tokens += len(live)
        live = [n - 1 for n in live if n > 1]
    return tokens / seconds


def generate_tokens_per_second(args, loaded, prompts: list[str]) -> float:
    """`model.generate` on fixed batches of the prompts, as a user would call it."""
    tok = loaded.tokenizer
    torch.manual_seed(0)
    t0 = time.perf_counter()
    base_tokens = 0
    eos = tok.eos_token_id
    for s in range(0, len(prompts), args.batch):
        enc = tok(prompts[s : s + args.batch], return_tensors="pt", padding=True, padding_side="left").to(args.device)
        out = loaded.model.generate(
            **enc,
            max_new_tokens=args.new_tokens,
            do_sample=True,
            temperature=0.8,
            top_p=1.0,
            top_k=0,
            pad_token_id=tok.pad_token_id,
        )
        gen = out[:, enc["input_ids"].shape[1] :]
        for row in gen.tolist():
            base_tokens += row.index(eos) if eos in row else len(row)
    return base_tokens / (time.perf_counter() - t0)


@torch.inference_mode()
def bare_decode(loaded, prompts: list[str], steps: int, device: str = "cpu") -> float:
    """Tokens/s of the decode step alone: one forward of one token per row with a KV cache,
    then sampling at T=0.8, ``steps`` times, every row busy (the prefill is not timed)."""
    from transformers import DynamicCache

    tok, model = loaded.tokenizer, loaded.model
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left").to(device)
    cache = DynamicCache()
    mask = enc["attention_mask"]
    out = model(
        input_ids=enc["input_ids"], attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1
    )  # the last position's logits only: (rows, prompt, vocab) floats would not fit at batch 128
    gen = torch.Generator(device=device).manual_seed(0)
    nxt = torch.multinomial(torch.softmax(out.logits[:, -1].float() / 0.8, -1), 1, generator=gen)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
        out = model(input_ids=nxt, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
        nxt = torch.multinomial(torch.softmax(out.logits[:, -1].float() / 0.8, -1), 1, generator=gen)
    synchronize(device)
    return len(prompts) * steps / (time.perf_counter() - t0)


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a clock read after it counts it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def vllm_tokens_per_second(args, prompts: list[str]) -> float | None:
    """The `vllm` backend on the same prompts, or None where vLLM is not installed."""
    if args.no_vllm:
        return None
    try:
        import vllm  # noqa: F401
    except ImportError:
        return None
    from reasoner.config import GenerateConfig
    from reasoner.generation.vllm_backend import VLLMBackend

    device = "cuda" if torch.device(args.device).type == "cuda" else "cpu"
    backend = VLLMBackend(args.model, device, GenerateConfig(dtype="float32"))  # the hf backend's precision
    sampling = Sampling(temperature=0.8, max_new_tokens=args.new_tokens, seed=0, batch_size=args.batch)
    backend.generate(prompts[:2], Sampling(temperature=0.8, max_new_tokens=4, seed=0))  # warm-up
    t0 = time.perf_counter()
    outs = backend.generate(prompts, sampling)
    return sum(len(c.token_ids) for c in outs) / (time.perf_counter() - t0)


def under_load(args, loaded, prompts) -> None:
    backend = HFBackend(loaded.model, loaded.tokenizer)
    sampling = Sampling(temperature=0.8, max_new_tokens=args.new_tokens, seed=0, batch_size=args.batch)
    backend.generate(prompts[:2], Sampling(temperature=0.8, max_new_tokens=4, seed=0))  # warm-up

    def measure() -> tuple[float, int]:
        t0 = time.perf_counter()
        outs = backend.generate(prompts, sampling)
        seconds = time.perf_counter() - t0
        return sum(len(c.token_ids) for c in outs) / seconds, torch.get_num_threads()

    load_before = os.getloadavg()[0]
    idle_tps, idle_threads = measure()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(2.0)
        loaded_tps, loaded_threads = measure()
    finally:
        busy.kill()
        busy.wait()
    ratio = loaded_tps / idle_tps
    wait = os.environ.get("OMP_WAIT_POLICY")
    print(f"alone           : {idle_tps:.1f} tok/s ({idle_threads} threads at the end)")
    print(f"beside 1 busy   : {loaded_tps:.1f} tok/s ({loaded_threads} threads at the end)")
    print(f"ratio           : {ratio:.2f}x   (goal >= 0.4; OMP_WAIT_POLICY={wait}, load avg before {load_before:.2f})")
    print(
        json.dumps(
            {
                "bench": "generation-load",
                "model": args.model,
                "prompts": len(prompts),
                "batch": args.batch,
                "max_new_tokens": args.new_tokens,
                "threads": args.threads or "auto",
                "omp_wait_policy": wait,
                "idle_tok_s": round(idle_tps, 1),
                "loaded_tok_s": round(loaded_tps, 1),
                "ratio": round(ratio, 2),
                "load_avg_before": round(load_before, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
