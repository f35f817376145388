"""`reasoner evaluate --model`: any model on a pack's split or the user's data, outside runs."""

import json
from pathlib import Path

import pytest
from tinyrun import TINY_SAMPLES, as_sets
from typer.testing import CliRunner

from reasoner import evaluate as scores
from reasoner.benchmark import Request, summarise
from reasoner.cli import app
from reasoner.evaldata import gold_answer, load_problems
from reasoner.records import Problem, RecordError

runner = CliRunner()
GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def flat(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------- pure scoring
def test_rank_rules_and_best_of_against_hand_made_scores():
    scores_ = [[0.9, 0.2, 0.8], [0.6, 0.5, 0.4], [0.1, 0.1, 3.0]]
    correct = [False, True, False]
    assert [scores.rank_score(s, "min") for s in scores_] == [0.2, 0.4, 0.1]
    assert [scores.rank_score(s, "last") for s in scores_] == [0.8, 0.4, 3.0]
    assert [round(scores.rank_score(s, "sum"), 6) for s in scores_] == [1.9, 1.5, 3.2]
    assert scores.best_of(scores_, correct, "min") == (1, True)  # its weakest step is the best
    assert scores.best_of(scores_, correct, "last") == (2, False)
    assert scores.best_of(scores_, correct, "sum") == (2, False)
    assert scores.best_of([[0.5], [0.5]], [False, True], "min") == (0, False)  # a tie: the earlier
    # pairs (correct 1 vs incorrect 0, 2): min 0.4 > 0.2 yes, 0.4 > 0.1 yes; last 0.4 < 0.8, 0.4 < 3.0
    assert scores.pairwise_accuracy(scores_, correct, "min") == (2.0, 2)
    assert scores.pairwise_accuracy(scores_, correct, "last") == (0.0, 2)
    assert scores.pairwise_accuracy([[0.5], [0.5]], [True, False], "min") == (0.5, 1)  # a tie counts half
    assert scores.pairwise_accuracy([[0.5], [0.7]], [True, True], "min") == (0.0, 0)
    assert scores.best_of([[], [0.1]], [True, False], "min") == (1, False)  # no scored step ranks last
    with pytest.raises(ValueError, match="min, last, sum"):
        scores.rank_score([1.0], "mean")


def _row(pid, greedy_ok, samples, level=None, subject=None, steps=None, finish="eos"):
    row = {
        "problem": pid,
        "greedy": {"answer": "1", "correct": greedy_ok, "finish": finish},
        "samples": [{"answer": a, "correct": ok, "finish": "eos"} for a, ok in samples],
    }
    if steps is not None:
        row["step_scores"] = steps
    meta = {k: v for k, v in (("level", level), ("subject", subject)) if v}
    return Problem(id=pid, pack="math", question="q", answer="1", meta=meta), row


def test_summary_names_greedy_apart_from_sampled_and_tables_levels_and_subjects():
    made = [
        _row("a", True, [("1", True), ("2", False)], "Level 1", "Algebra", [[0.9], [0.1]]),
        _row("b", False, [("3", False), ("1", True)], "Level 1", "Geometry", [[0.8], [0.2]], finish="length"),
        _row("c", False, [("2", False), ("2", False)], "Level 2", "Algebra", [[0.5], [0.6]]),
    ]
    problems, rows = [p for p, _ in made], [r for _, r in made]
    report = summarise(problems, rows, Request(model="m", k=2, reward="implicit", rank="min"))
    assert report["greedy_accuracy"] == pytest.approx(1 / 3)
    assert report["greedy_stderr"] == pytest.approx((1 / 3) ** 0.5 / 3**0.5)  # sd 0.577 / sqrt(3)
    assert report["sampled_pass@1"] == pytest.approx(1 / 3)  # (1/2 + 1/2 + 0) / 3
    assert report["sampled_pass@2"] == pytest.approx(2 / 3)
    assert report["maj@2"] == pytest.approx(1 / 3)  # a: tie 1/2, first wins; b: first (3) wrong
    best = report["best_of_2"]
    assert (best["reward"], best["rank"], best["accuracy"]) == ("implicit", "min", pytest.approx(1 / 3))
    # a: 0.9 (right) vs 0.1: hit; b: 0.2 (right) vs 0.8: miss; c has no correct sample
    assert best["pairwise_accuracy"] == 0.5 and best["verified_pairs"] == 2
    assert report["cut_by_token_cap"] == pytest.approx(1 / 3)
    assert report["by_level"]["1"] == {"mean": 0.5, "stderr": 0.5, "n": 2}
    assert report["by_level"]["2"]["n"] == 1 and report["by_level"]["2"]["mean"] == 0.0
    assert report["by_subject"]["Algebra"]["mean"] == 0.5 and report["by_subject"]["Geometry"]["mean"] == 0.0
    assert "pass@1" not in report  # greedy accuracy is never called pass@1 here


# ------------------------------------------------------------------------- your own data
def test_gold_answers_are_recognised_as_the_standard_sets_write_them():
    assert gold_answer("Natalia sold 48/2 = 24 clips.\n#### 1,072") == "1072"
    assert gold_answer("so it is $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert gold_answer(145.0) == "145" and gold_answer(2.5) == "2.5" and gold_answer(3) == "3"
    assert gold_answer("9 (apples)") == "9 (apples)"  # the verifier judges it, not a string match
    assert gold_answer(True) == "True" and gold_answer(False) == "False"  # StrategyQA's, matched by yes/no
    assert gold_answer(None) is None and gold_answer([1]) is None


def test_field_templates_build_questions_from_several_fields(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text(
        json.dumps({"context": "Tom has 3 apples.", "query": "He eats 1. Left?", "target": 2, "level": "Level 4"})
        + "\n\n"
        + json.dumps({"context": "A box holds 4.", "query": "Two boxes?", "target": "#### 8"})
        + "\n"
    )
    probs = load_problems(f, pack="gsm8k", question="{context} {query}", answer="target")
    assert [p.question for p in probs] == ["Tom has 3 apples. He eats 1. Left?", "A box holds 4. Two boxes?"]
    assert [p.answer for p in probs] == ["2", "8"]
    assert probs[0].meta == {"level": "Level 4"} and probs[1].id == "mine-3"  # ids carry the line


def test_a_file_without_the_named_fields_is_refused_naming_file_line_and_fields(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"question": "1+1?", "answer": "2"}\n{"problem": "2+2?", "solution": "4"}\n')
    with pytest.raises(RecordError) as err:
        load_problems(f, pack="gsm8k")
    assert err.value.line == 2 and err.value.field == "question"
    out_dir = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--model", "tiny", "--data", str(f), "--out", str(out_dir)])
    text = flat(result.output)
    assert result.exit_code == 2, result.output
    assert f"{f}:2: field 'question'" in text and "needs field(s) question" in text
    assert "this line has problem, solution" in text
    assert "(pass --question problem to read it from 'problem')" in text  # MATH's name for it
    result = runner.invoke(
        app, ["evaluate", "--model", "tiny", "--data", str(f), "--question", "{problem}", "--answer", "{target}"]
    )
    assert result.exit_code == 2 and f"{f}:1: field 'problem'" in flat(result.output)


# ---------------------------------------------------------------- the command, end to end
def _eval(tmp_path: Path, *extra: str, out: str = "out") -> tuple[object, Path]:
    data = tmp_path / "mine.jsonl"
    if not data.exists():
        rows = [{"question": f"What is {a} plus {b}?", "answer": a + b, "level": f"Level {a % 2 + 1}"} for a, b in
                [(1, 2), (3, 4), (5, 6), (7, 8), (2, 2)]]  # fmt: skip
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / out
    args = ["evaluate", "--model", "tiny", "--pack", "arith", "--data", str(data), "--out", str(folder)]
    args += ["--max-new-tokens", "6", "--chunk", "2", *extra]
    return runner.invoke(app, args), folder


def test_evaluate_model_writes_every_sample_the_prompt_and_resumes_after_a_kill(tmp_path):
    result, folder = _eval(tmp_path, "--k", "3", "--reward", "judge", "--rank", "last", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads((folder / "eval.json").read_text())
    samples = [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 5 and all(len(r["samples"]) == 3 and len(r["step_scores"]) == 3 for r in samples)
    assert samples[0]["gold"] == "3" and samples[0]["prompt"].endswith("assistant: ")
    assert "What is 1 plus 2?" in (folder / "prompt.txt").read_text()
    assert summary["problems"] == 5 and summary["best_of_3"]["rank"] == "last"
    assert set(summary["by_level"]) == {"1", "2"} and summary["max_new_tokens"] == 6
    assert summary["cut_by_token_cap"] == 1.0  # 6 tokens cut every answer of the random model
    assert sorted(p.name for p in (folder / "parts").iterdir()) == [f"part-0000{i}.jsonl" for i in range(3)]
    # a kill that lost the last chunk: only it is made again, and the figures are the same
    kept = (folder / "parts" / "part-00000.jsonl").stat().st_mtime_ns
    (folder / "parts" / "part-00002.jsonl").unlink()
    (folder / "eval.json").unlink()
    again, _ = _eval(tmp_path, "--k", "3", "--reward", "judge", "--rank", "last", "--json")
    assert again.exit_code == 0 and "1 of 3 chunks" not in again.output
    assert "resuming" in again.output and "2 of 3 chunks already done" in again.output
    assert (folder / "parts" / "part-00000.jsonl").stat().st_mtime_ns == kept
    assert json.loads((folder / "eval.json").read_text()) == summary
    # other settings never mix with the saved parts
    other, _ = _eval(tmp_path, "--k", "2")
    assert other.exit_code == 2 and "other settings (k, rank, reward)" in flat(other.output)


def test_evaluate_model_refuses_what_it_cannot_do(tmp_path):
    result, folder = _eval(tmp_path, "--reward", "judge")
    assert result.exit_code == 2 and "give --k N" in result.output and not folder.exists()
    result, folder = _eval(tmp_path, "--k", "2", "--rank", "mean")
    assert result.exit_code == 2 and "--rank must be one of min, last, sum" in flat(result.output)
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 2 and "--run RUN" in result.output and "--model MODEL" in result.output
    refused = tmp_path / "refused"
    result = runner.invoke(app, ["evaluate", "--model", "tiny", "--pack", "gsm8k", "--prompt", "fewshot",
                                 "--data", str(tmp_path / "mine.jsonl"), "--out", str(refused)])  # fmt: skip
    assert result.exit_code == 2 and "takes its examples from --source" in flat(result.output)
    assert not refused.exists()  # a refused evaluation leaves no folder


def test_a_runs_iterations_are_models_run_at_0_is_its_start(tmp_path):
    run = tmp_path / "r"
    keys = [*TINY_SAMPLES, "run.iterations=1"]
    assert runner.invoke(app, ["iterate", "--run", str(run), *as_sets(keys)]).exit_code == 0
    _eval(tmp_path, "--json", out="unused")  # writes the data file
    at0 = runner.invoke(app, ["evaluate", "--model", f"{run}@0", "--data", str(tmp_path / "mine.jsonl"),
                              "--max-new-tokens", "6", "--out", str(tmp_path / "at0"), "--json"])  # fmt: skip
    assert at0.exit_code == 0, at0.output
    latest = runner.invoke(app, ["evaluate", "--model", str(run), "--data", str(tmp_path / "mine.jsonl"),
                                 "--max-new-tokens", "6", "--out", str(tmp_path / "latest"), "--json"])  # fmt: skip
    assert latest.exit_code == 0, latest.output
    s0 = json.loads((tmp_path / "at0" / "eval.json").read_text())
    s1 = json.loads((tmp_path / "latest" / "eval.json").read_text())
    assert s0["policy"] == "tiny" and s0["pack"] == "arith"  # the run's pack by default
    assert s1["policy"].endswith("iter_0001/policy")
    bad = runner.invoke(app, ["evaluate", "--model", f"{run}@7", "--data", str(tmp_path / "mine.jsonl")])
    assert bad.exit_code == 2 and "has 1 iterations" in bad.output


@pytest.mark.skipif(not GSM8K.exists(), reason="needs ../shared/data/gsm8k")
def test_gsm8k_pack_split_with_few_shot_prompt_saved(tmp_path):
    folder = tmp_path / "g"
    result = runner.invoke(app, ["evaluate", "--model", "tiny", "--pack", "gsm8k", "--source", str(GSM8K),
                                 "--limit", "3", "--max-new-tokens", "4", "--out", str(folder)])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((folder / "eval.json").read_text())
    assert summary["prompt_style"] == "fewshot" and summary["problems"] == 3 and summary["split"] == "test"
    prompt = (folder / "prompt.txt").read_text()
    assert prompt.count("The answer is") == 5  # the instruction and the four worked examples
    assert "greedy accuracy" in result.output


def test_stop_loops_through_iterate_and_evaluate(tmp_path):
    """`generate.stop_loops` reaches the run's evaluation and `evaluate --model RUN@K`;
    `--stop-loops` / `--no-stop-loops` set it for one evaluation. The random model's greedy
    answers repeat one token: stopped in a loop with it, cut by the 64-token cap without."""
    run = tmp_path / "r"
    keys = [*TINY_SAMPLES, "run.iterations=1", "run.baseline_eval=true", "evaluate.max_new_tokens=64"]
    done = runner.invoke(app, ["iterate", "--run", str(run), *as_sets([*keys, "generate.stop_loops=true"])])
    assert done.exit_code == 0, done.output
    for k in (0, 1):
        report = json.loads((run / f"iter_000{k}" / "eval.json").read_text())
        assert (report["stopped_in_loop"], report["cut_by_token_cap"]) == (1.0, 0.0)
    finishes = [json.loads(x)["meta"]["finish"] for x in (run / "iter_0001" / "eval_samples.jsonl").open()]
    assert finishes == ["loop", "loop"]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").open()]
    assert any(m.get("stopped_in_loop") == 1.0 for m in metrics)  # for `reasoner report` to plot
    _eval(tmp_path, "--json", out="unused")  # writes the data file
    data = str(tmp_path / "mine.jsonl")

    def shares(*args: str) -> tuple[float, float]:
        out = tmp_path / f"e{len(list(tmp_path.iterdir()))}"
        got = runner.invoke(app, ["evaluate", "--data", data, "--max-new-tokens", "64", "--out", str(out), *args])
        assert got.exit_code == 0, got.output
        report = json.loads((out / "eval.json").read_text())
        if report["stopped_in_loop"]:
            assert "answers stopped in a loop" in got.output
        return report["stopped_in_loop"], report["cut_by_token_cap"]

    assert shares("--model", f"{run}@0") == (1.0, 0.0)  # the run's setting
    assert shares("--model", f"{run}@0", "--no-stop-loops") == (0.0, 1.0)
    assert shares("--model", "tiny", "--pack", "arith") == (0.0, 1.0)  # off for a bare model
    assert shares("--model", "tiny", "--pack", "arith", "--stop-loops") == (1.0, 0.0)
