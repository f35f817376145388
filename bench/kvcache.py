"""The `hf` backend's tokens/s with its growing KV cache (`reasoner.generation.kvcache`) against
transformers' `DynamicCache` (a ``torch.cat`` of the whole cache each decode step), and its
one-copy drop of finished rows (`GrowingLayer.keep`) against the drop it had before (the kept
rows indexed out, then copied again by the next step to get spare columns), on a config's own
prompts and sampling settings, in one run: each arm in turn, round after round, so that the
machine's drift shows. All must give the same samples. The last line is one JSON object.

    python bench/kvcache.py --config configs/gsm8k.toml --problems 8 --samples 4 --new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch import workload  # noqa: E402

from reasoner.generation import Sampling, hf  # noqa: E402
from reasoner.generation.kvcache import GrowingCache, GrowingLayer  # noqa: E402
from reasoner.generation.prefix_store import PrefixStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def copying_keep(layer, rows: list[int], first: int = 0) -> None:
    """The drop before `GrowingLayer.keep`: the kept part indexed out and handed back."""
    layer.keys, layer.values = layer.keys[rows, :, first:], layer.values[rows, :, first:]


# the cache class the backend builds and the drop its growing layers do, per arm
ARMS = {
    "dynamic": (DynamicCache, GrowingLayer.keep),
    "copydrop": (GrowingCache, copying_keep),
    "growing": (GrowingCache, GrowingLayer.keep),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "gsm8k.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=0, help="0: the config's generate.max_new_tokens")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    conf, backend, prompts = workload(args.config, args.overrides, args.problems)
    gen = conf.generate
    asked = [p for p in prompts for _ in range(args.samples)]
    sampling = Sampling(
        temperature=gen.temperature,
        top_p=gen.top_p,
        max_new_tokens=args.new_tokens or gen.max_new_tokens,
        seed=0,
        batch_size=gen.batch_size,
    )
    load_before = os.getloadavg()[0]
    runs: dict[str, list[float]] = {name: [] for name in ARMS}
    texts: dict[str, list[str]] = {}
    tokens = 0
    for _ in range(args.rounds):
        for name, (cache, keep) in ARMS.items():
            hf.GrowingCache = cache  # the class the backend builds its caches from
            GrowingLayer.keep = keep
            backend.store = PrefixStore(max_bytes=backend.store.max_bytes)
            t0 = time.perf_counter()
            outs = backend.generate(asked, sampling)
            seconds = time.perf_counter() - t0
            tokens = sum(len(o.token_ids) for o in outs)
            runs[name].append(tokens / seconds)
            texts.setdefault(name, [o.text for o in outs])
            print(f"{name:8s}: {tokens} tokens in {seconds:.0f}s = {tokens / seconds:.1f} tok/s", flush=True)
    hf.GrowingCache, GrowingLayer.keep = ARMS["growing"]
    ratio = sum(runs["growing"]) / sum(runs["dynamic"])
    drop_ratio = sum(runs["growing"]) / sum(runs["copydrop"])
    same = texts["dynamic"] == texts["growing"] == texts["copydrop"]
    print(f"growing / dynamic: {ratio:.2f}x; one-copy drop / copying drop: {drop_ratio:.2f}x; same samples: {same}")
    print(f"load avg: {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(
        json.dumps(
            {
                "bench": "kvcache",
                "config": args.config,
                "requests": len(asked),
                "batch": gen.batch_size,
                "max_new_tokens": sampling.max_new_tokens,
                "tokens": tokens,
                "dynamic_tok_s": [round(x, 1) for x in runs["dynamic"]],
                "growing_tok_s": [round(x, 1) for x in runs["growing"]],
                "copydrop_tok_s": [round(x, 1) for x in runs["copydrop"]],
                "ratio": round(ratio, 3),
                "drop_ratio": round(drop_ratio, 3),
                "same_samples": same,
                "load_avg_before": round(load_before, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
