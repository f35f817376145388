"""Tool-integrated reasoning: model-written Python run in the sandbox between generation rounds.

The format is Qwen2.5-Math's TIR (and ToRA's, arXiv 2309.17452): the model writes a fenced
```` ```python ```` block, closes it and opens an ```` ```output ```` block; generation pauses there,
the sandbox (`reasoner.verifiers.sandbox`) runs the code under `ToolsConfig`'s limits, its
output (or the last line of its error, or "timed out") is written into the output block, the
block is closed and generation resumes from there. `task.prompt = "tools"` turns it on: the pack
asks for this format with its worked examples, and every backend the run builds is wrapped in a
`ToolBackend`.

- Executions run in a pool of worker threads (each drives one sandbox subprocess). A row's code
  is submitted the moment that row stops, while the batch's other rows are still decoding; the
  next round waits only for what is not finished by then (`ToolBackend.stats["wait_seconds"]`).
- In step-wise search (beam, MCTS: the caller's stop strings are step separators), a step that
  opens a code block is continued to the end of its output block: a step with code is one node.
- Inserted output tokens are given, not sampled: their log-probability is recorded as 0.0 and
  their token spans in ``Completion.meta["tool_spans"]`` so training can leave them out of the loss.
- Every execution is recorded in ``Completion.meta["executions"]`` (code, output, status,
  seconds), and searchers copy it into the trajectory's ``meta``.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

from reasoner.config import ToolsConfig
from reasoner.generation import Completion, Sampling, TextPrompts
from reasoner.verifiers.sandbox import Limits, run_python

CODE_OPEN = "```python"
OUTPUT_OPEN = "```output"
FENCE = "```"
_LAST_CODE = re.compile(r"```python[ \t]*\n(.*?)```\s*```output\s*$", re.S)


def pending_code(text: str) -> str | None:
    """The code of the python block that ``text`` ends on, opened for its output; else None.

    >>> pending_code("Let me compute.\\n```python\\nprint(2 + 3)\\n```\\n```output")
    'print(2 + 3)\\n'
    """
    tail = text[text.rfind(CODE_OPEN) :] if CODE_OPEN in text else ""
    m = _LAST_CODE.search(tail)
    return m.group(1) if m else None


def open_block(text: str) -> bool:
    """Whether ``text`` is inside a python block that is not yet closed."""
    at = text.rfind(CODE_OPEN)
    return at >= 0 and FENCE not in text[at + len(CODE_OPEN) :]


@dataclass(frozen=True)
class Execution:
    code: str
    output: str  # what was written into the output block
    status: str  # ok | error | timeout
    seconds: float


def shown_output(stdout: str, stderr: str, returncode: int | None, timed_out: bool, limits: Limits, cap: int) -> str:
    """What the model sees: stdout when the code ran, the last line of the error when it failed
    (as a Python REPL shows it), "timed out" past the limits; cut to ``cap`` characters."""
    if timed_out:
        text = f"TimeoutError: stopped after {limits.cpu_seconds} s of CPU or {limits.wall_seconds:g} s"
    elif returncode == 0:
        text = stdout.strip()
    else:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        text = lines[-1] if lines else f"the process ended with code {returncode}"
    return text if len(text) <= cap else text[: cap - 3] + "..."


def limits_of(cfg: ToolsConfig) -> Limits:
    return Limits(cpu_seconds=cfg.cpu_seconds, wall_seconds=cfg.wall_seconds, memory_bytes=cfg.memory_mb << 20)


def execute(code: str, cfg: ToolsConfig) -> Execution:
    """Run ``code`` in the sandbox under ``cfg``'s limits; never raises on bad code."""
    limits = limits_of(cfg)
    started = time.monotonic()
    res = run_python(code, limits)
    status = "timeout" if res.timed_out else ("ok" if res.returncode == 0 else "error")
    shown = shown_output(res.stdout, res.stderr, res.returncode, res.timed_out, limits, cfg.max_output_chars)
    return Execution(code, shown, status, round(time.monotonic() - started, 4))


_OUTPUT_BLOCK = re.compile(r"```output(\n.*?```\n?)", re.S)


def given_token_spans(text: str, tokenizer) -> list[tuple[int, int]]:
    """Token spans of ``tokenizer(text)`` that the sandbox wrote (an output block's content and
    closing fence; the model wrote its ```` ```output ```` opener): training leaves them out of the
    loss, as ToRA does. Tokens that straddle a boundary count as the model's."""
    chars = [m.span(1) for m in _OUTPUT_BLOCK.finditer(text)]
    if not chars:
        return []
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans = []
    for a, b in chars:
        inside = [i for i, (s, e) in enumerate(offsets) if s >= a and e <= b and e > s]
        if inside:
            spans.append((inside[0], inside[-1] + 1))
    return spans


def summary(executions: list[list[dict]]) -> dict | None:
    """Per-answer tool use of a set of answers (each a list of its executions); None when no
    answer ran code. Shares are of all executions."""
    runs = [e for answer in executions for e in answer]
    if not runs:
        return None
    return {
        "answers_with_code": sum(1 for a in executions if a) / len(executions),
        "executions_per_answer": len(runs) / len(executions),
        **{f"share_{s}": sum(e["status"] == s for e in runs) / len(runs) for s in ("ok", "error", "timeout")},
        "mean_seconds": sum(e["seconds"] for e in runs) / len(runs),
    }


class SandboxPool:
    """``cfg.workers`` threads, each running one sandbox subprocess at a time."""

    def __init__(self, cfg: ToolsConfig):
        self.cfg = cfg
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="reasoner-sandbox")

    def submit(self, code: str) -> Future[Execution]:
        return self._pool.submit(execute, code, self.cfg)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class _Row:
    prompt: list[int]
    stop: tuple[str, ...]  # the caller's stop strings, or only OUTPUT_OPEN inside a code block
    tokens: list[int]
    logprobs: list[float]
    text: str
    spans: list[tuple[int, int]]
    executions: list[dict]
    model_tokens: int = 0
    finish: str = ""
    future: Future | None = None


class ToolBackend(TextPrompts):
    """A backend whose generations may run Python: wraps any backend of the protocol."""

    def __init__(self, inner, cfg: ToolsConfig):
        self.inner = inner
        self.cfg = cfg
        self.tokenizer = inner.tokenizer
        self.pool = SandboxPool(cfg)
        self.stats = {"executions": 0, "execution_seconds": 0.0, "wait_seconds": 0.0, "generate_seconds": 0.0}
        self._lock = threading.Lock()

    def __getattr__(self, name: str):  # score, score_ids, store, model, ...: the inner backend's
        return getattr(self.inner, name)

    def generate_ids(
        self, prompts: list[list[int]], sampling: Sampling, progress=None, on_row=None
    ) -> list[Completion]:
        stepwise = bool(sampling.stop)  # a caller that stops at step separators wants one step
        rows = [_Row(list(p), sampling.stop, [], [], "", [], []) for p in prompts]
        active = list(range(len(rows)))
        for round_ in range(self.cfg.max_calls + 1):
            groups: dict[tuple[str, ...], list[int]] = {}
            for i in active:
                groups.setdefault(rows[i].stop, []).append(i)
            for stops, members in groups.items():
                self._round(rows, members, stops, sampling, round_)
            last = round_ == self.cfg.max_calls
            going = [i for i in active if self._resume(rows[i], sampling, stepwise, last)]
            if on_row is not None:
                for i in sorted(set(active) - set(going)):
                    on_row(i, self._completion(rows[i]))
            if progress is not None:
                progress(len(rows) - len(going))
            active = going
            if not active:
                break
        return [self._completion(row) for row in rows]

    # ---------------------------------------------------------------------------- a round
    def _round(self, rows: list[_Row], members: list[int], stops, sampling: Sampling, round_: int) -> None:
        """Continue ``members`` once; start each row's code as soon as the row stops at it."""
        budget = max(sampling.max_new_tokens - rows[i].model_tokens for i in members)
        sub = replace(
            sampling,
            stop=tuple(dict.fromkeys((*stops, OUTPUT_OPEN))),
            max_new_tokens=max(1, budget),
            seed=sampling.seed + 7919 * round_,
        )

        def started(j: int, c: Completion) -> None:
            row = rows[members[j]]
            code = pending_code(row.text + self._decode(c.token_ids))
            if code is not None and len(row.executions) < self.cfg.max_calls and c.finish_reason == "stop":
                row.future = self.pool.submit(code)

        t0 = time.monotonic()
        outs = self.inner.generate_ids([rows[i].prompt + rows[i].tokens for i in members], sub, on_row=started)
        with self._lock:
            self.stats["generate_seconds"] += time.monotonic() - t0
        for i, c in zip(members, outs, strict=True):
            row = rows[i]
            room = sampling.max_new_tokens - row.model_tokens
            ids, lps, finish = c.token_ids, c.logprobs, c.finish_reason
            if len(ids) > room:  # the round's cap is the largest budget: cut this row to its own
                ids, lps, finish = ids[:room], lps[:room], "length"
                if row.future is not None:
                    row.future.cancel()
                    row.future = None
            row.tokens += ids
            row.logprobs += lps
            row.model_tokens += len(ids)
            # a row that goes on after its output block must keep text and tokens in step
            row.text += self._decode(ids) if row.future is not None else c.text
            row.finish = finish

    def _resume(self, row: _Row, sampling: Sampling, stepwise: bool, last_round: bool) -> bool:
        """After a round: run the row's code and write its output block (True: generate again)."""
        if row.finish == "stop" and row.future is not None:
            t0 = time.monotonic()  # the code ran while the other rows decoded: wait for the rest
            ex: Execution = row.future.result()
            waited = time.monotonic() - t0
            row.future = None
            with self._lock:
                self.stats["executions"] += 1
                self.stats["execution_seconds"] += ex.seconds
                self.stats["wait_seconds"] += waited
            row.executions.append(asdict(ex))
            head = "" if row.text.endswith("\n") else "\n"
            block = f"{head}{ex.output}\n{FENCE}\n" if ex.output else f"{head}{FENCE}\n"
            ids = self.tokenizer(block, add_special_tokens=False)["input_ids"]
            row.spans.append((len(row.tokens), len(row.tokens) + len(ids)))
            row.tokens += ids
            row.logprobs += [0.0] * len(ids)
            row.text += block
            if stepwise:  # the step with its code and output is one node
                row.stop = sampling.stop
                return False
            return row.model_tokens < sampling.max_new_tokens and not last_round
        if row.finish == "stop" and stepwise and open_block(row.text) and not last_round:
            row.stop = (OUTPUT_OPEN,)  # inside a code block: a step separator does not end the step
            return row.model_tokens < sampling.max_new_tokens
        return False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @staticmethod
    def _completion(row: _Row) -> Completion:
        meta = {"executions": row.executions, "tool_spans": row.spans} if row.executions else {}
        return Completion(row.tokens, row.logprobs, row.text, row.finish or "length", len(row.prompt), meta)
