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
