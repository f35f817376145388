"""Code execution in the loop: what it costs and what it buys, on the same held-out problems.

1. The sandbox alone: executions per second of a small program with 1 and with N workers.
2. Greedy answers of the model to the pack's first `--problems` test problems, once with the
   pack's few-shot prompt and once with the tools prompt (Python run in the sandbox as the
   model writes): accuracy of each, answers that ran code, executions, their status, and the
   share of the tools run's wall time spent waiting for executions after decoding had finished
   (`ToolBackend.stats["wait_seconds"]`; the rest of the execution time overlapped decoding).

    python bench/tools.py                                    # embedded default, arith, 100 problems
    python bench/tools.py --pack gsm8k --source ../shared/data/gsm8k --problems 100

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from reasoner import models, threads
from reasoner.benchmark import answer_tokens
from reasoner.config import ToolsConfig
from reasoner.generation import Sampling
from reasoner.generation.hf import HFBackend
from reasoner.tasks import get_pack, render
from reasoner.tools import SandboxPool, ToolBackend, summary
from reasoner.verifiers import get_extractor, get_verifier
from reasoner.verifiers.extract import answer_for


def sandbox_rate(workers: int, n: int) -> float:
    pool = SandboxPool(ToolsConfig(workers=workers))
    t0 = time.monotonic()
    futures = [pool.submit(f"print(sum(range({1000 + i})))") for i in range(n)]
    assert all(f.result().status == "ok" for f in futures)
    pool.close()
    return n / (time.monotonic() - t0)


def answers(backend, pack, problems, tokenizer, max_new: int, batch: int) -> tuple[list, float]:
    prompts = [render(pack.messages(p), tokenizer) for p in problems]
    t0 = time.monotonic()
    outs = backend.generate(prompts, Sampling(temperature=0.0, max_new_tokens=max_new, batch_size=batch))
    return outs, time.monotonic() - t0


def accuracy(pack, problems, outs) -> float:
    extract, verify = get_extractor(pack.extractor), get_verifier(pack.verifier)
    ok = [verify(p.answer, answer_for(extract, o.text, p.answer)).correct for p, o in zip(problems, outs, strict=True)]
    return sum(ok) / len(ok)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=models.EMBEDDED)
    ap.add_argument("--pack", default="arith")
    ap.add_argument("--source", default="")
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=0, help="0: the pack's own cap")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (fixed: figures repeat exactly)")
    args = ap.parse_args()
    threads.configure(args.threads)
    load_before = os.getloadavg()[0]
    rates = {w: round(sandbox_rate(w, 40), 1) for w in sorted({1, args.workers})}
    print(f"sandbox alone: {', '.join(f'{w} worker(s) {r} executions/s' for w, r in rates.items())}")

    loaded = models.load(args.model)
    max_new = answer_tokens(args.pack, args.max_new_tokens)
    rows = {}
    for style in ("fewshot", "tools"):
        pack = get_pack(args.pack, source=args.source, prompt=style)
        problems = pack.problems("test", args.problems, 0)
        backend = HFBackend(loaded.model, loaded.tokenizer)
        if style == "tools":
            backend = ToolBackend(backend, ToolsConfig(workers=args.workers))
        outs, wall = answers(backend, pack, problems, loaded.tokenizer, max_new, args.batch)
        row = {"accuracy": accuracy(pack, problems, outs), "wall_seconds": round(wall, 1)}
        if style == "tools":
            used = summary([o.meta.get("executions", []) for o in outs]) or {"answers_with_code": 0.0}
            st = backend.stats
            row.update(used)
            row["executions"] = st["executions"]
            row["executions_per_second_of_wall"] = round(st["executions"] / wall, 3)
            row["wait_share_of_wall"] = round(st["wait_seconds"] / wall, 4)
            row["execution_seconds"] = round(st["execution_seconds"], 2)
        rows[style] = row
        print(f"{style:>8}: {json.dumps(row)}")
    print(
        json.dumps(
            {
                "bench": "tools",
                "model": args.model,
                "pack": args.pack,
                "problems": args.problems,
                "max_new_tokens": max_new,
                "sandbox_executions_per_second": rates,
                "fewshot": rows["fewshot"],
                "tools": rows["tools"],
                "load_avg_before": round(load_before, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
