import os
from pathlib import Path

import pytest

from reasoner.tasks import PackError, get_pack

DATA = Path(os.environ.get("REASONER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not present")


@needs_data
def test_gsm8k_loads_from_folder():
    pack = get_pack("gsm8k", source=str(DATA / "gsm8k"))
    test = pack.problems("test", 5, 0)
    assert test[0].answer == "18" and "Janet" in test[0].question
    assert "<<" not in test[0].solution
    train = pack.problems("train", 5, 1)
    assert train != pack.problems("train", 5, 2)


@needs_data
def test_math_loads_test500_with_levels():
    pack = get_pack("math", source=str(DATA / "math"))
    test = pack.problems("test", 500, 0)
    assert len(test) == 500 and test[0].meta["level"] == "Level 2"
    assert pack.split_steps("a\n\nb\n\n\nc") == ["a", "b", "c"]


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(PackError, match="needs task.source"):
        get_pack("gsm8k").problems("test", 1, 0)
    with pytest.raises(PackError, match="no test.jsonl"):
        get_pack("gsm8k", source=str(tmp_path)).problems("test", 1, 0)
    (tmp_path / "test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(PackError, match="row 1: field 'answer'"):
        get_pack("gsm8k", source=str(tmp_path)).problems("test", 1, 0)


def _gsm8k_folder(tmp_path):
    rows = [{"question": f"Q{i}?", "answer": f"Step {i} <<1+{i}={1 + i}>>.\n#### {1 + i}"} for i in range(6)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    return str(tmp_path)


def test_gsm8k_honours_the_prompt_style(tmp_path):
    source = _gsm8k_folder(tmp_path)
    problem = get_pack("gsm8k", source=source).problems("test", 1, 0)[0]
    zero = get_pack("gsm8k", source=source, prompt="zeroshot").messages(problem)
    few = get_pack("gsm8k", source=source, prompt="fewshot").messages(problem)
    assert [m["role"] for m in zero] == ["system", "user"]
    assert [m["role"] for m in few] == ["system"] + ["user", "assistant"] * 4 + ["user"]
    assert few[1]["content"] == "Q0?" and few[2]["content"] == "Step 0 .\nThe answer is 1."
    expected = r"gsm8k prompt must be one of fewshot, zeroshot, tools, got 'cot' \(task.prompt\)"
    with pytest.raises(PackError, match=expected):
        get_pack("gsm8k", source=source, prompt="cot")


def test_packs_say_which_step_states_the_answer():
    arith = get_pack("arith")
    assert arith.is_final("So the answer is 7.") and arith.is_final("$\\boxed{7}$")
    assert not arith.is_final("7 - 2 = 5")


def test_numeric_golds_are_accepted_by_the_packs(tmp_path):
    import json

    (tmp_path / "test.jsonl").write_text(
        json.dumps({"problem": "1+1?", "answer": 2}) + "\n" + json.dumps({"problem": "x?", "answer": 145.0}) + "\n"
    )
    assert [p.answer for p in get_pack("math", source=str(tmp_path)).problems("test", 2, 0)] == ["2", "145"]
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q?", "answer": 7}) + "\n")
    assert get_pack("gsm8k", source=str(tmp_path)).problems("test", 1, 0)[0].answer == "7"
    # a boolean (StrategyQA's golds) is True or False, which yes and no match; never the 1 of int(True)
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q?", "answer": True}) + "\n")
    assert get_pack("gsm8k", source=str(tmp_path)).problems("test", 1, 0)[0].answer == "True"
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q?", "answer": [1]}) + "\n")
    with pytest.raises(PackError, match="row 1: field 'answer'"):
        get_pack("gsm8k", source=str(tmp_path)).problems("test", 1, 0)
