"""Which `generate.batch_size` a config should use on this machine: the `hf` backend's tokens/s
at several batch sizes on the config's own prompts and settings, in one run.

A decode step costs a fixed part (reading every weight once) plus a part per row, so more rows
per step give more tokens per second until the per-row part dominates or memory runs out. The
bench measures, for each batch size, (1) the bare decode step (`bench/generation.py`'s: the
prompts prefilled once, then one token per row per forward, every row busy) and (2) the backend
generating ``--problems`` training problems x ``--samples`` samples at the config's temperature,
token cap and loop stop, as the generate phase does. The first batch size is measured again at
the end: the machine's speed drifts between minutes, and the two figures bracket the others.
Ratios are against the first batch size. The last line is one JSON object.

    python bench/batch.py --config configs/gsm8k.toml --batches 32 64 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generation import bare_decode  # noqa: E402

from reasoner import configfile, threads  # noqa: E402
from reasoner.generation import Sampling  # noqa: E402
from reasoner.generation.hf import HFBackend  # noqa: E402
from reasoner.generation.prefix_store import PrefixStore  # noqa: E402
from reasoner.phases import check_prompts  # noqa: E402
from reasoner.run import RunDir  # noqa: E402
from reasoner.session import Session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def workload(config: str, overrides: list[str], problems: int):
    """(config, its hf backend, the rendered prompts of its first ``problems`` training
    problems), threads set as the config says: what the generate phase would sample from."""
    conf = configfile.load(Path(config), overrides, warn=False)
    threads.configure(conf.run.threads)
    s = Session(RunDir(tempfile.mkdtemp(prefix="bench-")), conf)
    backend = s.backend(conf.model.policy)
    assert isinstance(backend, HFBackend), "the hf backend only"
    chosen = s.pack.problems("train", problems, conf.run.seed)
    return conf, backend, check_prompts(s, chosen, backend.tokenizer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "gsm8k.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--problems", type=int, default=16, help="training problems, each sampled --samples times")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=0, help="0: the config's generate.max_new_tokens")
    ap.add_argument("--bare-steps", type=int, default=48)
    args = ap.parse_args()
    conf, backend, prompts = workload(args.config, args.overrides, args.problems)
    gen = conf.generate
    asked = [p for p in prompts for _ in range(args.samples)]
    new_tokens = args.new_tokens or gen.max_new_tokens
    lengths = [len(backend.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    loaded = type("Loaded", (), {"model": backend.model, "tokenizer": backend.tokenizer})
    load_before = os.getloadavg()[0]
    print(
        f"{args.config}: {len(prompts)} problems x {args.samples} samples, prompts {min(lengths)}-{max(lengths)}"
        f" tokens, T={gen.temperature}, up to {new_tokens} new tokens, stop_loops={gen.stop_loops}"
    )
    rows = []
    for batch in [*args.batches, args.batches[0]]:
        bare_prompts = (asked * (batch // len(asked) + 1))[:batch]
        bare = bare_decode(loaded, bare_prompts, args.bare_steps)
        sampling = Sampling(
            temperature=gen.temperature, top_p=gen.top_p, max_new_tokens=new_tokens, seed=0, batch_size=batch
        )
        backend.store = PrefixStore(max_bytes=backend.store.max_bytes)  # each batch size computes its own prefixes
        t0 = time.perf_counter()
        outs = backend.generate(asked, sampling)
        seconds = time.perf_counter() - t0
        tokens = sum(len(o.token_ids) for o in outs)
        row = {
            "batch": batch,
            "bare_tok_s": round(bare, 1),
            "backend_tok_s": round(tokens / seconds, 1),
            "tokens": tokens,
            "seconds": round(seconds, 1),
            "looped": sum(o.finish_reason == "loop" for o in outs),
            "cut": sum(o.finish_reason == "length" for o in outs),
            "max_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
        rows.append(row)
        print(
            f"batch {batch:4d}: bare step {bare:6.1f} tok/s, backend {row['backend_tok_s']:6.1f} tok/s"
            f" ({tokens} tokens in {seconds:.0f}s; {row['looped']} stopped in a loop, {row['cut']} cut);"
            f" peak RSS so far {row['max_rss_gib']} GiB",
            flush=True,
        )
    first = (rows[0]["backend_tok_s"] + rows[-1]["backend_tok_s"]) / 2  # before and after the others
    for row in rows[:-1]:
        row["backend_vs_first"] = round(row["backend_tok_s"] / first, 2)
    print(
        "backend tok/s against batch "
        f"{args.batches[0]} (mean of its two runs, {rows[0]['backend_tok_s']} and {rows[-1]['backend_tok_s']}): "
        + ", ".join(f"batch {r['batch']} {r['backend_vs_first']:.2f}x" for r in rows[:-1])
    )
    print(f"load avg: {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(json.dumps({"bench": "batch", "config": args.config, "new_tokens": new_tokens, "rows": rows}))


if __name__ == "__main__":
    main()
