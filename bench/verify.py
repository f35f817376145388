"""Judgments per second of `reasoner.verifiers` and of HF Math-Verify, side by side, in one run.

Inputs: every gold answer of GSM8K test (1319) and MATH-500, each with model-like predictions
built from it: the gold restated the way models write it (boxed, "The answer is", thousands
separators, \\dfrac, dollars, units, x = ...), and wrong answers (off by one, another problem's
answer). Each case therefore has a known label. Both verifiers judge the same (gold, output)
pairs under the same 5 s per-judgment limit, single process. Printed: judgments/s, accuracy
against the labels, agreement, and every case where Math-Verify is right and this verifier is
not (to be examined). The last line is one JSON object.

Math-Verify is a bench-only dependency: `pip install -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path

from reasoner.verifiers import get_verifier
from reasoner.verifiers.extract import flexible

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TIMEOUT = 5


def restatements(gold: str, rng: random.Random) -> list[str]:
    """Equivalent ways a model writes ``gold``."""
    outs = [f"So the final answer is $\\boxed{{{gold}}}$.", f"The answer is ${gold}$."]
    if re.fullmatch(r"-?\d+", gold):
        n = int(gold)
        outs += [
            f"The answer is {n:,}.",
            f"The answer is \\${n}.",
            f"#### {n}.00",
            f"Answer: {n} dollars",
            f"\\boxed{{{n:,}}}".replace(",", "{,}"),
        ]
    else:
        dfrac = gold.replace("\\frac", "\\dfrac")
        outs.append(f"Therefore $x = {gold}$, so the answer is $\\boxed{{{dfrac}}}$.")
        outs.append(f"The final answer is $\\boxed{{{gold.replace(' ', '')}}}$")
    return outs


def wrong(gold: str, other: str, rng: random.Random) -> list[str]:
    outs = []
    if re.fullmatch(r"-?\d+", gold):
        outs.append(f"The answer is {int(gold) + rng.choice([-1, 1, 10])}.")
    if other.strip() != gold.strip():
        outs.append(f"The answer is $\\boxed{{{other}}}$.")
    return outs


def cases(n_gsm: int, n_math: int, seed: int) -> list[tuple[str, str, str, bool]]:
    rng = random.Random(seed)
    gsm_rows = [json.loads(x) for x in open(DATA / "gsm8k" / "test.jsonl")][:n_gsm]
    math_rows = [json.loads(x) for x in open(DATA / "math" / "test500.jsonl")][:n_math]
    gsm = [r["answer"].split("####")[-1].strip().replace(",", "") for r in gsm_rows]
    mth = [r["answer"] for r in math_rows]
    out = []
    for name, golds in (("gsm8k", gsm), ("math", mth)):
        for gold in golds:
            other = rng.choice(golds)
            out += [(name, gold, p, True) for p in restatements(gold, rng)]
            out += [(name, gold, p, False) for p in wrong(gold, other, rng)]
    # Real worked solutions (human-written, MATH-500's `solution` with its \boxed{}), as the
    # prediction for their own problem (label True) and for another problem (label: same answer).
    for row in math_rows:
        j = rng.randrange(len(math_rows))
        out.append(("math-solutions", row["answer"], row["solution"], True))
        if math_rows[j]["answer"].strip() != row["answer"].strip():
            out.append(("math-solutions", row["answer"], math_rows[j]["solution"], False))
    return out


def ours(gold: str, output: str) -> bool:
    from reasoner.verifiers.extract import strict

    return get_verifier("math")(gold, strict(output) or flexible(output)).correct


def math_verify(gold: str, output: str) -> bool:
    from math_verify import parse, verify

    return bool(
        verify(
            parse(f"${gold}$", parsing_timeout=TIMEOUT), parse(output, parsing_timeout=TIMEOUT), timeout_seconds=TIMEOUT
        )
    )


def timed(fn, data):
    started = time.perf_counter()
    cpu = time.process_time()
    verdicts = [fn(g, p) for _, g, p, _ in data]
    return verdicts, time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gsm8k", type=int, default=1319)
    ap.add_argument("--math", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("REASONER_VERIFY_TIMEOUT", str(TIMEOUT))
    data = cases(args.gsm8k, args.math, args.seed)
    ours(data[0][1], "\\boxed{\\sqrt{2}}")  # start the worker before timing, as a long run would
    mine, t_mine, _ = timed(ours, data)
    theirs, t_theirs, _ = timed(math_verify, data)
    labels = [c[3] for c in data]
    report = {}
    for name in ("gsm8k", "math", "math-solutions"):
        idx = [i for i, c in enumerate(data) if c[0] == name]
        report[name] = {
            "cases": len(idx),
            "reasoner_accuracy": round(sum(mine[i] == labels[i] for i in idx) / len(idx), 4),
            "math_verify_accuracy": round(sum(theirs[i] == labels[i] for i in idx) / len(idx), 4),
            "agreement": round(sum(mine[i] == theirs[i] for i in idx) / len(idx), 4),
        }
    they_right = [data[i] for i in range(len(data)) if theirs[i] == labels[i] and mine[i] != labels[i]]
    we_right = [data[i] for i in range(len(data)) if mine[i] == labels[i] and theirs[i] != labels[i]]
    print(f"{len(data)} judgments each, {TIMEOUT}s limit per judgment, load avg {os.getloadavg()[0]:.2f}")
    print(f"reasoner    : {len(data) / t_mine:8.1f} judgments/s")
    print(f"Math-Verify : {len(data) / t_theirs:8.1f} judgments/s")
    print(f"speed ratio : {t_theirs / t_mine:.2f}x")
    for name, r in report.items():
        print(f"{name:14}: {r}")
    print(f"Math-Verify right, reasoner wrong: {len(they_right)}")
    for c in they_right:
        print(f"   {c[0]} gold={c[1]!r} output={c[2]!r} label={c[3]}")
    print(f"reasoner right, Math-Verify wrong: {len(we_right)}")
    for c in we_right[:40]:
        print(f"   {c[0]} gold={c[1]!r} output={c[2]!r} label={c[3]}")
    print(
        json.dumps(
            {
                "bench": "verify",
                "judgments": len(data),
                "reasoner_per_s": round(len(data) / t_mine, 1),
                "math_verify_per_s": round(len(data) / t_theirs, 1),
                "speedup_vs_math_verify": round(t_theirs / t_mine, 2),
                "mv_right_reasoner_wrong": len(they_right),
                "reasoner_right_mv_wrong": len(we_right),
                **report,
            }
        )
    )


if __name__ == "__main__":
    main()
