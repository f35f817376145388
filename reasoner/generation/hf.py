"""The `hf` backend: a continuous-batching decode loop over a transformers causal LM.

Why not `model.generate`: at batch 32 most of its time goes to rows that already finished and
sit in the batch as padding (../shared/PLATFORM.md: 55 tok/s vs 128 tok/s with every row busy).
Here a finished row leaves the KV cache at once and, when enough rows are free, new prompts are
prefilled together and joined to the running batch (left-padded to a common length), so every
decode step works on live rows only. Columns that every row masks out are trimmed away. The
cache grows in place (`kvcache.GrowingCache`): a step writes its keys and values into spare
columns rather than copying the whole cache (1.37x on 4-shot GSM8K prompts, bench/kvcache.py).

Sampling draws one uniform number per row from that request's own generator and inverts the
CDF, so a request's sample does not depend on its batch neighbours (up to float rounding of
batched matmuls).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reasoner import threads
from reasoner.generation import LOOP_EVERY, Completion, Sampling, TextPrompts, finish_text, looping, register
from reasoner.generation.kvcache import GrowingCache, GrowingLayer
from reasoner.generation.prefix_store import PrefixStore
from reasoner.logprobs import MIN_SHARED_PREFIX, common_prefix, sequence_logprobs
from reasoner.models import cache_keyword


class HFBackend(TextPrompts):
    def __init__(
        self,
        model,
        tokenizer,
        device: str = "cpu",
        refill_fraction: float = 0.25,
        prefix_store_bytes: int = 4 << 30,
        prefill_slack: float = 0.1,
        stop_loops: bool = False,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.refill_fraction = refill_fraction
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.cache_keyword = cache_keyword(model)
        self.store = PrefixStore(max_bytes=prefix_store_bytes)
        self.prefill_slack = prefill_slack
        self.stop_loops = stop_loops  # generate.stop_loops: end a looping row (finish "loop")
        self.stats = {"prefill_tokens": 0, "prefill_computed": 0, "decode_tokens": 0, "decode_steps": 0}

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu", settings=None) -> HFBackend:
        """The backend for model spec ``spec`` (see `reasoner.models`), weights loaded by transformers
        in float32, or in ``settings.dtype`` (`generate.dtype`) when that names one."""
        from reasoner import models

        loaded = models.load(spec, device)
        dtype = getattr(settings, "dtype", "auto")
        if dtype not in ("auto", "float32"):
            loaded.model.to(getattr(torch, dtype))
        return cls(loaded.model, loaded.tokenizer, device, stop_loops=getattr(settings, "stop_loops", False))

    # ------------------------------------------------------------------------------ generate
    @torch.inference_mode()
    def generate_ids(
        self, prompts: list[list[int]], sampling: Sampling, progress=None, on_row=None
    ) -> list[Completion]:
        results: list[Completion | None] = [None] * len(prompts)
        # Longest prompts first: rows that join together have similar lengths (less padding).
        pending = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        state = _Batch(self.device)
        min_refill = max(1, int(sampling.batch_size * self.refill_fraction))
        stop_window = max((len(s) for s in sampling.stop), default=0) + 16
        shared = common_prefix(prompts) if len(prompts) > 1 else 0
        if shared >= MIN_SHARED_PREFIX and self.store.longest(prompts[0], shared)[0] < shared:
            self._compute_prefix(prompts[0][:shared])
        done = 0
        while pending or state.size:
            threads.adapt()  # between decode steps: give way to other busy processes
            free = sampling.batch_size - state.size
            if pending and (free >= min_refill or state.size == 0):
                take, pending = pending[:free], pending[free:]
                logits = self._prefill(state, take, prompts, sampling)
            else:
                logits = self._decode(state)
            finished = self._sample_and_append(state, logits, sampling, stop_window)
            for row in sorted(finished, reverse=True):
                req = state.requests[row]
                results[req.index] = self._completion(req, sampling)
                if on_row is not None:  # e.g. start running its code while the others decode
                    on_row(req.index, results[req.index])
                if sampling.keep_kv:  # the cache holds prompt + all tokens but the last sampled one
                    self.store.put(prompts[req.index] + req.tokens[:-1], state.row_kv(row))
                done += 1
            if finished:
                state.drop(finished)
                if progress is not None:
                    progress(done)
        return results  # type: ignore[return-value]

    def _prefill(self, state: _Batch, take: list[int], prompts, sampling: Sampling) -> torch.Tensor:
        """Prefill prompts ``take`` and join them to the live batch.

        Requests with the same prompt (n samples of one problem) are prefilled once. Each
        distinct prompt starts from the longest prefix whose keys and values are in the prefix
        store (a shared few-shot prefix, or a search node's prefix), so only its new tokens are
        computed. Prompts of similar length go through the model together (`_length_groups`):
        a forward pads every row to its longest, so one forward over a 150- and a 60-token
        prompt would spend most of the short row on padding.
        """
        first_of: dict[tuple[int, ...], int] = {}
        row_of = [first_of.setdefault(tuple(prompts[i]), len(first_of)) for i in take]
        uniq = list(first_of)
        hits = [self.store.longest(u, len(u) - 1) for u in uniq]
        new_len = [len(u) - c for u, (c, _) in zip(uniq, hits, strict=True)]
        order = sorted(range(len(uniq)), key=lambda r: -new_len[r])
        parts = [
            self._prefill_rows([uniq[r] for r in group], [hits[r] for r in group])
            for group in _length_groups(order, new_len, self.prefill_slack)
        ]
        cache, mask = _stack_rows([(c, m) for c, m, _ in parts])
        logits_new = torch.cat([lg for _, _, lg in parts])
        at = {r: i for i, r in enumerate(order)}
        index = [at[r] for r in row_of]  # each request's row among the prefilled ones
        if index != list(range(len(order))):
            picked = torch.tensor(index, device=self.device)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[picked], layer.values[picked]
            mask, logits_new = mask[picked], logits_new[picked]
        new = [_Request(i, len(prompts[i]), _row_generator(sampling.seed, i)) for i in take]
        if state.size == 0:
            state.cache, state.mask, state.requests = cache, mask, new
            state.positions = mask.sum(-1)
            return logits_new
        logits_old = self._decode(state)
        state.join(cache, mask, new)
        return torch.cat([logits_old, logits_new], dim=0)

    def _prefill_rows(self, uniq: list[tuple[int, ...]], hits) -> tuple[GrowingCache, torch.Tensor, torch.Tensor]:
        """One forward over distinct prompts: (cache, mask (R, W), last logits (R, V)).

        A row's layout is [padding][cached prefix][padding][new tokens]; positions come from
        the mask's cumsum, so the gaps do not shift the rotary positions.
        """
        width_c = max(c for c, _ in hits)
        suffixes = [u[c:] for u, (c, _) in zip(uniq, hits, strict=True)]
        width = max(len(x) for x in suffixes)
        ids = torch.full((len(uniq), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(uniq), width_c + width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            ids[row, width - len(suffix) :] = torch.tensor(suffix)
            mask[row, width_c + width - len(suffix) :] = 1
            mask[row, width_c - hits[row][0] : width_c] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = GrowingCache()
        if width_c:
            for layer_idx, (k, v) in enumerate(_stack_prefixes(hits, width_c)):
                cache.update(k, v, layer_idx)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, width_c:]
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_keyword: cache},
        )
        self.stats["prefill_tokens"] += sum(len(x) for x in suffixes)
        self.stats["prefill_computed"] += ids.numel()
        return cache, mask, out.logits[:, -1, :].float()

    def _compute_prefix(self, prefix: list[int]) -> None:
        """Compute and store the keys and values of a prefix that many prompts share."""
        cache = GrowingCache()
        ids = torch.tensor([prefix], device=self.device)
        self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.cache_keyword: cache})
        self.stats["prefill_tokens"] += len(prefix)
        self.store.put(prefix, [(layer.keys, layer.values) for layer in cache.layers])

    def _decode(self, state: _Batch) -> torch.Tensor:
        last = torch.tensor([r.last for r in state.requests], device=self.device).unsqueeze(-1)
        state.mask = F.pad(state.mask, (0, 1), value=1)
        out = self.model(
            input_ids=last,
            attention_mask=state.mask,
            position_ids=state.positions.unsqueeze(-1),
            use_cache=True,
            **{self.cache_keyword: state.cache},
        )
        state.positions = state.positions + 1
        self.stats["decode_tokens"] += state.size
        self.stats["decode_steps"] += 1
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
            elif self.stop_loops and len(req.tokens) % LOOP_EVERY == 0 and looping(req.tokens):
                req.finish = "loop"
            if req.finish:
                finished.append(row)
        return finished

    def _hit_stop(self, req: _Request, stop: tuple[str, ...], window: int) -> bool:
        tail = self.tokenizer.decode(req.tokens[-window:], skip_special_tokens=False)
        return any(s in tail for s in stop)

    def _completion(self, req: _Request, sampling: Sampling) -> Completion:
        tokens = req.tokens[:-1] if req.finish == "eos" else req.tokens
        logprobs = req.logprobs[: len(tokens)]
        text = finish_text(self.tokenizer, tokens, req.finish or "length", sampling.stop)
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
    def score_ids(self, pairs: list[tuple[list[int], list[int]]], batch_size: int = 8, progress=None):
        """As `score`, from (prompt ids, continuation ids); pairs that share a prompt are scored
        together, so that its forward runs once (`score_chunks`). ``progress(n_done)`` is called
        after each forward."""
        out: list[list[float]] = [[] for _ in pairs]
        done = 0
        for chunk in score_chunks(pairs, batch_size):
            seqs = [pairs[i][0] + pairs[i][1] for i in chunk]
            starts = [len(pairs[i][0]) for i in chunk]
            token_lp = sequence_logprobs(self.model, seqs, starts, self.pad_id, self.device)
            for i, lp, s, seq in zip(chunk, token_lp, starts, seqs, strict=True):
                out[i] = lp[s - 1 : len(seq) - 1].tolist()
            done += len(chunk)
            if progress is not None:
                progress(done)
        return out


def score_chunks(pairs: list[tuple[list[int], list[int]]], batch_size: int) -> list[list[int]]:
    """Indices of ``pairs`` in the forwards that score them: the pairs of one prompt (of at least
    `MIN_SHARED_PREFIX` tokens) in chunks of their own, where `sequence_logprobs` runs the prompt
    once for all of them (an iteration's samples of one problem, a judge's two verdicts after one
    solution); every other pair sorted by length, ``batch_size`` a chunk, as padding is least.

    >>> score_chunks([([1] * 16, [2]), ([3], [4, 5]), ([1] * 16, [6, 7]), ([8], [9])], 8)
    [[0, 2], [3, 1]]
    """
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, (prompt, _) in enumerate(pairs):
        by_prompt.setdefault(tuple(prompt), []).append(i)
    chunks, rest = [], []
    for prompt, rows in by_prompt.items():
        if len(rows) > 1 and len(prompt) >= MIN_SHARED_PREFIX:
            rows.sort(key=lambda i: len(pairs[i][1]))
            chunks += [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
        else:
            rest += rows
    rest.sort(key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    return chunks + [rest[s : s + batch_size] for s in range(0, len(rest), batch_size)]


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
        self.cache: GrowingCache | None = None
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
            if isinstance(layer, GrowingLayer):
                layer.keep(keep, first)
            else:  # transformers' own layers (bench/kvcache.py's baseline)
                layer.keys, layer.values = layer.keys[idx, :, first:], layer.values[idx, :, first:]
        self.mask = self.mask[:, first:]

    def row_kv(self, row: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values (1, H, L, D) per layer of one row's real columns."""
        cols = self.mask[row].nonzero().squeeze(-1)
        return [
            (layer.keys[row : row + 1, :, cols], layer.values[row : row + 1, :, cols]) for layer in self.cache.layers
        ]

    def join(self, cache: GrowingCache, mask: torch.Tensor, requests: list[_Request]) -> None:
        """Append prefilled rows; the shorter side is left-padded with masked zeros."""
        self.cache, self.mask = _stack_rows([(self.cache, self.mask), (cache, mask)])
        self.positions = torch.cat([self.positions, mask.sum(-1)])
        self.requests = self.requests + requests


def _stack_prefixes(hits, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the cached prefixes of several rows right-aligned in (R, H, width, D) tensors."""
    sample = next(kv for _, kv in hits if kv is not None)
    out = []
    for layer, (k0, v0) in enumerate(sample):
        keys = k0.new_zeros((len(hits), k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((len(hits), v0.shape[1], width, v0.shape[3]))
        for row, (length, kv) in enumerate(hits):
            if length:
                keys[row, :, width - length :] = kv[layer][0][0]
                values[row, :, width - length :] = kv[layer][1][0]
        out.append((keys, values))
    return out


def _length_groups(order: list[int], lengths: list[int], slack: float) -> list[list[int]]:
    """Split rows sorted longest first into runs that one padded forward computes with at most
    ``slack`` more positions than real tokens (a run's width is its first row's length).

    >>> _length_groups([0, 1, 2, 3], [100, 95, 40, 38], 0.1)
    [[0, 1], [2, 3]]
    """
    groups: list[list[int]] = []
    real = 0
    for r in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= (1 + slack) * (real + lengths[r]):
            groups[-1].append(r)
            real += lengths[r]
        else:
            groups.append([r])
            real = lengths[r]
    return groups


def _stack_rows(parts: list[tuple[GrowingCache, torch.Tensor]]) -> tuple[GrowingCache, torch.Tensor]:
    """(cache, mask (R, W)) pairs as one, rows in order, shorter ones left-padded with masked
    zeros."""
    if len(parts) == 1:
        return parts[0]
    width = max(mask.shape[1] for _, mask in parts)
    cache = GrowingCache()
    for layer_idx in range(len(parts[0][0].layers)):
        keys = torch.cat([_left_pad(c.layers[layer_idx].keys, width) for c, _ in parts])
        values = torch.cat([_left_pad(c.layers[layer_idx].values, width) for c, _ in parts])
        cache.update(keys, values, layer_idx)
    return cache, torch.cat([F.pad(m, (width - m.shape[1], 0)) for _, m in parts])


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    return t if t.shape[2] == width else F.pad(t, (0, 0, width - t.shape[2], 0))


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


register("hf")(HFBackend.from_spec)
