"""Step boundaries as token offsets (`Trajectory.step_token_ends`), so token-level rewards can be
summed per step. Used by search (which writes them) and by the implicit PRM (which sums its
token rewards with them); neither imports the other."""

from __future__ import annotations


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
