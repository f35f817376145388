"""Worker processes that run `symbolic` judgments under a hard per-judgment time limit.

Why processes: sympy and the LaTeX parsers can hang on hostile input (10k nested parentheses,
huge powers), and `signal.alarm` only works in the main thread. A judgment is sent to a
worker over a pipe; if no answer arrives within the limit the worker is killed and replaced,
and the verdict is "unverifiable: timeout" (never "incorrect"). Safe to call from threads:
each call checks a worker out of a queue.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import queue
import threading

from reasoner.errors import UserError
from reasoner.verifiers.verdict import CORRECT, UNVERIFIABLE, Verdict

DEFAULT_TIMEOUT = float(os.environ.get("REASONER_VERIFY_TIMEOUT", "5"))
STARTUP_TIMEOUT = 120.0


class VerifierUnavailable(UserError):
    """The symbolic checker cannot run here (a parser package is missing or broken): every
    answer would come back unverifiable, so the job stops instead of scoring nothing."""


def _serve(conn) -> None:
    try:
        from reasoner.verifiers.equivalence import symbolic

        warm = symbolic("\\frac{1}{2}", "\\sqrt{2}/\\sqrt{8}")  # warm-up: the parsers load lazily
        if warm.status != CORRECT:
            raise RuntimeError(f"1/2 and sqrt(2)/sqrt(8) judged {warm.status} ({warm.reason})")
    except Exception as err:  # told to the caller, who stops with it, rather than dying unseen
        conn.send(("broken", f"{type(err).__name__}: {err}"))
        return
    conn.send("ready")  # imports done: the judgment clock starts after this, not before
    while True:
        try:
            gold, prediction = conn.recv()
        except EOFError:
            return
        try:
            verdict = symbolic(gold, prediction)
        except RecursionError:
            verdict = Verdict(UNVERIFIABLE, "recursion limit while parsing")
        except Exception as err:  # a verdict, never an exception, whatever sympy raises
            verdict = Verdict(UNVERIFIABLE, f"checker error: {type(err).__name__}")
        conn.send((verdict.status, verdict.reason))


class _Worker:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        # Starting a process and importing sympy takes seconds on a loaded machine; that time
        # is not the judgment's, so wait for the worker to say it is ready.
        if not self.conn.poll(STARTUP_TIMEOUT):
            self.kill()
            raise OSError(f"verifier worker did not start within {STARTUP_TIMEOUT:g}s")
        hello = self.conn.recv()
        if hello != "ready":
            self.kill()
            raise VerifierUnavailable(
                f"the symbolic answer checker cannot run: {hello[1]}; reinstall the project's"
                " dependencies (pip install -e .) so that sympy and latex2sympy2_extended import"
            )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class JudgePool:
    def __init__(self, workers: int = 1, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._ctx = mp.get_context("spawn")  # no forked copies of the caller's threads or models
        self._free: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(workers):
            self._free.put(None)  # started on first use
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def judge(self, gold: str, prediction: str) -> Verdict:
        worker = self._free.get()
        try:
            if worker is None or not worker.proc.is_alive():
                worker = self._start()
            worker.conn.send((gold, prediction))
            if worker.conn.poll(self.timeout):
                status, reason = worker.conn.recv()
                return Verdict(status, reason)
            worker.kill()
            worker = None
            return Verdict(UNVERIFIABLE, f"timeout after {self.timeout:g}s")
        except (EOFError, BrokenPipeError, OSError):
            worker = None
            return Verdict(UNVERIFIABLE, "checker process died")
        finally:
            self._free.put(worker)

    def _start(self) -> _Worker:
        worker = _Worker(self._ctx)
        with self._lock:
            self._all.append(worker)
        return worker

    def close(self) -> None:
        with self._lock:
            for w in self._all:
                if w.proc.is_alive():
                    w.kill()
            self._all.clear()


_POOL: JudgePool | None = None
_POOL_LOCK = threading.Lock()


def default_pool() -> JudgePool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = JudgePool()
        return _POOL
