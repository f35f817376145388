"""What the phases of one run share: the config, the run folder, the pack, the recipe's roles
and the generation backends built from model specs (a backend loads its weights its own way)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from reasoner import seeding, threads
from reasoner.config import Config
from reasoner.generation import Backend, get_backend
from reasoner.records import Problem
from reasoner.rewards import LabelContext, get_labeller
from reasoner.rewards.judge import judge_steps
from reasoner.roles import Roles
from reasoner.run import RunDir
from reasoner.search import SearchSettings
from reasoner.tasks import get_pack
from reasoner.verifiers import get_extractor, get_verifier
from reasoner.verifiers.extract import answer_for

MAX_BACKENDS = 4  # policy, implicit PRM, its reference and the judge may all be live in one phase


@dataclass
class Session:
    run: RunDir
    config: Config
    _backends: OrderedDict[str, Backend] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        from reasoner.recipes import phases_of  # recipes name the phases, which use sessions

        t = self.config.task
        self.pack = get_pack(t.pack, source=t.source, prompt=t.prompt, difficulty=t.difficulty)
        self.recipe = phases_of(self.config)
        self.roles = Roles(self.run, self.config, {role: p.name for p in self.recipe for role in p.produces})
        threads.configure(self.config.run.threads)

    # -------------------------------------------------------------------------------- roles
    def policy_spec(self, iteration: int) -> str:
        """The policy that iteration ``iteration`` starts from: ``policy@(iteration-1)``."""
        return self.roles.spec("policy", max(iteration - 1, 0))

    def policy_after(self, iteration: int) -> str:
        return self.roles.spec("policy", iteration)

    def reward_spec(self, iteration: int) -> str:
        """Implicit PRM phi used in iteration ``iteration``: ``reward@(iteration-1)``."""
        return self.roles.spec("reward", max(iteration - 1, 0))

    def judge_spec(self, iteration: int) -> str:
        return self.roles.spec("judge", max(iteration - 1, 0))

    def plan(self, iteration: int) -> dict:
        """The settings a `balance` phase chose for iteration ``iteration`` (B-STaR: temperature,
        reward threshold), from iteration ``iteration - 1``'s balance.json; {} when none ran."""
        if iteration < 2 or not self.run.is_complete(iteration - 1, "balance"):
            return {}
        return self.run.read_json(iteration - 1, "balance.json")["plan"]

    def backend(self, spec: str) -> Backend:
        """One backend per model spec, kept so its prefix store serves later calls."""
        if spec in self._backends:
            self._backends.move_to_end(spec)
            return self._backends[spec]
        if len(self._backends) >= MAX_BACKENDS:
            self._backends.popitem(last=False)
        factory = get_backend(self.config.generate.backend)
        backend = factory(spec, self.config.run.device, self.config.generate)
        if self.config.task.prompt == "tools":  # the model's Python runs in the sandbox as it writes
            from reasoner.tools import ToolBackend

            backend = ToolBackend(backend, self.config.tools)
        self._backends[spec] = backend
        return backend

    # --------------------------------------------------------------------------- verifying
    def is_correct(self, problem: Problem, text: str) -> bool:
        extract = get_extractor(self.config.verify.extractor or self.pack.extractor)
        return get_verifier(self.pack.verifier)(problem.answer, answer_for(extract, text, problem.answer)).correct

    # ------------------------------------------------------------------------------ search
    def search_settings(
        self, iteration: int, seed: int, training: bool, problems: dict[str, Problem] | None = None
    ) -> SearchSettings:
        """Sampling settings plus the tree search's scorer, verifier and step judge."""
        cfg = self.config
        g = cfg.generate
        contexts: list[LabelContext] = []

        def ctx() -> LabelContext:  # built on first use: best-of-n asks for no scores at all
            if not contexts:
                contexts.append(self.label_context(iteration, problems or {}))
            return contexts[0]

        def scores_by(name: str):
            if name == "none":
                return None
            labeller = get_labeller(name)
            return lambda trajs: labeller.search_scores(trajs, ctx(), seed)

        judge_fn = None
        if cfg.search.judge_resets:
            judge_fn = lambda asks: judge_steps(asks, ctx(), cfg.label.judge_samples, seed)[2]  # noqa: E731
        return SearchSettings(
            samples=g.samples,
            temperature=self.plan(iteration).get("temperature", g.temperature),
            top_p=g.top_p,
            max_new_tokens=g.max_new_tokens,
            batch_size=g.batch_size,
            seed=seed,
            tree=cfg.search,
            scorer=scores_by(cfg.search.beam_scorer),
            value=scores_by(cfg.search.mcts_value),
            is_correct=self.is_correct if training else None,
            step_judge=judge_fn,
        )

    def label_context(self, iteration: int, problems: dict[str, Problem]) -> LabelContext:
        cfg = self.config
        settings = replace(cfg.label, judge_model=self.judge_spec(iteration))
        return LabelContext(
            problems=problems,
            pack=self.pack,
            settings=settings,
            seed=seeding.derive(cfg.run.seed, "label", iteration),
            batch_size=cfg.generate.batch_size,
            policy=self.policy_spec(iteration),
            backend_for=self.backend,
            is_correct=self.is_correct,
            reward_spec=self.reward_spec(iteration),
            reference_spec=self.roles.spec("reference", 0),
            tools=cfg.tools,
        )
