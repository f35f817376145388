"""The `hf` backend: a continuous-batching decode loop over a transformers causal LM.

Why not `model.generate`: at batch 32 most of its time goes to rows that already finished and
sit in the batch as padding (../shared/PLATFORM.md: 55 tok/s vs 128 tok/s with every row busy).
Here a finished row leaves the KV cache at once and, when enough rows are free, new prompts are
prefilled together and joined to the running batch (left-padded to a common length), so every
decode step works on live rows only. Columns that every row masks out are trimmed away.

Sampling draws one uniform number per row from that request's own generator and inverts the
CDF, so a request's sample does not depend on its batch neighbours (up to float rounding of
batched matmuls).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from reasoner.generation import Completion, Sampling, register


@register("hf")
class HFBackend:
    def __init__(self, model, tokenizer, device: str = "cpu", refill_fraction: float = 0.25):
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.refill_fraction = refill_fraction
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.min_shared_prefix = 16
        self._prefix: tuple[tuple[int, ...] | None, list] = (None, [])

    # ------------------------------------------------------------------------------ generate
    @torch.inference_mode()
    def generate(self, prompts: list[str], sampling: Sampling, progress=None) -> list[Completion]:
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        return self.generate_ids(encoded, sampling, progress)

    @torch.inference_mode()
    def generate_ids(self, prompts: list[list[int]], sampling: Sampling, progress=None) -> list[Completion]:
        results: list[Completion | None] = [None] * len(prompts)
        # Longest prompts first: rows that join together have similar lengths (less padding).
        pending = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        state = _Batch(self.device)
        min_refill = max(1, int(sampling.batch_size * self.refill_fraction))
        stop_window = max((len(s) for s in sampling.stop), default=0) + 16
        shared = _common_prefix(prompts) if len(prompts) > 1 else 0
        shared = shared if shared >= self.min_shared_prefix else 0
        done = 0
        while pending or state.size:
            free = sampling.batch_size - state.size
            if pending and (free >= min_refill or state.size == 0):
                take, pending = pending[:free], pending[free:]
                logits = self._prefill(state, take, prompts, sampling, shared)
            else:
                logits = self._decode(state)
            finished = self._sample_and_append(state, logits, sampling, stop_window)
            for row in sorted(finished, reverse=True):
                req = state.requests[row]
                results[req.index] = self._completion(req, sampling)
                done += 1
            if finished:
                state.drop(finished)
                if progress is not None:
                    progress(done)
        return results  # type: ignore[return-value]

    def _prefill(self, state: _Batch, take: list[int], prompts, sampling: Sampling, shared: int) -> torch.Tensor:
        """Prefill prompts ``take`` and join them to the live batch.

        The first ``shared`` tokens are common to every prompt of this call: their keys and
        values are computed once and copied into each row. A row's layout is
        [shared prefix][left padding][own suffix]; positions come from the mask's cumsum, so
        the padding gap does not shift the rotary positions.
        """
        # Requests with the same prompt (n samples of one problem) are prefilled once.
        first_of: dict[tuple[int, ...], int] = {}
        row_of = [first_of.setdefault(tuple(prompts[i][shared:]), len(first_of)) for i in take]
        suffixes = list(first_of)
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(suffixes), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(suffixes), width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            ids[row, width - len(suffix) :] = torch.tensor(suffix)
            mask[row, width - len(suffix) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = DynamicCache()
        if shared:
            for layer_idx, (k, v) in enumerate(self._prefix_kv(prompts[take[0]][:shared])):
                size = (len(suffixes), -1, -1, -1)
                cache.update(k.expand(*size), v.expand(*size), layer_idx)
            ones = torch.ones((len(suffixes), shared), dtype=torch.long, device=self.device)
            mask = torch.cat([ones, mask], 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits_new = out.logits[:, -1, :].float()
        if len(suffixes) < len(take):
            index = torch.tensor(row_of, device=self.device)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
            mask, logits_new = mask[index], logits_new[index]
        new = [_Request(i, len(prompts[i]), _row_generator(sampling.seed, i)) for i in take]
        if state.size == 0:
            state.cache, state.mask, state.requests = cache, mask, new
            state.positions = mask.sum(-1)
            return logits_new
        logits_old = self._decode(state)
        state.join(cache, mask, new)
        return torch.cat([logits_old, logits_new], dim=0)

    def _prefix_kv(self, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values (1, H, P, D) per layer of a shared prefix; the last one is kept."""
        key = tuple(prefix)
        if self._prefix[0] != key:
            cache = DynamicCache()
            ids = torch.tensor([prefix], device=self.device)
            self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            self._prefix = (key, [(layer.keys, layer.values) for layer in cache.layers])
        return self._prefix[1]

    def _decode(self, state: _Batch) -> torch.Tensor:
        last = torch.tensor([r.last for r in state.requests], device=self.device).unsqueeze(-1)
        state.mask = F.pad(state.mask, (0, 1), value=1)
        out = self.model(
            input_ids=last,
            attention_mask=state.mask,
            position_ids=state.positions.unsqueeze(-1),
            past_key_values=state.cache,
            use_cache=True,
        )
        state.positions = state.positions + 1
        return out.logits[:, -1, :].float()

    def _sample_and_append(self, state: _Batch, logits, sampling: Sampling, stop_window: int):
        logprobs = torch.log_softmax(logits, dim=-1)
        if sampling.temperature <= 0:
            tokens = logits.argmax(dim=-1)
        else:
            u = torch.cat([torch.rand(1, generator=r.gen) for r in state.requests])
            tokens = _sample(logits / sampling.temperature, sampling.top_p, u.to(logits.device))
        chosen = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        finished = []
        for row, (req, tok, lp) in enumerate(zip(state.requests, tokens.tolist(), chosen.tolist(), strict=True)):
            req.tokens.append(tok)
            req.logprobs.append(lp)
            if tok in self.eos_ids:
                req.finish = "eos"
            elif sampling.stop and self._hit_stop(req, sampling.stop, stop_window):
                req.finish = "stop"
            elif len(req.tokens) >= sampling.max_new_tokens:
                req.finish = "length"
            if req.finish:
                finished.append(row)
        return finished

    def _hit_stop(self, req: _Request, stop: tuple[str, ...], window: int) -> bool:
        tail = self.tokenizer.decode(req.tokens[-window:], skip_special_tokens=False)
        return any(s in tail for s in stop)

    def _completion(self, req: _Request, sampling: Sampling) -> Completion:
        tokens = req.tokens[:-1] if req.finish == "eos" else req.tokens
        logprobs = req.logprobs[: len(tokens)]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if req.finish == "stop":
            cut = min((text.find(s) + len(s) for s in sampling.stop if s in text), default=len(text))
            text = text[:cut]
        return Completion(tokens, logprobs, text, req.finish or "length", req.prompt_len)

    # --------------------------------------------------------------------------------- score
    @torch.inference_mode()
    def score(self, prompts: list[str], continuations: list[str], batch_size: int = 8) -> list[list[float]]:
        """Token log-probabilities of each continuation (tokenised on its own) after its prompt."""
        tok = self.tokenizer
        pairs = [
            (tok(p, add_special_tokens=False)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
            for p, c in zip(prompts, continuations, strict=True)
        ]
        return self.score_ids(pairs, batch_size)

    @torch.inference_mode()
    def score_ids(self, pairs: list[tuple[list[int], list[int]]], batch_size: int = 8):
        from reasoner.training.tensors import sequence_logprobs

        out: list[list[float]] = [[] for _ in pairs]
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            seqs = [pairs[i][0] + pairs[i][1] for i in chunk]
            starts = [len(pairs[i][0]) for i in chunk]
            token_lp = sequence_logprobs(self.model, seqs, starts, self.pad_id, self.device)
            for i, lp, s, seq in zip(chunk, token_lp, starts, seqs, strict=True):
                out[i] = lp[s - 1 : len(seq) - 1].tolist()
        return out


class _Request:
    __slots__ = ("index", "prompt_len", "gen", "tokens", "logprobs", "finish")

    def __init__(self, index: int, prompt_len: int, gen: torch.Generator):
        self.index, self.prompt_len, self.gen = index, prompt_len, gen
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.finish: str | None = None

    @property
    def last(self) -> int:
        return self.tokens[-1]


class _Batch:
    """Live rows: their KV cache (B, H, L, D) per layer, mask (B, L) and next positions (B,)."""

    def __init__(self, device):
        self.device = device
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)
        self.positions = torch.zeros(0, dtype=torch.long, device=device)
        self.requests: list[_Request] = []

    @property
    def size(self) -> int:
        return len(self.requests)

    def drop(self, rows: list[int]) -> None:
        gone = set(rows)
        keep = [i for i in range(self.size) if i not in gone]
        self.requests = [self.requests[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, self.mask[:0, :0]
            self.positions = self.positions[:0]
            return
        idx = torch.tensor(keep, device=self.device)
        self.mask, self.positions = self.mask[idx], self.positions[idx]
        # Trim leading columns that every remaining row masks out.
        first = int(self.mask.argmax(dim=-1).min())
        for layer in self.cache.layers:
            layer.keys = layer.keys[idx, :, first:]
            layer.values = layer.values[idx, :, first:]
        self.mask = self.mask[:, first:]

    def join(self, cache: DynamicCache, mask: torch.Tensor, requests: list[_Request]) -> None:
        """Append prefilled rows; the shorter side is left-padded with masked zeros."""
        old_len, new_len = self.mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
        self.mask = torch.cat([F.pad(self.mask, (width - old_len, 0)), F.pad(mask, (width - new_len, 0))])
        self.positions = torch.cat([self.positions, mask.sum(-1)])
        self.requests = self.requests + requests


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    return t if t.shape[2] == width else F.pad(t, (0, 0, width - t.shape[2], 0))


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving every prompt one token of its own."""
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        i = 0
        while i < n and p[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def _row_generator(seed: int, index: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed * 1_000_003 + index)
    return gen


def _sample(logits: torch.Tensor, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling with one uniform per row.

    Args:
        logits: (B, V) temperature-scaled logits.
        top_p: nucleus mass; 1.0 keeps the whole distribution.
        u: (B,) uniforms in [0, 1).
    Returns:
        (B,) sampled token ids.
    """
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the first token is always kept
        sorted_p = sorted_p * keep
        cdf = sorted_p.cumsum(-1)
        pick = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).clamp(max=probs.shape[-1] - 1)
        return order.gather(-1, pick).squeeze(-1)
    cdf = probs.cumsum(-1)
    pick = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1))
    return pick.clamp(max=probs.shape[-1] - 1).squeeze(-1)


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    eos = getattr(model.generation_config, "eos_token_id", None) if model.generation_config else None
    for value in (eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(value)
    return ids
