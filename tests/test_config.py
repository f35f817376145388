import dataclasses

import pytest

from reasoner import config as cfg


def test_every_field_has_a_default_and_help():
    for section in dataclasses.fields(cfg.Config):
        for f in dataclasses.fields(getattr(cfg.Config(), section.name)):
            assert f.metadata.get("help", "").strip(), f"{section.name}.{f.name} has no help"
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def test_toml_round_trip(tmp_path):
    c = cfg.apply_overrides(cfg.Config(), ["train.learning_rate=1e-3", 'task.difficulty={steps = 3, ops = "+-*"}'])
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml(c))
    assert cfg.load(path) == c


@pytest.mark.parametrize(
    ("override", "section", "key", "value"),
    [
        ("train.epochs=3", "train", "epochs", 3),
        ("train.learning_rate=1", "train", "learning_rate", 1.0),
        ("model.policy=tiny:3", "model", "policy", "tiny:3"),
        ('model.policy="a b"', "model", "policy", "a b"),
        ("verify.require_steps=false", "verify", "require_steps", False),
    ],
)
def test_overrides_are_typed(override, section, key, value):
    c = cfg.apply_overrides(cfg.Config(), [override])
    got = getattr(getattr(c, section), key)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.epochs", "expected section.key=value"),
        ("epochs=3", "section.key"),
        ("trian.epochs=3", "unknown config section"),
        ("train.epoch=3", "unknown key train.epoch"),
        ("train.epochs=three", "must be int"),
        ("train.batch_size=6", "multiple of train.micro_batch_size"),
        ("generate.top_p=0", "top_p"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override, fragment):
    with pytest.raises(cfg.ConfigError, match=fragment):
        cfg.apply_overrides(cfg.Config(), [override])


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'x'\n")
    with pytest.raises(cfg.ConfigError, match="bad.toml"):
        cfg.load(bad)
    with pytest.raises(cfg.ConfigError, match="does not exist"):
        cfg.load(tmp_path / "missing.toml")


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.toml"))
    assert {"default.toml", "smoke.toml"} <= set(names)
    for p in root.glob("*.toml"):
        cfg.load(p)


def test_diff_lists_changed_keys():
    a = cfg.Config()
    b = cfg.apply_overrides(a, ["train.epochs=5"])
    assert cfg.diff(a, b) == {"train.epochs": (1, 5)}
