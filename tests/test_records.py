import json

import pytest

from reasoner.atomic import atomic_write_jsonl
from reasoner.records import Pair, Problem, RecordError, Trajectory, Tree, TreeNode, from_dict, read_jsonl, to_line


def test_round_trip_every_record(tmp_path):
    tree = Tree(id="t", problem_id="p", source="mcts", nodes=[TreeNode(id=0, parent=None, step="a", visits=2)])
    traj = Trajectory(
        id="x", problem_id="p", prompt="q", steps=["a", "b"], text="a\nb", correct=True, step_rewards={"mc": [0.5, 1.0]}
    )
    for record in [tree, traj, Problem(id="p", pack="arith", question="q", answer="3"), Pair("p", "a", "b")]:
        back = from_dict(type(record), json.loads(to_line(record)))
        assert back == record
    assert isinstance(from_dict(Tree, json.loads(to_line(tree))).nodes[0], TreeNode)


def test_malformed_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    good = to_line(Problem(id="p1", pack="arith", question="q", answer="3"))
    bad = json.dumps({"id": "p2", "pack": "arith", "question": "q", "answer": 3})
    path.write_text(good + "\n\n" + bad + "\n")
    with pytest.raises(RecordError) as err:
        read_jsonl(path, Problem)
    assert err.value.line == 3 and err.value.field == "answer"
    assert f"{path}:3" in str(err.value) and "'answer'" in str(err.value)


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        ('{"id": "p", "pack": "a", "question": "q"}', "answer", "missing"),
        ('{"id": "p", "pack": "a", "question": "q", "answer": "1", "colour": 1}', "colour", "unknown"),
        ('{"id": "p", "pack": "a", "question": "q", "answer": "1", "meta": []}', "meta", "expected"),
        ('{"id": "p", "pack": "a", "question": "q", "answer": "1"', None, "invalid JSON"),
        ("[1, 2]", None, "JSON object"),
    ],
)
def test_each_kind_of_bad_line(tmp_path, line, field, fragment):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(RecordError) as err:
        read_jsonl(path, Problem)
    assert err.value.field == field and fragment in str(err.value)


def test_bool_is_not_a_number_and_ints_are_floats():
    base = {"id": "x", "problem_id": "p", "prompt": "", "steps": [], "text": ""}
    assert from_dict(Trajectory, {**base, "logprob": 3}).logprob == 3
    with pytest.raises(RecordError, match="logprob"):
        from_dict(Trajectory, {**base, "logprob": True})
    with pytest.raises(RecordError, match="step_rewards"):
        from_dict(Trajectory, {**base, "step_rewards": {"mc": ["high"]}})


def test_failed_write_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "labels.jsonl"
    atomic_write_jsonl(path, [Pair("p", "a", "b")])
    before = path.read_text()

    def broken():
        yield Pair("p", "c", "d")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(path, broken())
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]  # no temp file left behind
