"""Shared `--set` keys of the tests' tiny end-to-end runs: a random 2-layer model on 8 `arith`
problems x 4 samples, seeded so that a few samples come out correct."""

TINY_SAMPLES = [
    "model.policy=tiny",
    "run.seed=3",
    "run.baseline_eval=false",
    "task.train_size=8",
    "task.test_size=2",
    "task.prompt=zeroshot",
    "generate.samples=4",
    "generate.max_new_tokens=24",
    "generate.temperature=1.0",
    "generate.batch_size=8",
    "generate.chunk_size=4",
    "evaluate.k=0",
    "evaluate.max_new_tokens=4",
]


def as_sets(keys: list[str]) -> list[str]:
    """``["a.b=1", ...]`` -> ``["--set", "a.b=1", ...]``."""
    return [x for kv in keys for x in ("--set", kv)]
