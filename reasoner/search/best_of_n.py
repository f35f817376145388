"""Best-of-n: n independent samples per problem (the baseline of every tree search)."""

from __future__ import annotations

from reasoner.generation import Completion, Sampling
from reasoner.records import Problem, Trajectory
from reasoner.search import SearchResult, SearchSettings, register
from reasoner.tasks import render


@register("best_of_n")
def best_of_n(problems: list[Problem], backend, pack, tokenizer, settings: SearchSettings, progress=None):
    prompts = [render(pack.messages(p), tokenizer) for p in problems]
    requests = [(i, j) for i in range(len(problems)) for j in range(settings.samples)]
    sampling = Sampling(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        batch_size=settings.batch_size,
    )
    outs = backend.generate([prompts[i] for i, _ in requests], sampling, progress=progress)
    return SearchResult(
        [
            to_trajectory(problems[i], prompts[i], out, pack, tokenizer, f"{problems[i].id}/s{j}", "sample")
            for (i, j), out in zip(requests, outs, strict=True)
        ]
    )


def to_trajectory(problem: Problem, prompt: str, out: Completion, pack, tokenizer, tid: str, source: str):
    steps = pack.split_steps(out.text)
    return Trajectory(
        id=tid,
        problem_id=problem.id,
        prompt=prompt,
        steps=steps,
        text=out.text,
        source=source,
        logprob=float(sum(out.logprobs)),
        num_tokens=len(out.token_ids),
        step_token_ends=step_token_ends(out.token_ids, steps, tokenizer),
        meta={"finish_reason": out.finish_reason},
    )


def step_token_ends(token_ids: list[int], steps: list[str], tokenizer) -> list[int]:
    """For each step, the number of generated tokens up to the end of that step's text.

    Token pieces are decoded one at a time and their characters counted; the step's end is the
    first token whose cumulative text covers the step. Exact for ASCII; close for multibyte text.
    """
    pieces = [tokenizer.decode([tid], skip_special_tokens=True) for tid in token_ids]
    full = "".join(pieces)
    ends: list[int] = []
    covered, consumed, t = 0, 0, 0  # chars matched so far, chars of tokens consumed, tokens
    for step in steps:
        idx = full.find(step, covered)
        if idx < 0:
            ends.append(ends[-1] if ends else 0)
            continue
        covered = idx + len(step)
        while t < len(pieces) and consumed < covered:
            consumed += len(pieces[t])
            t += 1
        ends.append(t)
    return ends
