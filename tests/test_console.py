"""Progress in logs: plain lines when the output is not a terminal."""

from reasoner import console


def test_progress_writes_plain_lines_to_a_log(capsys, monkeypatch):
    monkeypatch.delenv("REASONER_PROGRESS", raising=False)
    monkeypatch.setattr(console, "LOG_EVERY", 0.0)
    with console.progress("label", 4) as update:
        for k in range(1, 5):
            update(k)
    lines = capsys.readouterr().err.strip().splitlines()
    # one line per update before the end (3), then the closing line with the total
    assert [line.split(",")[0] for line in lines] == [
        "label: 1/4 (25%)",
        "label: 2/4 (50%)",
        "label: 3/4 (75%)",
        "label: 4/4 (100%)",
    ]


def test_progress_can_be_silenced(capsys, monkeypatch):
    monkeypatch.setenv("REASONER_PROGRESS", "0")
    with console.progress("label", 2) as update:
        update(2)
    assert capsys.readouterr().err == ""


def test_progress_lines_say_eta_only_when_it_is_known(capsys, monkeypatch):
    monkeypatch.delenv("REASONER_PROGRESS", raising=False)
    monkeypatch.setattr(console, "LOG_EVERY", 0.0)
    with console.progress("train", 2) as update:
        update(0)  # nothing done yet: no rate to extrapolate
        update(1)
        update(2)
    with console.progress("empty", 0):  # a phase with nothing to do (no examples)
        pass
    lines = capsys.readouterr().err.strip().splitlines()
    tails = [line.rsplit(", ", 1)[1] for line in lines]
    assert len(tails) == 4 and tails[0] == "eta unknown" and tails[2:] == ["done", "done"]
    assert tails[1].startswith("eta ") and tails[1].endswith("s")
    assert all("nan" not in line for line in lines)


def test_a_resumed_progress_line_extrapolates_from_the_steps_done_since_the_resume(capsys, monkeypatch):
    """Resumed at step 105 of 382, 4 steps in 36 s: 9 s a step, so 273 steps left take 2457 s
    (counting the 105 saved steps as done in those 36 s would say 90 s)."""
    monkeypatch.delenv("REASONER_PROGRESS", raising=False)
    monkeypatch.setattr(console, "LOG_EVERY", 0.0)
    clock = iter([1000.0, 1000.0, 1000.0, 1036.0, 1036.0, 1036.0, 1036.0])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    with console.progress("iter 3 mstep", 382, start=105) as update:
        update(105)  # the saved step the phase resumes from
        update(109)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "iter 3 mstep: 105/382 (27%), 0s, eta unknown"
    assert lines[1] == "iter 3 mstep: 109/382 (29%), 36s, eta 2457s"


def test_a_first_update_after_real_work_has_an_eta(capsys, monkeypatch):
    """Without a resume point the rate counts from 0: one chunk of 4 in 125 s leaves 375 s."""
    monkeypatch.delenv("REASONER_PROGRESS", raising=False)
    monkeypatch.setattr(console, "LOG_EVERY", 0.0)
    clock = iter([1000.0, 1125.0, 1125.0, 1125.0])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    with console.progress("iter 1 generate", 4) as update:
        update(1)
    assert capsys.readouterr().err.splitlines()[0] == "iter 1 generate: 1/4 (25%), 125s, eta 375s"
