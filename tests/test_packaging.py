"""A built wheel, installed without dependencies into a fresh venv, imports `reasoner.tasks` and
`reasoner.verifiers` (the top-level folders mapped under `reasoner.`)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_tasks_and_verifiers_under_reasoner(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("reasoner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "reasoner/tasks/arith.py" in names and "reasoner/verifiers/registered.py" in names
    assert not any(n.startswith(("tasks/", "verifiers/")) for n in names)  # no bare top-level packages
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    code = (
        "import reasoner.tasks, reasoner.verifiers;"
        "p = reasoner.tasks.get_pack('arith').problems('test', 1, 0)[0];"
        "print(reasoner.verifiers.get_verifier('math')(p.answer, p.answer).status)"
    )
    out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "correct"


@pytest.mark.slow
@pytest.mark.parametrize("module", ["reasoner.trainphases", "reasoner.phases", "reasoner.recipes", "reasoner.session"])
def test_each_layer_imports_alone_in_a_fresh_interpreter(module):
    """No import cycle: phases and trainphases once imported each other, and importing
    trainphases first failed on a partially initialised module."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
