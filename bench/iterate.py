"""Self-improvement on `arith`: `reasoner iterate` with the embedded default for 3 iterations.

Prints held-out greedy pass@1 per iteration (iteration 0 is the starting model) with its
standard error, on the same test problems every iteration, and the wall time; the answer is
extracted by the flexible extractor (format-independent). The last line is one JSON object.

    python bench/iterate.py [--run runs/bench-iterate] [--set key=value ...]

`run.threads` is pinned to the machine's core count (unless a `--set run.threads=N` is given):
with the shipped auto setting the thread count follows the machine's load, and at this batch
shape that changes the rounding of the logits, so two runs would differ in a few samples.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "runs" / f"bench-iterate-{time.strftime('%Y%m%d-%H%M%S')}"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "reasoner.cli", "iterate", "--run", args.run, "--config", args.config]
    # A fixed thread count, so the figures repeat exactly: with run.threads = 0 the count follows
    # the machine's load, and at this batch shape it changes the rounding of the logits.
    pinned = [] if any(o.startswith("run.threads=") for o in args.overrides) else [f"run.threads={os.cpu_count()}"]
    for o in [*pinned, *args.overrides]:
        cmd += ["--set", o]
    started = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - started
    run = Path(args.run)
    rows = []
    for folder in sorted(run.glob("iter_*")):
        ev = folder / "eval.json"
        if ev.exists():
            data = json.loads(ev.read_text())
            rows.append(
                (data["iteration"], data["pass@1"], data["pass@1_stderr"], data.get("correct_with_valid_steps"))
            )
    manifest = json.loads((run / "manifest.json").read_text())
    print(f"{'iteration':>9} {'pass@1':>8} {'stderr':>7} {'valid steps':>11} {'kept':>5}")
    for it, p1, se, valid in rows:
        kept = manifest["iterations"].get(str(it), {}).get("train", {}).get("metrics", {}).get("examples", "-")
        print(f"{it:>9} {100 * p1:>7.1f}% {100 * se:>6.1f} {100 * (valid or 0):>10.1f}% {kept!s:>5}")
    scores = [r[1] for r in rows]
    rises = all(b > a for a, b in zip(scores, scores[1:], strict=False))
    gain = 100 * (scores[-1] - scores[0]) if scores else 0.0
    print(
        f"gain {gain:+.1f} points over {len(scores) - 1} iterations; rises every iteration: {rises}; "
        f"wall {wall / 60:.1f} min; load avg {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(
        json.dumps(
            {
                "bench": "iterate",
                "run": str(run),
                "test_size": json.loads((run / "iter_0000" / "eval.json").read_text())["test_size"]
                if (run / "iter_0000" / "eval.json").exists()
                else None,
                "pass@1": [round(s, 4) for s in scores],
                "stderr": [round(r[2], 4) for r in rows],
                "gain_points": round(gain, 1),
                "rises_every_iteration": rises,
                "wall_minutes": round(wall / 60, 1),
                "load_avg_before": round(load_before, 2),
                "threads": (pinned or [o for o in args.overrides if o.startswith("run.threads=")])[0].split("=")[1],
            }
        )
    )


if __name__ == "__main__":
    main()
