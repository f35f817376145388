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


def _problem(start, operations, answer):
    from reasoner.records import Problem

    chain = [start]
    for op, n in operations:
        chain.append({"+": chain[-1] + n, "-": chain[-1] - n, "*": chain[-1] * n}[op])
    assert chain[-1] == answer
    return Problem("p", "arith", "q", str(answer), meta={"chain": chain, "operations": [list(o) for o in operations]})


@pytest.mark.parametrize(
    ("start", "operations", "steps", "expected"),
    [
        # "has 3, sells 1, finds 10": the two changes commute, so either order is right
        (3, [("-", 1), ("+", 10)], ["3 + 10 = 13", "13 - 1 = 12", "The answer is 12."], [True, True, True]),
        (3, [("-", 1), ("+", 10)], ["10 + 3 = 13", "13 - 1 = 12"], [True, True]),  # commuted operands
        (3, [("-", 1), ("+", 10)], ["3 - 1 + 10 = 12"], [True]),  # two operations on one line
        # "has 5, finds 4, buys 4": 5 is a quantity of the story, but "- 4" is no operation of it
        (5, [("+", 4), ("+", 4)], ["5 + 4 = 9", "9 - 4 = 5", "The answer is 5."], [True, False, False]),
        (5, [("+", 4), ("+", 4)], ["5 + 4 = 9", "9 + 4 = 13"], [True, True]),
        (3, [("+", 4)], ["3 + 4 = 7", "7 + 4 = 11"], [True, False]),  # an operation used twice
        (8, [("-", 5), ("-", 2)], ["8 - 5 = 3", "3 + 2 = 5"], [True, False]),
        (8, [("-", 5), ("-", 2)], ["5 - 8 = -3"], [False]),  # subtraction does not commute
        # "has 3, buys 2, becomes 3 times as large": the product covers everything before it
        (3, [("+", 2), ("*", 3)], ["3 + 2 = 5", "5 * 3 = 15"], [True, True]),
        (3, [("+", 2), ("*", 3)], ["3 * 3 = 9", "9 + 2 = 11"], [False, False]),
        (3, [("*", 3), ("+", 2)], ["3 + 2 = 5"], [False]),  # an addition after the product moved before it
        (3, [("*", 3), ("+", 2)], ["3 x 3 = 9", "9 + 2 = 11"], [True, True]),
        # changes combined first: "sells 5, loses 2" is 7 fewer; "finds 10, sells 1" is 9 more
        (8, [("-", 5), ("-", 2)], ["5 + 2 = 7", "8 - 7 = 1"], [True, True]),
        (3, [("-", 1), ("+", 10)], ["10 - 1 = 9", "3 + 9 = 12"], [True, True]),
        (8, [("-", 5), ("-", 2)], ["8 - 7 = 1"], [True]),  # the combination done in one's head
        (3, [("-", 1), ("+", 10)], ["1 + 10 = 11", "3 + 11 = 14"], [False, False]),  # not the net change
        (8, [("-", 5), ("-", 2)], ["8 - 6 = 2"], [False]),
        (3, [("+", 2), ("*", 3), ("+", 1)], ["2 + 1 = 3"], [False]),  # across a "times as large"
        (6, [("+", 10), ("+", 8)], ["6 + 10 = 16", "8 + 10 = 18", "The answer is 18."], [True, False, False]),
        (6, [("+", 10), ("+", 8)], ["8 + 10 = 18", "6 + 18 = 24"], [True, True]),
        (6, [("-", 3), ("-", 2)], ["3 - 2 = 1"], [True]),  # "6 - 3 = 3" done in one's head
        # units written beside the numbers
        (7, [("-", 1), ("-", 3)], ["7 shells - 1 shell = 6 shells", "6 shells - 3 = 3"], [True, True]),
        (8, [("-", 4)], ["Sam has 8 apples - 4 apples = 3 apples now"], [False]),
        (3, [("*", 3)], ["3 boxes x 3 = 9"], [True]),
    ],
)
def test_step_check_follows_the_story(start, operations, steps, expected):
    pack = get_pack("arith")
    assert pack.check_steps(_problem(start, operations, _final(start, operations)), steps) == expected


def _final(start, operations):
    for op, n in operations:
        start = {"+": start + n, "-": start - n, "*": start * n}[op]
    return start


def test_step_check_reads_records_without_operations():
    """Problems written before `operations` was stored fall back to the chain's differences."""
    from reasoner.records import Problem

    p = Problem("p", "arith", "q", "8", meta={"chain": [9, 6, 8]})
    assert get_pack("arith").check_steps(p, ["9 - 3 = 6", "6 + 2 = 8", "6 - 2 = 4"]) == [True, True, False]
    with pytest.raises(PackError, match="no gold chain"):
        get_pack("arith").check_steps(Problem("q", "arith", "q", "8"), ["1 + 1 = 2"])


def test_generated_problems_store_their_operations():
    pack = get_pack("arith", difficulty={"steps": 3, "ops": "+-*"})
    for p in pack.problems("test", 20, 0):
        assert _final(p.meta["chain"][0], p.meta["operations"]) == int(p.answer)
    with pytest.raises(PackError, match="steps <= 12"):
        get_pack("arith", difficulty={"steps": 13})
