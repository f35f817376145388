"""Scoring with a shared prompt run once: the `hf` backend's `score_ids` puts the pairs of one
prompt in one forward (`hf.score_chunks`) against the chunking it had before (every pair sorted
by length, 8 a forward), in one run: old, new, old, new, so that the machine's drift shows.

Two workloads from a config's own training prompts and samples (sampled here first):
1. implicit PRM scoring: each problem's ``--samples`` samples after its prompt (what the label
   phase's `implicit` labeller and the reward phase's reference log-probabilities score);
2. SPARK's self-judge: each sample's pointwise prompt followed by "Verdict: GOOD" and by
   "Verdict: BAD" (the labeller `spark`).
Both chunkings must give the same log-probabilities up to rounding (the largest difference is
printed). The last line is one JSON object.

    python bench/scoring.py --config configs/cream.toml --problems 16 --samples 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch import workload  # noqa: E402

from reasoner.generation import Sampling, hf  # noqa: E402
from reasoner.tasks import get_pack, render  # noqa: E402
from reasoner.training.objectives.spark import BAD, GOOD, pointwise_messages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = hf.score_chunks


def by_length(pairs, batch_size):
    """The chunking `score_ids` had before: every pair sorted by total length."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "cream.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    conf, backend, prompts = workload(args.config, args.overrides, args.problems)
    tok = backend.tokenizer
    gen = conf.generate
    asked = [p for p in prompts for _ in range(args.samples)]
    sampling = Sampling(temperature=gen.temperature, top_p=gen.top_p, max_new_tokens=gen.max_new_tokens, seed=0)
    outs = backend.generate(asked, Sampling(**{**sampling.__dict__, "batch_size": gen.batch_size}))

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    implicit = [(ids(p), o.token_ids) for p, o in zip(asked, outs, strict=True) if o.token_ids]
    # the problems behind those prompts, drawn as `workload` drew them
    pack = get_pack(conf.task.pack, source=conf.task.source, prompt=conf.task.prompt, difficulty=conf.task.difficulty)
    questions = [q.question for q in pack.problems("train", args.problems, conf.run.seed) for _ in range(args.samples)]
    judged = [render(pointwise_messages(q, o.text), tok) for q, o in zip(questions, outs, strict=True)]
    spark = [(ids(j), ids(v)) for j in judged for v in (GOOD, BAD)]
    load_before = os.getloadavg()[0]
    report = {}
    for name, pairs in (("implicit", implicit), ("spark", spark)):
        seconds: dict[str, list[float]] = {"by_length": [], "by_prompt": []}
        scored = {}
        for _ in range(args.rounds):
            for label, chunking in (("by_length", by_length), ("by_prompt", CHUNKS)):
                hf.score_chunks = chunking  # the chunking `score_ids` scores by
                t0 = time.perf_counter()
                scored[label] = backend.score_ids(pairs)
                seconds[label].append(time.perf_counter() - t0)
        diff = max(
            max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
            for a, b in zip(scored["by_length"], scored["by_prompt"], strict=True)
        )
        tokens = sum(len(p) + len(c) for p, c in pairs)
        old, new = min(seconds["by_length"]), min(seconds["by_prompt"])
        report[name] = {
            "pairs": len(pairs),
            "tokens": tokens,
            "by_length_s": old,
            "by_prompt_s": new,
            "speedup": old / new,
            "max_abs_logprob_diff": diff,
        }
        print(
            f"{name:9} {len(pairs)} pairs, {tokens} tokens: by length {old:.2f} s, by prompt {new:.2f} s, "
            f"{old / new:.2f}x; largest log-prob difference {diff:.2e}"
        )
    report["load_before"] = load_before
    report["load_after"] = os.getloadavg()[0]
    print(f"load average {load_before:.2f} before, {report['load_after']:.2f} after")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
