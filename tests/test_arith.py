import pytest

from reasoner.tasks import PackError, get_pack, render
from reasoner.verifiers import get_extractor, get_verifier


def test_deterministic_and_splits_disjoint():
    pack = get_pack("arith")
    assert pack.problems("test", 20, 0) == pack.problems("test", 20, 99)  # test ignores the seed
    a, b = pack.problems("train", 50, 1), pack.problems("train", 50, 1)
    assert a == b and a != pack.problems("train", 50, 2)
    test_q = {p.question for p in pack.problems("test", 1000, 0)}
    assert not test_q & {p.question for p in pack.problems("train", 300, 3)}


@pytest.mark.parametrize("difficulty", [{"steps": 1}, {"steps": 4, "max_number": 50, "ops": "+-*"}])
def test_gold_solutions_check_out(difficulty):
    pack = get_pack("arith", difficulty=difficulty)
    verify, extract = get_verifier(pack.verifier), get_extractor("strict")
    for p in pack.problems("test", 40, 0):
        steps = pack.split_steps(p.solution)
        assert len(steps) == difficulty["steps"] + 1
        assert all(pack.check_steps(p, steps))
        assert verify(p.answer, extract(p.solution)).correct
        assert all(0 <= v for v in p.meta["chain"])
        assert p.meta["chain"][0] <= difficulty.get("max_number", 10)


def test_step_check_catches_wrong_steps():
    pack = get_pack("arith")
    (p,) = [q for q in pack.problems("test", 50, 0) if q.question.startswith("Ann has 9 cards. Ann gives away 3")]
    # gold: 9 - 3 = 6, 6 + 2 = 8
    cases = {
        "9 - 3 = 6": True,
        "Ann has 9 - 3 = 6 cards left.": True,
        "9 - 3 = 5": False,  # false arithmetic
        "9 + 3 = 12": False,  # true arithmetic, not on the gold chain
        "6 + 2 = 8\nThe answer is 8.": True,
        "The answer is 7.": False,
        "Ann is happy.": None,  # no claim to check
    }
    for step, expected in cases.items():
        assert pack.check_steps(p, [step]) == [expected], step


def test_right_answer_through_wrong_steps_is_flagged():
    pack = get_pack("arith")
    p = pack.problems("test", 1, 0)[0]
    steps = ["9 - 2 = 3", f"The answer is {p.answer}."]
    assert pack.check_steps(p, steps)[0] is False


def test_bad_difficulty_and_prompt():
    with pytest.raises(PackError, match="valid keys"):
        get_pack("arith", difficulty={"levels": 3})
    with pytest.raises(PackError, match="ops"):
        get_pack("arith", difficulty={"ops": "^"})
    with pytest.raises(PackError, match="unknown task pack 'gsm9k'; valid: arith, gsm8k, math"):
        get_pack("gsm9k")


def test_fewshot_prompt_shares_a_prefix(tiny):
    pack = get_pack("arith")
    problems = pack.problems("test", 2, 0)
    a, b = (render(pack.messages(p), tiny.tokenizer) for p in problems)
    shared = a.split(problems[0].question)[0]
    assert b.startswith(shared) and "The answer is 11." in shared  # system + examples first
    assert problems[1].question in b[len(shared) :]
