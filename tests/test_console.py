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
