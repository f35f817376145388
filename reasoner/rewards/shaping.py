"""Reward shaping for process rewards at training time.

Clip and Delta from "On Designing Effective RL Reward at Training Time for LLM Reasoning"
(Gao et al., arXiv 2410.15115): a policy trained on raw process rewards learns to repeat
"good-looking" steps, because every extra step adds positive reward. Clip makes every step
reward non-positive; Delta turns the sequence into differences so the sum telescopes to the
first step's reward. Either way, the summed process reward is bounded and extra steps cannot
farm reward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reasoner.registry import Registry

SHAPERS: Registry[Callable[..., torch.Tensor]] = Registry("shaper")


@SHAPERS.register("clip")
def clip(rewards: torch.Tensor, mask: torch.Tensor, eta: float = 0.0) -> torch.Tensor:
    """Clip mechanism: r_t <- min(r_t - eta, 0).

    Args:
        rewards: (B, S) step rewards.
        mask: (B, S) 1 on real steps, 0 on padding.
        eta: threshold subtracted before clipping (the paper's eta).
    Returns:
        (B, S) shaped rewards, 0 on padding.
    """
    return torch.clamp(rewards - eta, max=0.0) * mask


def delta(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Delta mechanism: r_t <- r_t - r_{t+1} for every step but the last, which is kept.

    Args:
        rewards: (B, S) step rewards. mask: (B, S) 1 on real steps (a prefix of each row).
    Returns:
        (B, S) shaped rewards; each row sums to its first step's reward.
    """
    nxt = torch.zeros_like(rewards)
    nxt[:, :-1] = rewards[:, 1:] * mask[:, 1:]
    return (rewards - nxt) * mask


def delta_loop(rewards: list[float]) -> list[float]:
    """Plain-loop reference of `delta` for one trajectory."""
    return [r - rewards[t + 1] for t, r in enumerate(rewards[:-1])] + rewards[-1:]


SHAPERS.register("none")(lambda r, m, eta=0.0: r * m)
SHAPERS.register("delta")(lambda r, m, eta=0.0: delta(r, m))
