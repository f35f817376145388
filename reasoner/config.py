"""Typed configuration: one frozen dataclass per stage, TOML files, `--set a.b=c` overrides.

Every field has a default and a one-line help (``field(metadata={"help": ...})``), so
`reasoner config --help`-style listings and the saved `config.toml` document themselves.
`__post_init__` checks say what to set instead. No dotted-path instantiation: parts are named
and looked up in registries by the stage that uses them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors dataclasses' metadata key
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    iterations: int = _f(3, "Number of loop iterations `reasoner iterate` runs.")
    seed: int = _f(0, "Seed for problem sampling, generation and training; same seed, same run.")
    device: str = _f("cpu", "Torch device for every model: cpu, cuda, cuda:1, ...")
    threads: int = _f(0, "Torch CPU threads; 0 keeps torch's default.")
    baseline_eval: bool = _f(True, "Evaluate the starting model as iteration 0 before training.")

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError("run.iterations must be at least 1")


@dataclass(frozen=True)
class ModelConfig:
    policy: str = _f("smollm2-135m", "Starting policy: smollm2-135m, tiny[:SEED], a folder or a hub name.")
    max_prompt_tokens: int = _f(512, "Prompts longer than this are refused with the problem id.")


@dataclass(frozen=True)
class TaskConfig:
    pack: str = _f("arith", "Task pack name (arith, gsm8k, math).")
    source: str = _f("", "Where gsm8k/math read from: a folder of JSONL files or a hub name.")
    train_size: int = _f(256, "Training problems drawn per iteration.")
    test_size: int = _f(500, "Held-out problems scored by evaluate (the same ones every iteration).")
    prompt: str = _f("fewshot", "Prompt style of the pack: fewshot or zeroshot.")
    difficulty: dict[str, Any] = _f({}, "Pack-specific difficulty knobs (arith: steps, max_number, ops).")


@dataclass(frozen=True)
class GenerateConfig:
    backend: str = _f("hf", "Generation backend name (hf).")
    searcher: str = _f("best_of_n", "Search strategy name (best_of_n).")
    samples: int = _f(8, "Samples per training problem.")
    temperature: float = _f(0.8, "Sampling temperature for training rollouts.")
    top_p: float = _f(1.0, "Nucleus sampling mass; 1.0 disables it.")
    max_new_tokens: int = _f(96, "Cap on generated tokens per sample.")
    batch_size: int = _f(32, "Rows decoded together; finished rows are refilled with new prompts.")
    chunk_size: int = _f(64, "Problems per saved chunk; a killed run redoes at most one chunk.")

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("generate.samples, batch_size and max_new_tokens must be >= 1")
        if not 0 < self.top_p <= 1:
            raise ConfigError("generate.top_p must be in (0, 1]")


@dataclass(frozen=True)
class VerifyConfig:
    extractor: str = _f("flexible", "Answer extractor: strict (the pack's answer phrase) or flexible.")
    require_steps: bool = _f(True, "Count a sample correct for training only if every checkable step is right.")


@dataclass(frozen=True)
class TrainConfig:
    engine: str = _f("torch", "Training engine name (torch).")
    objective: str = _f("rft", "Training objective name (rft).")
    lora_rank: int = _f(16, "LoRA rank through peft; 0 trains every parameter.")
    lora_alpha: int = _f(32, "LoRA scaling numerator.")
    learning_rate: float = _f(2e-4, "Peak AdamW learning rate (linear warm-up, then linear decay).")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_steps: int = _f(2, "Linear warm-up steps.")
    epochs: int = _f(1, "Passes over the kept samples.")
    batch_size: int = _f(8, "Sequences per optimizer step.")
    micro_batch_size: int = _f(8, "Sequences per forward pass (gradient accumulation splits the batch).")
    max_steps: int = _f(0, "Cap on optimizer steps per iteration; 0 means no cap.")
    max_per_problem: int = _f(4, "Most distinct correct samples kept per problem.")
    save_every: int = _f(5, "Save train_state every this many steps (mid-phase resume point).")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 disables clipping.")

    def __post_init__(self) -> None:
        if self.batch_size % self.micro_batch_size:
            raise ConfigError("train.batch_size must be a multiple of train.micro_batch_size")
        if self.save_every < 1:
            raise ConfigError("train.save_every must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    k: int = _f(4, "Samples per test problem for maj@k and pass@k; 0 skips them (greedy pass@1 only).")
    temperature: float = _f(0.8, "Sampling temperature for maj@k / pass@k.")
    max_new_tokens: int = _f(96, "Cap on generated tokens per test answer.")


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


SECTIONS = {f.name: f.type for f in fields(Config)}


def _section_cls(name: str) -> type:
    hints = typing.get_type_hints(Config)
    if name not in hints:
        raise ConfigError(f"unknown config section [{name}]; valid: {', '.join(hints)}")
    return hints[name]


def _coerce(section: str, key: str, value: Any) -> Any:
    cls = _section_cls(section)
    hints = typing.get_type_hints(cls)
    if key not in hints:
        raise ConfigError(f"unknown key {section}.{key}; valid: {', '.join(hints)}")
    hint = hints[key]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, float),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint, isinstance(value, dict))
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{section}.{key} must be {name}, got {value!r}")
    return value


def from_mapping(data: dict[str, Any], *, source: str = "<config>") -> Config:
    sections = {}
    for name, values in data.items():
        cls = _section_cls(name)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        try:
            sections[name] = cls(**{k: _coerce(name, k, v) for k, v in values.items()})
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return Config(**sections)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value``; the value is read as TOML, falling back to a bare string."""
    if "=" not in text:
        raise ConfigError(f"bad --set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"bad --set {text!r}: the key must be section.key, e.g. train.epochs")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    section, key = parts
    return section, key, _coerce(section, key, value)


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    for text in overrides:
        section, key, value = parse_override(text)
        try:
            new_section = replace(getattr(config, section), **{key: value})
        except ConfigError as err:
            raise ConfigError(f"--set {text}: {err}") from None
        config = replace(config, **{section: new_section})
    return config


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a TOML config (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from None
        config = from_mapping(data, source=str(path))
    return apply_overrides(config, overrides or [])


def to_mapping(config: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(config)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: Config) -> str:
    """The full resolved config as TOML, each key preceded by its help as a comment."""
    out = []
    for section in fields(config):
        out.append(f"[{section.name}]")
        obj = getattr(config, section.name)
        for f in fields(obj):
            out.append(f"# {f.metadata.get('help', '')}")
            out.append(f"{f.name} = {_toml_value(getattr(obj, f.name))}")
        out.append("")
    return "\n".join(out)


def diff(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ, as ``{"section.key": (old, new)}``."""
    a, b = to_mapping(old), to_mapping(new)
    return {f"{s}.{k}": (a[s][k], b[s][k]) for s in a for k in a[s] if a[s][k] != b[s][k]}
