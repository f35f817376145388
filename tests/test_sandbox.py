import os

import pytest

from reasoner.verifiers.sandbox import Limits, run_python

FAST = Limits(cpu_seconds=2, wall_seconds=4, memory_bytes=256 * 1024**2)


def test_computes_an_answer():
    r = run_python("print(sum(i * i for i in range(10)))", FAST)
    assert r.ok and r.stdout.strip() == "285"


def test_infinite_loop_is_stopped():
    r = run_python("while True: pass", FAST)
    assert not r.ok and r.timed_out


def test_sleeping_forever_hits_the_wall_clock():
    r = run_python("import time; time.sleep(60)", Limits(cpu_seconds=2, wall_seconds=1.5))
    assert r.timed_out


def test_fork_bomb_is_refused():
    r = run_python("import os\nwhile True: os.fork()", FAST)
    assert not r.ok and "os.fork is not allowed" in r.stderr


def test_memory_hog_fails():
    r = run_python("x = bytearray(2 * 1024**3)\nprint('allocated')", FAST)
    assert not r.ok and "allocated" not in r.stdout and "MemoryError" in r.stderr


def test_write_outside_the_folder_is_refused(tmp_path):
    target = tmp_path / "escape.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')", FAST)
    assert not r.ok and "outside the working folder" in r.stderr
    assert not target.exists()
    inside = run_python("open('ok.txt', 'w').write('x'); print(open('ok.txt').read())", FAST)
    assert inside.ok and inside.stdout.strip() == "x"


def test_socket_is_refused():
    r = run_python("import socket; s = socket.socket(); s.connect(('127.0.0.1', 9))", FAST)
    assert not r.ok and "not allowed" in r.stderr


def test_os_system_and_subprocess_are_refused(tmp_path):
    marker = tmp_path / "ran"
    for code in (
        f"import os; os.system('touch {marker}')",
        f"import subprocess; subprocess.run(['touch', '{marker}'])",
    ):
        r = run_python(code, FAST)
        assert not r.ok and "not allowed" in r.stderr
    assert not marker.exists()


def test_output_is_capped():
    r = run_python("print('x' * 200_000)", Limits(output_bytes=1000))
    assert r.truncated and len(r.stdout) == 1000


@pytest.mark.parametrize("code", ["import ctypes; ctypes.CDLL(None).system(b'true')", "import os; os.kill(1, 9)"])
def test_escape_hatches_are_refused(code):
    r = run_python(code, FAST)
    assert not r.ok and "not allowed" in r.stderr
    assert os.path.exists("/")  # the test process is intact
