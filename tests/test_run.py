import json

import pytest

from reasoner import config as cfg
from reasoner.run import COMPLETE, RunDir, RunError


def test_new_run_saves_the_resolved_config(tmp_path):
    rd = RunDir(tmp_path / "r")
    c = cfg.apply_overrides(cfg.Config(), ["train.policy.epochs=4"])
    rd.open(c)
    assert rd.saved_config() == c
    assert "# Passes over the training examples." in rd.config_path.read_text()


def test_changed_config_is_refused_unless_named(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.open(cfg.Config())
    changed = cfg.apply_overrides(cfg.Config(), ["train.policy.epochs=4", "generate.samples=2"])
    with pytest.raises(RunError, match="generate.samples") as err:
        rd.open(changed, ["train.policy.epochs=4"])
    assert "train.policy.epochs" not in str(err.value)
    assert rd.saved_config() == cfg.Config()  # nothing changed on refusal
    rd.open(changed, ["train.policy.epochs=4", "generate.samples=2"])
    assert rd.saved_config() == changed
    (entry,) = rd.manifest()["config_changes"]
    assert entry["changes"] == {"train.policy.epochs": [1, 4], "generate.samples": [8, 2]}


def test_phase_status_and_artefact_check(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.open(cfg.Config())
    rd.begin_phase(1, "verify")
    assert not rd.is_complete(1, "verify")
    with pytest.raises(RunError, match="did not produce"):
        rd.complete_phase(1, "verify", ["iter_0001/rollouts.jsonl"], {})
    rel = rd.write_json(1, "x.json", {"a": 1})
    rd.complete_phase(1, "verify", [rel], {"accuracy": 0.5})
    entry = rd.phase(1, "verify")
    assert entry["status"] == COMPLETE and entry["metrics"] == {"accuracy": 0.5}


def test_resumed_phase_drops_metrics_past_its_resume_point(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.open(cfg.Config())
    rd.log({"iteration": 1, "phase": "generate", "event": "phase_complete"})
    for step in range(1, 6):
        rd.log({"iteration": 1, "phase": "train", "step": step, "loss": 1.0 / step})
    with open(rd.metrics_path, "a") as f:
        f.write('{"iteration": 1, "phase": "tr')  # a line cut by SIGKILL
    rd.begin_phase(1, "train", keep_steps_upto=3)
    steps = [e.get("step") for e in rd.metrics() if e["phase"] == "train"]
    assert steps == [1, 2, 3]
    assert rd.metrics_path.read_text().endswith("\n")
    assert any(e["phase"] == "generate" for e in rd.metrics())


def test_state_store_keeps_only_the_latest(tmp_path):
    rd = RunDir(tmp_path / "r")
    store = rd.state_dir(1)
    assert store.latest() is None
    for step in (2, 4):
        with store.save(step) as folder:
            (folder / "state.txt").write_text(str(step))
    assert store.latest().name == "step-000004"
    assert sorted(p.name for p in store.folder.iterdir()) == ["latest", "step-000004"]


def test_checkpoint_dir_replaces_atomically(tmp_path):
    rd = RunDir(tmp_path / "r")
    with rd.checkpoint_dir(1, "policy") as folder:
        (folder / "a").write_text("1")
    with pytest.raises(ValueError), rd.checkpoint_dir(1, "policy") as folder:
        (folder / "a").write_text("2")
        raise ValueError("killed half way")
    assert (rd.artefact(1, "policy") / "a").read_text() == "1"
    assert json.loads(json.dumps(rd.manifest()))["iterations"] == {}


def test_reopening_a_run_removes_what_killed_writes_left(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.open(cfg.Config())
    (rd.path / ".manifest.json.abc123.tmp").write_text("half")
    (rd.path / "iter_0001" / ".policy.xyz").mkdir(parents=True)
    (rd.path / "iter_0001" / ".policy.xyz" / "model.safetensors").write_text("half")
    rd.open(cfg.Config())
    leftovers = [p.name for p in rd.path.rglob(".*")]
    assert leftovers == [] and rd.config_path.exists()
