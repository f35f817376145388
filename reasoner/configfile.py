"""Config files: TOML in and out, `--set a.b=c` overrides, and the migration of keys written
before the per-role training sections. The schema itself (one frozen dataclass per stage) is
`reasoner.config`."""

from __future__ import annotations

import dataclasses
import typing
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from reasoner.config import Config, ConfigError, RoleTrainConfig


class ConfigDeprecation(UserWarning):
    """A config key that still loads but has a new name; the message names the new key(s)."""


# Keys of the flat [train] section before the per-role sections, and where each now lives. The
# policy and the judge used to share [train]; the implicit PRM took [train] with its own
# label.reward_lora_rank and label.reward_learning_rate.
_ROLE_KEYS = {f.name for f in fields(RoleTrainConfig)}
_OLD_KEYS: dict[tuple[str, str], list[tuple[str, ...]]] = {
    **{("train", k): [("train", r, k) for r in ("policy", "reward", "judge")] for k in _ROLE_KEYS},
    ("train", "lora_rank"): [("train", "policy", "lora_rank"), ("train", "judge", "lora_rank")],
    ("train", "learning_rate"): [("train", "policy", "learning_rate"), ("train", "judge", "learning_rate")],
    ("train", "objective"): [("train", "policy", "objective")],
    ("label", "reward_lora_rank"): [("train", "reward", "lora_rank")],
    ("label", "reward_learning_rate"): [("train", "reward", "learning_rate")],
}
_TRAINS_REWARD_OR_JUDGE = ("implicit", "judge")  # labellers whose models the old loop trained


def _deprecated(old: str, new: list[tuple[str, ...]], warn: bool) -> None:
    if warn:
        names = " and ".join(".".join(p) for p in new)
        warnings.warn(f"config key {old} is deprecated; it now sets {names}; set those instead", ConfigDeprecation, 3)


def migrate(data: dict[str, Any], *, warn: bool = True) -> dict[str, Any]:
    """Today's keys from a mapping written with earlier ones (warning about each, when ``warn``).
    New keys given beside old ones win. Written before recipes existed, a config whose
    labellers include the implicit PRM or the judge ran their training phases: it gets the
    `prm` recipe."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, key), targets in _OLD_KEYS.items():
        table = data.get(section)
        if not isinstance(table, dict) or key not in table or isinstance(table[key], dict):
            continue
        value = table.pop(key)
        _deprecated(f"{section}.{key}", targets, warn)
        for _, role, new_key in targets:
            role_table = data.setdefault("train", {}).setdefault(role, {})
            if isinstance(role_table, dict):
                role_table.setdefault(new_key, value)
    run = data.get("run")
    if not (isinstance(run, dict) and "recipe" in run) and data.get("label", {}) and isinstance(data["label"], dict):
        labellers = data["label"].get("labellers", [])
        if isinstance(labellers, list) and any(name in labellers for name in _TRAINS_REWARD_OR_JUDGE):
            if warn:
                warnings.warn(
                    "config has no run.recipe; its labellers train the implicit PRM or the judge, so it runs the "
                    'prm recipe: set run.recipe = "prm"',
                    ConfigDeprecation,
                    2,
                )
            data.setdefault("run", {})["recipe"] = "prm"
    return data


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_table(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint)


def _cls_at(path: tuple[str, ...]) -> type:
    """The dataclass of the table at ``path`` (``("train", "policy")``)."""
    cls: type = Config
    for depth, name in enumerate(path):
        hints = _hints(cls)
        if name not in hints or not _is_table(hints[name]):
            where = ".".join(path[:depth])
            tables = [k for k, h in hints.items() if _is_table(h)]
            if depth == 0:
                raise ConfigError(f"unknown config section [{name}]; valid: {', '.join(tables)}")
            valid = ", ".join(hints)
            raise ConfigError(f"unknown key {where}.{name}; valid: {valid}")
        cls = hints[name]
    return cls


def _coerce(path: tuple[str, ...], value: Any) -> Any:
    *table, key = path
    if not table:
        raise ConfigError(f"bad key {key!r}: expected section.key, e.g. train.max_per_problem")
    cls = _cls_at(tuple(table))
    hints = _hints(cls)
    dotted = ".".join(path)
    if key not in hints:
        raise ConfigError(f"unknown key {dotted}; valid: {', '.join(hints)}")
    hint = hints[key]
    if _is_table(hint):
        raise ConfigError(f"{dotted} is a table; set one of its keys, e.g. {dotted}.{next(iter(_hints(hint)))}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(hint) is list:
        if typing.get_args(hint) == (float,):
            if not (
                isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            ):
                raise ConfigError(f"{dotted} must be a list of numbers, e.g. [0.6, 0.8], got {value!r}")
            return [float(v) for v in value]
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f'{dotted} must be a list of names, e.g. ["mc", "implicit"], got {value!r}')
        return value
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, float),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint, isinstance(value, dict))
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{dotted} must be {name}, got {value!r}")
    return value


def _build(base: Any, values: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``base`` (a table's defaults: `[train.reward]` has its own) with ``values`` applied."""
    hints = _hints(type(base))
    changes = {}
    for key, value in values.items():
        if key in hints and _is_table(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"[{'.'.join((*path, key))}] must be a table")
            changes[key] = _build(getattr(base, key), value, (*path, key))
        else:
            changes[key] = _coerce((*path, key), value)
    return _replace(base, path, changes)


def _replace(obj: Any, path: tuple[str, ...], changes: dict[str, Any]) -> Any:
    """`dataclasses.replace`, with a check's message prefixed by the table it is about when the
    table sits below a section (`[train.policy]` says ``train.policy.``)."""
    try:
        return replace(obj, **changes)
    except ConfigError as err:
        if len(path) > 1:
            raise ConfigError(f"{'.'.join(path)}.{err}") from None
        raise


def from_mapping(data: dict[str, Any], *, source: str = "<config>", warn: bool = True) -> Config:
    try:
        data = migrate(data, warn=warn)
        sections = {}
        for name, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"[{name}] must be a table")
            sections[name] = _build(_cls_at((name,))(), values, (name,))
        return Config(**sections)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def parse_override(text: str) -> list[tuple[tuple[str, ...], Any]]:
    """Parse ``section.key=value`` (or ``section.table.key=value``) into the keys it sets; the
    value is read as TOML, falling back to a bare string. A deprecated key sets its new ones."""
    if "=" not in text:
        raise ConfigError(f"bad --set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    path = tuple(dotted.strip().split("."))
    if len(path) < 2 or not all(path):
        raise ConfigError(f"bad --set {text!r}: the key must be section.key, e.g. train.policy.epochs")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if path in _OLD_KEYS:
        targets = _OLD_KEYS[path]
        _deprecated(".".join(path), targets, True)
        return [(t, _coerce(t, value)) for t in targets]
    return [(path, _coerce(path, value))]


def override_keys(overrides: list[str]) -> set[str]:
    """The dotted keys a list of ``--set`` texts changes (deprecated keys as their new ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigDeprecation)
        return {".".join(path) for text in overrides for path, _ in parse_override(text)}


def _set(obj: Any, path: tuple[str, ...], value: Any, where: tuple[str, ...] = ()) -> Any:
    if len(path) == 1:
        return _replace(obj, where, {path[0]: value})
    inner = _set(getattr(obj, path[0]), path[1:], value, (*where, path[0]))
    return _replace(obj, where, {path[0]: inner})


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """``config`` with the ``--set`` overrides applied. A check between keys is made on the
    result, not after each override: ``train.policy.batch_size=2`` then
    ``train.policy.micro_batch_size=2`` is accepted though the first alone (micro batch 8) is not.
    A bad override is named in the error."""
    start, parsed, refused = config, [], []
    for text in overrides:
        for path, value in parse_override(text):
            parsed.append((path, value))
            try:
                config = _set(config, path, value)
            except ConfigError as err:
                refused.append(ConfigError(f"--set {text}: {err}"))
    if not refused:
        return config
    data = to_mapping(start)  # refused one at a time; together, once every override is in, the checks may pass
    for path, value in parsed:
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    try:
        return from_mapping(data, warn=False)
    except ConfigError:
        raise refused[0] from None


def load(path: str | Path | None = None, overrides: list[str] | None = None, *, warn: bool = True) -> Config:
    """Read a TOML config (or the defaults when ``path`` is None) and apply ``--set`` overrides.
    ``warn=False`` loads a run's saved config without deprecation warnings (it is the run's
    record; the user did not just write it)."""
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from None
        config = from_mapping(data, source=str(path), warn=warn)
    return apply_overrides(config, overrides or [])


def to_mapping(config: Config) -> dict[str, Any]:
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


def _toml_table(obj: Any, path: tuple[str, ...], out: list[str]) -> None:
    out.append(f"[{'.'.join(path)}]")
    tables = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            tables.append((f.name, value))
            continue
        out.append(f"# {f.metadata.get('help', '')}")
        out.append(f"{f.name} = {_toml_value(value)}")
    out.append("")
    for name, value in tables:
        _toml_table(value, (*path, name), out)


def to_toml(config: Config) -> str:
    """The full resolved config as TOML, each key preceded by its help as a comment."""
    out: list[str] = []
    for section in fields(config):
        _toml_table(getattr(config, section.name), (section.name,), out)
    return "\n".join(out)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every key of a config (or of one of its tables) as ``{"section[.table].key": value}``."""
    flat: dict[str, Any] = {}
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        flat.update(flatten(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return flat


def diff(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ, as ``{"section.key": (old, new)}``."""
    a, b = flatten(old), flatten(new)
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}
