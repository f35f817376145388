"""Generation backends behind one protocol, looked up by config name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reasoner.registry import Registry


@dataclass(frozen=True)
class Sampling:
    """How to sample. ``temperature == 0`` is greedy decoding.

    ``seed`` seeds request ``i`` with its own generator (``seed * 1_000_003 + i``), so a
    request's sample does not depend on which other requests share its batch.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0
    batch_size: int = 32
    keep_kv: bool = False  # store each finished row's keys and values for later prompts that extend it


@dataclass
class Completion:
    """One generated continuation. ``logprobs[t]`` is log p(token_t) under the model at T=1."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str  # "stop" (a stop string), "eos", "length", or "loop" (`loop_end`)
    prompt_tokens: int = 0
    meta: dict = field(default_factory=dict)


class Backend(Protocol):
    """Built by its registered factory from ``(spec, device, settings)`` (settings: the
    `[generate]` section, or None): a model spec, not a loaded module, so each backend loads
    weights its own way. A factory may carry ``require()``, which raises a `UserError` saying
    how to install what it needs. ``tokenizer`` encodes prompts for search."""

    tokenizer: object

    def generate(self, prompts: list[str], sampling: Sampling, progress=None, on_row=None) -> list[Completion]:
        """One completion per prompt, in order. ``progress(n_done)`` is called as rows finish, and
        ``on_row(index, completion)`` with each row as soon as it finishes."""

    def generate_ids(
        self, prompts: list[list[int]], sampling: Sampling, progress=None, on_row=None
    ) -> list[Completion]:
        """As `generate`, from token ids (tree search continues exact prefixes)."""

    def score_ids(self, pairs: list[tuple[list[int], list[int]]], progress=None) -> list[list[float]]:
        """As `score`, from (prompt ids, continuation ids); ``progress(n_done)`` is called as pairs
        are scored."""

    def score(self, prompts: list[str], continuations: list[str]) -> list[list[float]]:
        """Token log-probabilities of each continuation after its prompt."""


class TextPrompts:
    """`Backend.generate` for a backend that has `generate_ids`: each prompt tokenised on its
    own, without special tokens (the chat template already holds them)."""

    tokenizer: object

    def generate(self, prompts: list[str], sampling: Sampling, progress=None, on_row=None) -> list[Completion]:
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        return self.generate_ids(encoded, sampling, progress, on_row)


def finish_text(tokenizer, tokens: list[int], finish: str, stop: tuple[str, ...]) -> str:
    """A completion's text: its tokens decoded, cut just after the first stop string when it
    stopped on one (a step boundary), as every backend returns it."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if finish == "stop":
        cut = min((text.find(s) + len(s) for s in stop if s in text), default=len(text))
        text = text[:cut]
    return text


# A loop: the last max(LOOP_REPEATS * p, LOOP_MIN_SPAN) tokens repeat one span of p tokens
# (1 <= p <= LOOP_MAX_PERIOD), checked each time a sample's length reaches a multiple of
# LOOP_EVERY, so every backend stops a looping sample at the same token.
LOOP_REPEATS, LOOP_MIN_SPAN, LOOP_MAX_PERIOD, LOOP_EVERY = 3, 48, 128, 8


def looping(tokens: list[int]) -> bool:
    """Whether ``tokens`` end in a loop: a span of p tokens repeated to fill the last
    max(3p, 48) tokens ("... is 2 x 2 = 4 onions.\nThe total cost of 2 x 2 = 4 onions" three
    times over). A greedy model caught in such a loop rarely leaves it before the token cap."""
    n = len(tokens)
    for p in range(1, LOOP_MAX_PERIOD + 1):
        span = max(LOOP_REPEATS * p, LOOP_MIN_SPAN)
        if span > n:
            return False
        if tokens[-1] == tokens[-1 - p] and tokens[n - span + p :] == tokens[n - span : n - p]:
            return True
    return False


def loop_end(tokens: list[int]) -> int | None:
    """The length at which a generation stopping on loops ends ``tokens``: the first multiple
    of LOOP_EVERY at which they are `looping`, or None."""
    for n in range(LOOP_EVERY, len(tokens) + 1, LOOP_EVERY):
        if looping(tokens[:n]):
            return n
    return None


BACKENDS: Registry[Callable[..., Backend]] = Registry("generation backend")
register = BACKENDS.register
get_backend = BACKENDS.lookup


from reasoner.generation import hf as _hf  # noqa: E402,F401  (registers "hf")
from reasoner.generation import vllm_backend as _vllm  # noqa: E402,F401  (registers "vllm"; vLLM itself loads on use)
