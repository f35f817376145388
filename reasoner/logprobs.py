"""Token log-probabilities, shared by scoring (generation backends, labellers) and training
(objectives): padding, and one function that computes the log-probabilities of given tokens
without materialising full-vocabulary logits for the whole sequence (the LM head runs only on
the scored positions, in chunks: at a 49k vocabulary, (B, T, V) fp32 logits of 8 x 300 tokens
take 470 MB, and their log-softmax as much again)."""

from __future__ import annotations

import torch


def pad_right(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists.

    Returns:
        ids (B, T) and attention mask (B, T) with 1 on real tokens.
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids.to(device), mask.to(device)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token.

    Args:
        logits: (B, T, V) model outputs.
        ids: (B, T) the input ids.
    Returns:
        (B, T-1): entry t is log p(ids[:, t+1] | ids[:, :t+1]).
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(
    model, seqs: list[list[int]], starts: list[int], pad_id: int, device, chunk: int = 256, from_start: bool = False
) -> torch.Tensor:
    """Next-token log-probabilities of right-padded sequences, with the LM head applied in
    chunks of ``chunk`` positions (full (B, T, V) logits would not fit at 49k vocab and long
    sequences): from the first scored position on, or, with ``from_start``, over every position
    from 0, the last included. Training uses ``from_start``: a sequence no longer than ``chunk``
    then meets the head in one (B, T) product exactly as ``model(ids).logits`` does, so its
    gradients round as they always did (a head over other rows rounds differently: it moved
    an embedded-model gradient norm from 4.274933 to 4.274936, and over many steps the
    held-out pass@1 of bench/iterate's second iteration from 39.8% to 40.6%). Longer sequences
    are cut into chunks: bounded memory, at the price of other rounding. Rows that share a
    prefix of at least `MIN_SHARED_PREFIX` tokens run it once (`_hidden_shared_prefix`), and the
    head then starts at the first scored position (that forward rounds differently anyway).

    Returns:
        (B, T-1) log-probabilities; positions before the first computed one are zero.
    """
    ids, mask = pad_right(seqs, pad_id, device)
    shared = common_prefix(seqs) if len(seqs) > 1 else 0
    if shared >= MIN_SHARED_PREFIX and _can_share_prefix(model, ids.shape[1]):
        hidden = _hidden_shared_prefix(model, ids, mask, shared)
        # the prefix's own positions: one row's hidden states, so the head runs from the first
        # position a row scores (the rounding differs from one (B, T) product either way)
        from_start = False
    else:
        # get_decoder / get_output_embeddings reach through a peft wrapper to the base model's parts
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
    width = ids.shape[1]
    first = 0 if from_start else max(min(starts) - 1, 0)
    end = width if from_start else width - 1  # hidden positions the head sees
    out = torch.zeros(ids.shape[0], width - 1, device=ids.device)
    head = model.get_output_embeddings()
    for s in range(first, end, chunk):
        e = min(s + chunk, end)
        logits = head(hidden[:, s:e]).float()  # (B, c, V)
        scored = min(e, width - 1)  # the last position predicts nothing
        if scored <= s:
            continue
        logp = torch.log_softmax(logits[:, : scored - s], dim=-1)
        out[:, s:scored] = logp.gather(-1, ids[:, s + 1 : scored + 1].unsqueeze(-1)).squeeze(-1)
    return out


MIN_SHARED_PREFIX = 16  # tokens: a shorter common prefix is not worth a second forward


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving every sequence one token of its own."""
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def _can_share_prefix(model, width: int) -> bool:
    """Whether one plain cache of a shared prefix stands for it in every row: every layer attends
    to the whole sequence (a sliding window shorter than it would not), and the decoder takes
    position ids (models without them, ALiBi's, run the plain forward)."""
    import inspect

    window = getattr(getattr(model, "config", None), "sliding_window", None)
    takes_positions = "position_ids" in inspect.signature(model.get_decoder().forward).parameters
    return (window is None or window >= width) and takes_positions


def _hidden_shared_prefix(model, ids: torch.Tensor, mask: torch.Tensor, shared: int) -> torch.Tensor:
    """Last hidden states (B, T, H) of right-padded rows whose first ``shared`` tokens are the
    same: the prefix runs once as one row, its keys and values are broadcast to every row, and
    only the rest runs per row. Autograd sums the rows' gradients into the one prefix forward,
    so the gradient is that of the plain forward (up to rounding). A few-shot prompt is most of
    a training example (arith: ~150 of ~230 tokens), so this computes about half the positions.

    Args:
        ids: (B, T) right-padded ids; mask: (B, T) with 1 on real tokens; ``shared`` < every
            row's length.
    """
    from transformers import DynamicCache

    from reasoner.models import cache_keyword

    decoder = model.get_decoder()
    keyword = cache_keyword(decoder)
    cache = DynamicCache()
    head = decoder(input_ids=ids[:1, :shared], use_cache=True, **{keyword: cache}).last_hidden_state  # (1, S, H)
    rows = ids.shape[0]
    broadcast = DynamicCache()
    for layer_idx, layer in enumerate(cache.layers):
        keys = layer.keys.expand(rows, -1, -1, -1)  # (B, heads, S, D), no copy
        broadcast.update(keys, layer.values.expand(rows, -1, -1, -1), layer_idx)
    positions = torch.arange(shared, ids.shape[1], device=ids.device).expand(rows, -1)
    tail = decoder(
        input_ids=ids[:, shared:],
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{keyword: broadcast},
    ).last_hidden_state  # (B, T - S, H)
    return torch.cat([head.expand(rows, -1, -1), tail], dim=1)


TRAIN_CHUNK = 1024  # positions per LM-head product in training: one product, as before, up to 1024 tokens


def completion_logprobs(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, device, chunk: int = TRAIN_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each completion's tokens after its prompt, left-aligned.

    Returns:
        logp (B, L) and mask (B, L), L the longest completion: ``logp[b, t]`` is
        log p(completion_b[t] | prompt_b, completion_b[:t]) where ``mask[b, t]`` is 1, else 0.
    """
    seqs = [p + c for p, c in zip(prompts, completions, strict=True)]
    full = sequence_logprobs(model, seqs, [len(p) for p in prompts], pad_id, device, chunk, from_start=True)
    width = max(len(c) for c in completions)
    index = torch.zeros(len(seqs), width, dtype=torch.long, device=full.device)
    mask = torch.zeros(len(seqs), width, device=full.device)
    for row, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        index[row, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c), device=full.device)
        mask[row, : len(c)] = 1.0
    return full.gather(1, index) * mask, mask
