"""Shared `--set` keys of the tests' tiny end-to-end runs: a random 2-layer model on 8 `arith`
problems x 4 samples, seeded so that a few samples come out correct."""

import time

from reasoner import models
from reasoner.generation import Completion, Sampling

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


def train_answers() -> dict[str, str]:
    """The gold answer of each training problem of TINY_SAMPLES' first iteration (run.seed 3,
    8 `arith` problems of the default difficulty), by question: what a scripted stand-in policy
    needs to answer right."""
    from reasoner import seeding
    from reasoner.tasks import get_pack

    pack = get_pack("arith", prompt="zeroshot", difficulty={"steps": 2, "max_number": 10, "ops": "+-"})
    return {p.question: p.answer for p in pack.problems("train", 8, seeding.derive(3, "train", 1))}


def as_sets(keys: list[str]) -> list[str]:
    """``["a.b=1", ...]`` -> ``["--set", "a.b=1", ...]``."""
    return [x for kv in keys for x in ("--set", kv)]


class Scripted:
    """A stand-in policy: ``script(context)`` is what it means to write; what the context already
    ends with of it is not written again. Emitted one character token at a time."""

    def __init__(self, script, delay: float = 0.0):
        self.tokenizer = models.tiny_tokenizer()
        self.script, self.delay = script, delay
        self.calls: list[int] = []  # rows per generate call

    def generate(self, prompts, sampling, progress=None, on_row=None):
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        return self.generate_ids(ids, sampling, progress, on_row)

    def generate_ids(self, prompts, sampling: Sampling, progress=None, on_row=None):
        self.calls.append(len(prompts))
        out = []
        for i, ids in enumerate(prompts):
            context = self.tokenizer.decode(ids)
            plan = self.script(context)
            plan = plan[max(k for k in range(len(plan) + 1) if context.endswith(plan[:k])) :]
            text, finish = "", "eos"
            for ch in plan:
                text += ch
                if any(s in text for s in sampling.stop):
                    finish = "stop"
                    break
                if len(text) >= sampling.max_new_tokens:
                    finish = "length"
                    break
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            c = Completion(tokens, [-0.5] * len(tokens), text, finish, len(ids))
            if on_row is not None:
                on_row(i, c)
            time.sleep(self.delay)  # the rows after this one are still "decoding"
            out.append(c)
        return out
