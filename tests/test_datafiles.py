"""Data files as data sets ship them: JSON Lines, JSON, CSV, TSV, Parquet, the hub's shards."""

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.datafiles import read_rows
from reasoner.errors import UserError
from reasoner.evaldata import load_problems
from reasoner.records import RecordError
from reasoner.tasks import PackError, get_pack

runner = CliRunner()
ROWS = [
    {"question": "Tom has 3 apples and eats 1. How many are left?", "answer": "2", "level": "Level 1"},
    {"question": 'A box holds 4, "large" ones 8. Two boxes?', "answer": "#### 8", "level": "Level 2"},
    {"question": "What is 5 + 6?", "answer": "11", "level": "Level 1"},
]


def flat(text: str) -> str:
    return " ".join(text.split())


def write(path: Path, rows: list[dict]) -> Path:
    """``rows`` in the format ``path``'s suffix names."""
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=2))
    elif suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            out.writeheader()
            out.writerows(rows)
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet"])
def test_every_format_gives_the_same_problems(tmp_path, suffix):
    path = write(tmp_path / f"mine{suffix}", ROWS)
    problems = load_problems(path, pack="gsm8k")
    assert [p.question for p in problems] == [r["question"] for r in ROWS]
    assert [p.answer for p in problems] == ["2", "8", "11"]  # GSM8K's "#### 8" read as 8
    assert [p.meta["level"] for p in problems] == ["Level 1", "Level 2", "Level 1"]
    # ids carry where the row is: its line (JSON Lines 1-3, CSV 2-4 under the header) or row
    first = {".jsonl": 1, ".csv": 2, ".tsv": 2}.get(suffix, 1)
    assert [p.id for p in problems] == [f"mine-{first + i}" for i in range(3)]


def test_json_arrays_wrapped_arrays_and_json_lines_named_json(tmp_path):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": "1.0", "data": ROWS}))
    assert [dict(r) for r in read_rows(wrapped)] == ROWS
    lines = tmp_path / "lines.json"  # the hub's JSON exports are often JSON Lines under .json
    lines.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert [dict(r) for r in read_rows(lines)] == ROWS and [r.unit for r in read_rows(lines)] == ["line"] * 3
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [{"question": "Q?", "answer": "0"}], "test": ROWS}))
    assert [dict(r) for r in read_rows(splits)] == ROWS
    single = tmp_path / "single.json"
    single.write_text(json.dumps(ROWS[0]))
    assert [dict(r) for r in read_rows(single)] == [ROWS[0]]
    listed = {**ROWS[0], "options": ["A)1", "B)2"]}  # one row with a list field is still one row
    single.write_text(json.dumps(listed))
    assert [dict(r) for r in read_rows(single)] == [listed]


def test_bad_rows_are_refused_naming_the_file_the_line_or_row_and_the_field(tmp_path):
    broken = [ROWS[0], {"problem": "2 + 2?", "answer": "4"}]
    short = tmp_path / "bad.csv"  # a CSV line with fewer values than the header: the field is absent
    short.write_text('answer,question\n2,"1 + 1?"\n4\n')
    for path, where in [(write(tmp_path / "bad.json", broken), ": row 2:"), (short, ":3:")]:
        with pytest.raises(RecordError) as err:
            load_problems(path, pack="gsm8k")
        text = str(err.value)
        assert f"{path}{where} field 'question': missing" in text, text
        assert ("this line has answer" if path.suffix == ".csv" else "this row has answer, problem") in text
        assert err.value.line == (3 if path.suffix == ".csv" else 2)
    # Parquet's columns are shared: the second row's question is there, and null
    path = write(tmp_path / "bad.parquet", [ROWS[0], {"question": None, "answer": "4", "level": None}])
    with pytest.raises(RecordError, match=r"bad.parquet: row 2: field 'question': the question is empty"):
        load_problems(path, pack="gsm8k")
    for name, text, error, pattern in (
        ("array.json", json.dumps([ROWS[0], ["not", "an", "object"]]), RecordError,
         r"array.json: row 2: expected a JSON object, got list"),
        ("surplus.csv", "question,answer\n1 + 1?,2\n2 + 2?,4,extra\n", RecordError,
         r"surplus.csv:3: 1 more value\(s\) than the header's fields"),
        ("fake.parquet", "question,answer\n", RecordError, r"fake.parquet: not a Parquet file"),
        ("mine.xlsx", "x", UserError, r"mine.xlsx:1: invalid JSON.*; data files are .jsonl, .ndjson, .json.*xlsx"),
    ):  # fmt: skip
        (tmp_path / name).write_text(text)
        with pytest.raises(error, match=pattern):
            list(read_rows(tmp_path / name))
    lines = tmp_path / "mine.txt"  # another suffix holding JSON Lines is read as before
    lines.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert [dict(r) for r in read_rows(lines)] == ROWS


def test_evaluate_reads_parquet_and_names_the_row_of_a_bad_one(tmp_path):
    rows = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6)]]
    data = write(tmp_path / "test-00000-of-00001.parquet", rows)
    out = tmp_path / "out"
    args = ["evaluate", "--model", "tiny", "--pack", "arith", "--data", str(data), "--out", str(out)]
    result = runner.invoke(app, [*args, "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["gold"] for s in samples] == ["3", "7", "11"]
    assert json.loads((out / "eval.json").read_text())["problems"] == 3
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "other"), "--question", "{problem}"])
    assert result.exit_code == 2
    assert f"{data}: row 1: field 'problem': missing" in flat(result.output)
    assert "this row has answer, question" in flat(result.output)


def test_packs_read_a_hub_snapshot_folder_of_parquet_shards(tmp_path):
    """GSM8K as the hub lays it out (``main/test-00000-of-00002.parquet`` ...): the shards in
    order, through the command a user runs."""
    rows = [{"question": f"Q{i}: what is {i} + 1?", "answer": f"{i} + 1 = {i + 1}.\n#### {i + 1}"} for i in range(5)]
    (tmp_path / "main").mkdir()
    write(tmp_path / "main" / "test-00001-of-00002.parquet", rows[3:])
    write(tmp_path / "main" / "test-00000-of-00002.parquet", rows[:3])
    write(tmp_path / "main" / "train-00000-of-00001.parquet", rows)
    pack = get_pack("gsm8k", source=str(tmp_path))
    assert [p.answer for p in pack.problems("test", 10, 0)] == ["1", "2", "3", "4", "5"]
    assert len(pack.problems("train", 10, 0)) == 5
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--model", "tiny", "--pack", "gsm8k", "--source", str(tmp_path),
                                 "--limit", "4", "--max-new-tokens", "4", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["gold"] for s in samples] == ["1", "2", "3", "4"]
    assert "Q0: what is 0 + 1?" in (out / "prompt.txt").read_text()  # the few-shot examples: train's rows


def test_a_math_folder_of_csv_files(tmp_path):
    rows = [{"problem": "What is $1+1$?", "answer": "2", "level": "Level 1", "subject": "Algebra"}]
    write(tmp_path / "test500.csv", rows)
    problems = get_pack("math", source=str(tmp_path)).problems("test", 5, 0)
    assert [(p.question, p.answer, p.meta["level"]) for p in problems] == [("What is $1+1$?", "2", "Level 1")]


def test_byte_order_marks_are_dropped_and_other_encodings_refused_naming_the_line(tmp_path):
    bom = b"\xef\xbb\xbf"  # what Excel and some Windows editors write first
    (tmp_path / "excel.csv").write_bytes(bom + b'question,answer\n"What is 2 + 3?",5\n')
    (tmp_path / "notepad.jsonl").write_bytes(bom + b'{"question": "What is 2 + 3?", "answer": "5"}\n')
    (tmp_path / "array.json").write_bytes(bom + b'[{"question": "What is 2 + 3?", "answer": "5"}]')
    for name in ("excel.csv", "notepad.jsonl", "array.json"):
        problems = load_problems(tmp_path / name, pack="gsm8k")
        assert [(p.question, p.answer) for p in problems] == [("What is 2 + 3?", "5")]
    latin = "café".encode("latin-1")  # é is byte 18 of its line, after {"question": "caf
    (tmp_path / "latin.jsonl").write_bytes(b'{"question": "q", "answer": "1"}\n{"question": "' + latin + b'"}\n')
    (tmp_path / "latin.csv").write_bytes(b"question,answer\nq,1\n" + latin + b",5\n")
    with pytest.raises(RecordError, match=r"latin.jsonl:2: not UTF-8 text \(byte 18 of the line\)"):
        load_problems(tmp_path / "latin.jsonl", pack="gsm8k")
    with pytest.raises(RecordError, match=r"latin.csv:3: not UTF-8 text"):
        load_problems(tmp_path / "latin.csv", pack="gsm8k")


def test_math_as_first_published_answers_from_the_solutions_last_box(tmp_path):
    """hendrycks/competition_math's rows: problem, level, type, solution; no answer field."""
    solution = r"We have $\frac{1}{2} + \frac{1}{4} = \boxed{\frac{3}{4}}$."
    rows = [{"problem": "Add 1/2 and 1/4.", "level": "Level 2", "type": "Prealgebra", "solution": solution}]
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "test-00000-of-00001.parquet", rows)
    [problem] = get_pack("math", source=str(tmp_path)).problems("test", 5, 0)
    assert problem.answer == r"\frac{3}{4}" and problem.meta == {"level": "Level 2", "subject": "Prealgebra"}
    write(tmp_path / "data" / "test-00000-of-00001.parquet", [{**rows[0], "solution": "No box here."}])
    with pytest.raises(PackError, match=r"math test row 1: field 'answer' missing or not text \(and no \\boxed"):
        get_pack("math", source=str(tmp_path)).problems("test", 5, 0)


def test_a_list_field_in_a_template_gives_one_item_a_line(tmp_path):
    """AQuA-RAT's rows: the options are a list, the answer a letter."""
    row = {"question": "Two plus two?", "options": ["A)3", "B)4", "C)5"], "correct": "B"}
    [problem] = load_problems(write(tmp_path / "aqua.jsonl", [row]), pack="gsm8k", question="{question}\n{options}",
                              answer="correct")  # fmt: skip
    assert problem.question == "Two plus two?\nA)3\nB)4\nC)5" and problem.answer == "B"


def test_evaluate_data_reads_a_folders_test_split_shard_by_shard(tmp_path):
    """`--data FOLDER` that is no `datasets` folder: its test split as a pack reads it, here the
    hub's two shards in main/; ids name the shard and row, and an error names the shard."""
    rows = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6)]]
    (tmp_path / "hub" / "main").mkdir(parents=True)
    write(tmp_path / "hub" / "main" / "test-00000-of-00002.parquet", rows[:2])
    write(tmp_path / "hub" / "main" / "test-00001-of-00002.parquet", rows[2:])
    problems = load_problems(tmp_path / "hub", pack="gsm8k")
    assert [p.answer for p in problems] == ["3", "7", "11"]
    assert [p.id for p in problems] == ["test-00000-of-00002-1", "test-00000-of-00002-2", "test-00001-of-00002-1"]
    out = tmp_path / "out"
    args = ["evaluate", "--model", "tiny", "--pack", "arith", "--data", str(tmp_path / "hub"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["gold"] for x in (out / "samples.jsonl").read_text().splitlines()] == ["3", "7", "11"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o2"), "--answer", "target"])
    shard = tmp_path / "hub" / "main" / "test-00000-of-00002.parquet"
    assert result.exit_code == 2 and f"{shard}: row 1: field 'target': missing" in flat(result.output)
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, [*args[:-4], "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o3")])
    assert result.exit_code == 2 and "neither a datasets folder (save_to_disk) nor a folder with a test split" in flat(
        result.output
    )


def test_a_datasets_folder_saved_with_save_to_disk(tmp_path):
    """A `datasets` folder: a Dataset, or a DatasetDict whose test split is read."""
    import datasets

    rows = [{"question": "What is 1 plus 2?", "answer": "3"}, {"question": "What is 2 plus 2?", "answer": 4}]
    datasets.Dataset.from_list([{**r, "answer": str(r["answer"])} for r in rows]).save_to_disk(str(tmp_path / "one"))
    both = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([{"question": "Q?", "answer": "0"}]),
         "test": datasets.Dataset.from_list([{"question": "What is 2 plus 2?", "answer": "4"}])}
    )  # fmt: skip
    both.save_to_disk(str(tmp_path / "dict"))
    assert [(p.answer, p.id) for p in load_problems(tmp_path / "one", pack="gsm8k")] == [("3", "one-1"), ("4", "one-2")]
    assert [p.question for p in load_problems(tmp_path / "dict", pack="gsm8k")] == ["What is 2 plus 2?"]
    with pytest.raises(RecordError, match=r"one: row 1: field 'target': missing"):
        load_problems(tmp_path / "one", pack="gsm8k", answer="{target}")


def test_gsm8k_rows_with_a_bare_answer_make_clean_worked_examples(tmp_path):
    """A GSM8K-style file of the user's whose answers are bare numbers (no "... #### N"): the
    few-shot examples are "The answer is N." with no empty first line."""
    rows = [{"question": f"Q{i}?", "answer": str(i)} for i in range(5)]
    write(tmp_path / "train.csv", rows)
    write(tmp_path / "test.csv", rows)
    pack = get_pack("gsm8k", source=str(tmp_path), prompt="fewshot")
    problem = pack.problems("test", 1, 0)[0]
    assert problem.answer == "0" and problem.solution == ""
    assert pack.messages(problem)[2]["content"] == "The answer is 0."
