"""Pure tensor helpers shared by scoring and training: padding, token log-probabilities."""

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
    model, seqs: list[list[int]], starts: list[int], pad_id: int, device, chunk: int = 256
) -> torch.Tensor:
    """Next-token log-probabilities of right-padded sequences, with the LM head applied only
    from the first scored position on, in chunks (full (B, T, V) logits would not fit at 49k
    vocab and long sequences).

    Returns:
        (B, T-1) log-probabilities; positions before ``min(starts) - 1`` are zero.
    """
    ids, mask = pad_right(seqs, pad_id, device)
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
    first = max(min(starts) - 1, 0)
    out = torch.zeros(ids.shape[0], ids.shape[1] - 1, device=ids.device)
    head = model.get_output_embeddings()
    for s in range(first, ids.shape[1] - 1, chunk):
        e = min(s + chunk, ids.shape[1] - 1)
        logits = head(hidden[:, s:e]).float()  # (B, c, V)
        logp = torch.log_softmax(logits, dim=-1)
        out[:, s:e] = logp.gather(-1, ids[:, s + 1 : e + 1].unsqueeze(-1)).squeeze(-1)
    return out
