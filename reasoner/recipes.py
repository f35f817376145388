"""Recipes: each phase declared once, and recipes as ordered lists of them, chosen by name
(`run.recipe`). `reasoner.loop` runs a recipe; `runs`, `report` and the manifest take the order
from here. A joint-training method adds its phases and its recipe here, nothing else.

| recipe | phases |
|---|---|
| `rft` | generate, verify, label, train, evaluate |
| `prm` | generate, verify, label, train, reward, judge, evaluate |
| `prime` | generate, verify, prime (policy and implicit PRM together), evaluate |
| `cream` | generate, verify, label, train (objective `cream`), reward, evaluate |
| `mutual` | generate, verify, label, train (E-step, objective `mutual`), mstep (M-step), evaluate |
| `spark` | generate, verify, label (the policy judges itself), train (objective `spark`), evaluate |

`balance.enabled` ends any recipe's iteration with B-STaR's `balance` phase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reasoner import phases, trainphases
from reasoner.config import Config
from reasoner.errors import UnknownName
from reasoner.registry import Registry
from reasoner.session import Session

PhaseFn = Callable[[Session, int], tuple[list[str], dict[str, Any]]]


@dataclass(frozen=True)
class Phase:
    """A phase: its function; the artefacts it reads and writes under ``iter_k/`` (``@k-1``: of
    the iteration before; ``role@k-1``: a model resolved by `reasoner.roles`); its partial state,
    which a redo removes so the phase starts over; whether it marks itself running at its own
    resume point (training does); the role whose model it trains; and the help line of its
    command (`reasoner PHASE`)."""

    name: str
    run: PhaseFn
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    scratch: tuple[str, ...] = ()
    resumes_itself: bool = False
    produces: tuple[str, ...] = ()
    help: str = ""


PHASES: dict[str, Phase] = {
    p.name: p
    for p in (
        Phase(
            "generate",
            phases.generate,
            reads=("policy@k-1", "reward@k-1", "judge@k-1"),
            writes=("problems.jsonl", "rollouts.jsonl", "trees.jsonl", "pairs.jsonl"),
            scratch=("rollouts.parts", "trees.parts", "pairs.parts"),
            help="Sample solutions to the iteration's training problems (writes rollouts.jsonl).",
        ),
        Phase(
            "verify",
            phases.verify,
            reads=("problems.jsonl", "rollouts.jsonl"),
            writes=("rollouts.jsonl",),
            help="Check the rollouts' final answers and the pack's gold steps (rewrites rollouts.jsonl).",
        ),
        Phase(
            "label",
            phases.label,
            reads=("problems.jsonl", "rollouts.jsonl", "policy@k-1", "reward@k-1", "judge@k-1"),
            writes=("labels.jsonl", "rollouts.jsonl"),
            help="Give every step of every rollout a process reward from each labeller (writes labels.jsonl).",
        ),
        Phase(
            "train",
            trainphases.train,
            reads=("rollouts.jsonl", "labels.jsonl", "policy@k-1"),
            writes=("policy",),
            scratch=("train_state",),
            resumes_itself=True,
            produces=("policy",),
            help="Train the policy on verified rollouts (writes policy/, resumes from train_state/).",
        ),
        Phase(
            "reward",
            trainphases.reward,
            reads=("rollouts.jsonl", "labels.jsonl", "reward@k-1", "reference"),
            writes=("reward",),
            scratch=("train_state_reward",),
            resumes_itself=True,
            produces=("reward",),
            help="Update the implicit PRM on the labelled rollouts' outcomes (writes reward/).",
        ),
        Phase(
            "judge",
            trainphases.judge,
            reads=("rollouts.jsonl", "labels.jsonl", "judge@k-1"),
            writes=("judge",),
            scratch=("train_state_judge",),
            resumes_itself=True,
            produces=("judge",),
            help="Train the stepwise judge by RL against Monte-Carlo step targets (writes judge/).",
        ),
        Phase(
            "prime",
            trainphases.prime,
            reads=("rollouts.jsonl", "policy@k-1", "reward@k-1", "reference"),
            writes=("policy", "reward"),
            scratch=("train_state_prime",),
            resumes_itself=True,
            produces=("policy", "reward"),
            help="PRIME RL: train the policy and the implicit PRM together (recipe prime; writes policy/, reward/).",
        ),
        Phase(
            "mstep",
            trainphases.mstep,
            reads=("problems.jsonl", "rollouts.jsonl", "policy@k", "reward@k-1", "reference"),
            writes=("after.jsonl", "reward"),
            scratch=("after.jsonl", "train_state_mstep"),
            resumes_itself=True,
            produces=("reward",),
            help="Mutual-Taught's M-step: the reward model on before/after pairs (recipe mutual; writes reward/).",
        ),
        Phase(
            "evaluate",
            phases.evaluate,
            reads=("policy@k",),
            writes=("eval.json", "eval_samples.jsonl"),
            help="Score the iteration's policy on the held-out split (writes eval.json).",
        ),
        Phase(
            "balance",
            phases.balance,
            reads=("policy@k", "reward@k", "judge@k"),
            writes=("balance.json",),
            help="B-STaR: choose the next iteration's temperature and reward threshold (writes balance.json).",
        ),
    )
}

RECIPES: Registry[tuple[str, ...]] = Registry("recipe")
RECIPES["rft"] = ("generate", "verify", "label", "train", "evaluate")
RECIPES["prm"] = ("generate", "verify", "label", "train", "reward", "judge", "evaluate")
RECIPES["prime"] = ("generate", "verify", "prime", "evaluate")
RECIPES["cream"] = ("generate", "verify", "label", "train", "reward", "evaluate")
RECIPES["mutual"] = ("generate", "verify", "label", "train", "mstep", "evaluate")
RECIPES["spark"] = ("generate", "verify", "label", "train", "evaluate")


def get_recipe(name: str) -> list[Phase]:
    return [PHASES[p] for p in RECIPES.lookup(name)]


def phases_of(config: Config) -> list[Phase]:
    """The phases of one iteration of a run: its recipe's, then `balance` when enabled."""
    return get_recipe(config.run.recipe) + ([PHASES["balance"]] if config.balance.enabled else [])


def get_phase(recipe: list[Phase], name: str) -> Phase:
    for phase in recipe:
        if phase.name == name:
            return phase
    raise UnknownName(f"phase {name!r} is not in this run's recipe; its phases: {', '.join(p.name for p in recipe)}")


ALL_PHASES = list(PHASES)  # every phase any recipe may hold, in loop order: report columns
