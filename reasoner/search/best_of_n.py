"""Best-of-n: n independent samples per problem (the baseline of every tree search)."""

from __future__ import annotations

from reasoner.generation import Completion, Sampling
from reasoner.records import Problem, Trajectory
from reasoner.search import SearchResult, SearchSettings, register
from reasoner.steps import step_token_ends
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
        meta={"finish_reason": out.finish_reason, **out.meta},  # tools: executions, tool_spans
    )
