"""Typed configuration: one frozen dataclass per stage (TOML files and `--set a.b=c` overrides
are read and written by `reasoner.configfile`).

Every field has a default and a one-line help (``field(metadata={"help": ...})``), so
`reasoner config --help`-style listings and the saved `config.toml` document themselves.
`__post_init__` checks say what to set instead. No dotted-path instantiation: parts are named
and looked up in registries by the stage that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoner.errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors dataclasses' metadata key
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    recipe: str = _f("rft", "Recipe: the phases of an iteration, by name (rft, prm; see reasoner.recipes).")
    iterations: int = _f(3, "Number of loop iterations `reasoner iterate` runs.")
    seed: int = _f(0, "Seed for problem sampling, generation and training; same seed, same run.")
    device: str = _f("cpu", "Torch device for every model: cpu, cuda, cuda:1, ...")
    threads: int = _f(
        0,
        "Torch CPU threads; 0 = auto: the cores that other busy processes leave free, re-checked every second"
        " (at most $OMP_NUM_THREADS when set).",
    )
    baseline_eval: bool = _f(True, "Evaluate the starting model as iteration 0 before training.")
    report_to: str = _f(
        "none", "Metrics also go to RUN/tensorboard: auto (when tensorboard is installed), tensorboard, none."
    )

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError("run.iterations must be at least 1")


@dataclass(frozen=True)
class ModelConfig:
    policy: str = _f("smollm2-135m", "Starting policy: smollm2-135m, tiny[:SEED], a folder or a hub name.")
    max_prompt_tokens: int = _f(2048, "Prompts longer than this (in tokens) are refused, naming the problem.")


@dataclass(frozen=True)
class TaskConfig:
    pack: str = _f("arith", "Task pack name (arith, gsm8k, math).")
    source: str = _f(
        "", "Where gsm8k/math read from: a folder of data files (JSONL, JSON, CSV, Parquet), or a hub name."
    )
    train_size: int = _f(256, "Training problems drawn per iteration.")
    test_size: int = _f(500, "Held-out problems scored by evaluate (the same ones every iteration).")
    prompt: str = _f(
        "fewshot", "Prompt style of the pack: fewshot, zeroshot, or tools (writes Python the sandbox runs; [tools])."
    )
    difficulty: dict[str, Any] = _f({}, "Pack-specific difficulty knobs (arith: steps, max_number, ops).")


GENERATE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class GenerateConfig:
    backend: str = _f("hf", "Generation backend name: hf, or vllm (the optional extra).")
    searcher: str = _f("best_of_n", "Search strategy name (best_of_n).")
    samples: int = _f(8, "Samples per training problem.")
    temperature: float = _f(0.8, "Sampling temperature for training rollouts.")
    top_p: float = _f(1.0, "Nucleus sampling mass; 1.0 disables it.")
    max_new_tokens: int = _f(96, "Cap on generated tokens per sample.")
    batch_size: int = _f(32, "Rows decoded together; finished rows are refilled with new prompts.")
    chunk_size: int = _f(64, "Problems per saved chunk; a killed run redoes at most one chunk.")
    tensor_parallel_size: int = _f(1, "Backend vllm: GPUs one model is split over (tensor parallel).")
    data_parallel_size: int = _f(1, "Backend vllm: model replicas that share the requests (data parallel).")
    gpu_memory_utilization: float = _f(0.9, "Backend vllm: share of each GPU's memory vLLM may take.")
    prefix_caching: bool = _f(True, "Backend vllm: reuse the KV of shared prompt prefixes (tree search).")
    dtype: str = _f(
        "auto",
        "Dtype of the generating model's weights: auto (hf: float32; vllm: vLLM's choice), float32, bfloat16,"
        " float16 (bfloat16 halves the weights' memory and time on a GPU; samples differ slightly from float32's).",
    )
    stop_loops: bool = _f(
        False,
        "End a sample (finish 'loop') once its last tokens repeat one span three times, 48 tokens or more:"
        " a model caught in a loop stops spending the token cap on it (every generation of the run, and evaluate).",
    )

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("generate.samples, batch_size and max_new_tokens must be >= 1")
        if not 0 < self.top_p <= 1:
            raise ConfigError("generate.top_p must be in (0, 1]")
        if self.tensor_parallel_size < 1 or self.data_parallel_size < 1:
            raise ConfigError("generate.tensor_parallel_size and data_parallel_size must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError("generate.gpu_memory_utilization must be in (0, 1]")
        if self.dtype not in GENERATE_DTYPES:
            raise ConfigError(f"generate.dtype = {self.dtype!r}; valid: {', '.join(GENERATE_DTYPES)}")


@dataclass(frozen=True)
class SearchConfig:
    max_steps: int = _f(8, "Tree search: most reasoning steps in one solution.")
    step_tokens: int = _f(40, "Tree search: cap on tokens of one step.")
    beam_width: int = _f(4, "Beam search: partial solutions kept after each step.")
    beam_expansions: int = _f(4, "Beam search: next steps sampled from each kept partial solution.")
    beam_scorer: str = _f("implicit", "Labeller that scores partial solutions for beam search (implicit, judge, code).")
    judge_resets: int = _f(0, "Beam search: times a step the judge calls bad is resampled (StepWiser reset).")
    mcts_simulations: int = _f(16, "MCTS: simulations (select, expand, evaluate, back up) per problem.")
    mcts_token_budget: int = _f(0, "MCTS: stop a problem's search after this many generated tokens (0: no cap).")
    mcts_expansions: int = _f(3, "MCTS: next steps sampled when a node is expanded (m).")
    mcts_c: float = _f(1.0, "MCTS: PUCT exploration constant c.")
    mcts_dirichlet_alpha: float = _f(0.3, "MCTS: Dirichlet noise concentration at the root.")
    mcts_dirichlet_weight: float = _f(0.0, "MCTS: weight of root Dirichlet noise in the priors (0 disables it).")
    mcts_value: str = _f("implicit", "MCTS: value of a non-terminal node: implicit (reward model) or none (0.5).")
    pair_margin: float = _f(0.3, "MCTS: smallest Q difference between sibling steps that makes a preference pair.")
    pair_kinds: str = _f(
        "any",
        "MCTS pairs: any two sibling steps, or same: only two that both end the solution or both continue it.",
    )

    def __post_init__(self) -> None:
        if self.mcts_value not in ("implicit", "none"):
            raise ConfigError("search.mcts_value must be implicit or none")
        if self.pair_kinds not in ("any", "same"):
            raise ConfigError(f"search.pair_kinds must be any or same, got {self.pair_kinds!r}")
        if min(self.beam_width, self.beam_expansions, self.mcts_expansions, self.max_steps, self.step_tokens) < 1:
            raise ConfigError("search widths, expansions, max_steps and step_tokens must be >= 1")


@dataclass(frozen=True)
class LabelConfig:
    labellers: list[str] = _f([], "Step labellers the label phase runs, by name: gold, mc, implicit, judge.")
    max_trajectories: int = _f(
        0, "Label at most this many trajectories per iteration (0: all), drawn with the run seed."
    )
    only_correct: bool = _f(
        False,
        "Label only the verified-correct rollouts: all that RFT's train.select_by reads, at 1/accuracy of the "
        "cost (mc samples completions at every step). Needs a fixed train.select_threshold and the rft recipe.",
    )
    mc_samples: int = _f(8, "Math-Shepherd: completions sampled from each step prefix (N).")
    mc_temperature: float = _f(0.8, "Math-Shepherd: sampling temperature of the completions.")
    mc_max_new_tokens: int = _f(64, "Math-Shepherd: cap on tokens of one completion.")
    implicit_beta: float = _f(0.05, "PRIME: beta of the token reward beta * log(pi_phi / pi_ref).")
    reward_model: str = _f("", "Implicit PRM phi at iteration 1 ('' = the starting policy); later: the last reward/.")
    judge_model: str = _f("", "StepWiser judge ('' = the iteration's policy).")
    judge_samples: int = _f(4, "Judgments sampled per step; their mean verdict is the step's score.")
    judge_max_new_tokens: int = _f(48, "Cap on tokens of one judgment (reasoning plus verdict).")
    judge_rule: str = _f("difference", "How MC Q values become the judge's target: absolute, ratio or difference.")
    judge_tau: float = _f(0.0, "Threshold of the judge rule.")
    code_answer: bool = _f(
        False,
        "code labeller: the final answer must be a value the solution's claims computed; when it makes claims"
        " and none states its answer ('7 + 3 = 10', 'The answer is 11.'), the last step scores 0.",
    )
    shaping: str = _f("none", "Shaping of process rewards copied into trajectories: none, clip or delta.")
    clip_eta: float = _f(0.0, "Clip shaping: threshold eta in min(r - eta, 0).")


@dataclass(frozen=True)
class VerifyConfig:
    extractor: str = _f("", "Answer extractor: strict (the pack's answer phrase) or flexible; '' = the pack's own.")
    require_steps: bool = _f(
        False,
        "The gold step oracle (arith only; the upper-bound baseline): train only on samples whose every checkable"
        " step passes the pack's gold check. Off, training never sees gold step labels.",
    )


@dataclass(frozen=True)
class RoleTrainConfig:
    """How one role's model is trained: `[train.policy]`, `[train.reward]`, `[train.judge]`."""

    engine: str = _f("torch", "Training engine name: torch, or deepspeed (the optional extra).")
    objective: str = _f("rft", "Training objective name (policy: rft; reward: implicit_prm; judge: judge_rl).")
    lora_rank: int = _f(16, "LoRA rank through peft; 0 trains every parameter.")
    lora_alpha: int = _f(32, "LoRA scaling numerator.")
    learning_rate: float = _f(2e-4, "Peak AdamW learning rate (linear warm-up, then linear decay).")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_steps: int = _f(2, "Linear warm-up steps.")
    epochs: int = _f(1, "Passes over the training examples.")
    batch_size: int = _f(8, "Examples per optimizer step.")
    micro_batch_size: int = _f(8, "Examples per forward pass (gradient accumulation splits the batch).")
    max_steps: int = _f(0, "Cap on optimizer steps per iteration; 0 means no cap.")
    save_every: int = _f(5, "Save train_state every this many steps (mid-phase resume point).")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 disables clipping.")
    zero_stage: int = _f(0, "Engine deepspeed: ZeRO stage 0-3 (3 shards the weights; the model is built sharded).")
    offload: bool = _f(False, "Engine deepspeed: ZeRO-Offload (optimizer state, at stage 3 weights too, in CPU RAM).")
    deepspeed_config: str = _f(
        "", 'Engine deepspeed: a DeepSpeed JSON config file; its "auto" and missing fields come from this section.'
    )

    def __post_init__(self) -> None:
        if self.batch_size % self.micro_batch_size:
            raise ConfigError("batch_size must be a multiple of micro_batch_size")
        if not 0 <= self.zero_stage <= 3:
            raise ConfigError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.save_every < 1:
            raise ConfigError("save_every must be >= 1")


def _role(help: str, **defaults: Any) -> Any:  # noqa: A002 - mirrors dataclasses' metadata key
    return field(default_factory=lambda: RoleTrainConfig(**defaults), metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    max_per_problem: int = _f(4, "Policy: most distinct correct samples kept per problem.")
    filter_labeller: str = _f("", "Policy: drop samples with a step this labeller scores below its threshold (judge).")
    select_by: str = _f(
        "",
        "Policy: keep correct samples whose process reward from this labeller (mc, implicit, judge) clears a"
        " threshold.",
    )
    select_rule: str = _f("min", "Policy, select_by: a sample's score from its step scores: min or sum.")
    select_calibrate: bool = _f(
        True, "Policy, select_by: calibrate the threshold on the iteration's training rollouts (outcomes only)."
    )
    select_threshold: float = _f(0.0, "Policy, select_by: the threshold when select_calibrate is false.")
    rank_by: str = _f("implicit", "Policy objectives cream, mutual: the labeller ranking each prompt's samples.")
    rank_rule: str = _f("sum", "Policy objectives cream, mutual: a sample's reward from its step scores: min or sum.")
    after_samples: int = _f(2, "Mutual-Taught M-step: samples per problem from the policy after the E-step.")
    spark_ratio: float = _f(1.0, "Policy objective spark: auxiliary reward tasks per main (correct-sample) example.")
    spark_tasks: list[str] = _f(
        ["pointwise", "pairwise", "reflection"], "Policy objective spark: the auxiliary task kinds, drawn in turn."
    )
    prime_band: list[float] = _f(
        [0.2, 0.8], "PRIME: keep prompts whose share of correct samples lies in [low, high] (PRIME's filter)."
    )
    reward_band: list[float] = _f(
        [0.0, 1.0],
        "Reward phase (implicit PRM): train on the samples of prompts whose share of correct samples lies in"
        " [low, high]; [0, 1] keeps every sample, [0.01, 0.99] the prompts with both outcomes.",
    )
    ppo_clip: float = _f(0.2, "PRIME: PPO's clip epsilon of the policy update.")
    beta: float = _f(0.1, "Policy objective dpo: strength of the implicit KL constraint to the reference (beta).")
    dpo_nll: float = _f(
        0.0,
        "Policy objectives dpo, mutual: weight of the chosen sample's length-normalised NLL added to DPO's loss"
        " (Iterative RPO, arXiv 2404.19733); 0 is plain DPO.",
    )
    pairs: list[str] = _f(
        ["outcome", "step"],
        "Policy objective dpo: pair kinds; outcome (a correct and an incorrect sample of one problem),"
        " step (tree search's sibling steps after a shared prefix, pairs.jsonl).",
    )
    launcher: str = _f(
        "",
        "How training phases run on several processes: '' (in this process), torchrun, or deepspeed"
        " (its launcher; nodes through hostfile). `iterate` starts it for every training phase.",
    )
    processes: int = _f(1, "Launcher: training processes per node (one per GPU).")
    hostfile: str = _f("", "Launcher deepspeed: hostfile naming the nodes and their slots (a multi-node job).")
    launcher_args: list[str] = _f(
        [], "Launcher: further arguments as written, e.g. torchrun's --nnodes and --rdzv-endpoint."
    )
    policy: RoleTrainConfig = _role("[train.policy]: how the policy is trained.", objective="rft")
    reward: RoleTrainConfig = _role(
        "[train.reward]: how the implicit PRM is trained.", objective="implicit_prm", learning_rate=1e-4
    )
    judge: RoleTrainConfig = _role("[train.judge]: how the stepwise judge is trained.", objective="judge_rl")

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ConfigError(f"train.processes must be >= 1, got {self.processes}")
        for name in ("prime_band", "reward_band"):
            band = getattr(self, name)
            if len(band) != 2 or not 0.0 <= band[0] <= band[1] <= 1.0:
                raise ConfigError(f"train.{name} must be [low, high] with 0 <= low <= high <= 1, got {band}")


@dataclass(frozen=True)
class BalanceConfig:
    """B-STaR (arXiv 2412.17256): after each iteration, choose the next one's sampling temperature
    and reward threshold by the balance of exploration and exploitation on a probe set."""

    enabled: bool = _f(False, "End every iteration with the balance phase (writes iter_k/balance.json).")
    probe_size: int = _f(16, "Training problems in the probe set (drawn apart from the iteration's own).")
    samples: int = _f(8, "Responses per probe problem at each candidate temperature.")
    temperatures: list[float] = _f([0.5, 0.7, 0.9, 1.1], "Candidate sampling temperatures.")
    target: int = _f(8, "n*: distinct correct responses per query that count as enough exploration.")
    reward: str = _f("", "Labeller whose scores set the reward threshold ('' : outcome only, every response passes).")
    quantiles: list[float] = _f([0.0, 0.25, 0.5, 0.75], "Candidate thresholds: these quantiles of the probe's scores.")

    def __post_init__(self) -> None:
        if self.probe_size < 1 or self.samples < 1 or self.target < 1 or not self.temperatures:
            raise ConfigError("balance.probe_size, samples and target must be >= 1, and temperatures not empty")


@dataclass(frozen=True)
class ToolsConfig:
    """Python run in the sandbox while the model writes (`task.prompt = "tools"`; reasoner.tools)."""

    workers: int = _f(2, "Sandbox processes that run code at once, beside generation.")
    max_calls: int = _f(4, "Code executions per solution (per step in beam and MCTS) at most.")
    cpu_seconds: int = _f(5, "CPU time one execution may use before it is stopped.")
    wall_seconds: float = _f(10.0, "Wall-clock time one execution may take before it is killed.")
    memory_mb: int = _f(512, "Address space one execution may map, in MiB.")
    max_output_chars: int = _f(400, "Longest output (or error line) written back into the solution.")

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_calls < 1 or self.cpu_seconds < 1 or self.wall_seconds <= 0:
            raise ConfigError("tools.workers, max_calls and cpu_seconds must be >= 1 and wall_seconds > 0")
        if self.memory_mb < 16 or self.max_output_chars < 8:
            raise ConfigError("tools.memory_mb must be >= 16 and tools.max_output_chars >= 8")


@dataclass(frozen=True)
class EvalConfig:
    k: int = _f(4, "Samples per test problem for maj@k and sampled_pass@k; 0 skips them (greedy pass@1 only).")
    temperature: float = _f(0.8, "Sampling temperature for maj@k / pass@k.")
    max_new_tokens: int = _f(
        0, "Cap on generated tokens per test answer; 0 = the pack's own (arith 96, gsm8k 384, math 768)."
    )
    every: int = _f(
        1,
        "`iterate` evaluates after every this many iterations and always after the last (iteration 0: "
        "run.baseline_eval); 3 with 3 iterations scores only the end. `reasoner evaluate --run` still scores any.",
    )

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError("evaluate.every must be >= 1")


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)


# Reading, writing and overriding config files live in `reasoner.configfile`; the names stay
# importable from here, where every caller has always found them. Looked up on first use, so
# either module may be imported first (configfile imports this one).
_FILE_NAMES = (
    "ConfigDeprecation",
    "apply_overrides",
    "diff",
    "flatten",
    "from_mapping",
    "load",
    "migrate",
    "override_keys",
    "parse_override",
    "to_mapping",
    "to_toml",
)


def __getattr__(name: str) -> Any:
    if name in _FILE_NAMES:
        from reasoner import configfile

        return getattr(configfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# (and the names of `_FILE_NAMES`, through __getattr__)
__all__ = [
    "BalanceConfig",
    "Config",
    "ConfigError",
    "EvalConfig",
    "GenerateConfig",
    "LabelConfig",
    "ModelConfig",
    "RoleTrainConfig",
    "RunConfig",
    "SearchConfig",
    "TaskConfig",
    "ToolsConfig",
    "TrainConfig",
    "VerifyConfig",
]
