"""Tool-integrated reasoning: the model's Python runs in the sandbox between generation rounds.

A scripted model stands in for a policy that writes code (a tiny random model never does): it
continues any context by a fixed rule, token by token through the tiny character tokenizer, and
honours stop strings and the token cap as the hf backend does. What it writes after an output
block depends on that block's content, so a test sees whether the sandbox's output really reached
the model's context.
"""

import json
import re
import time

import pytest
from tinyrun import TINY_SAMPLES, Scripted, as_sets
from typer.testing import CliRunner

from reasoner import models
from reasoner.cli import app
from reasoner.config import ToolsConfig
from reasoner.generation import BACKENDS, Sampling
from reasoner.generation.hf import HFBackend
from reasoner.tasks import get_pack, split_steps
from reasoner.tools import ToolBackend, open_block, pending_code, shown_output, summary
from reasoner.verifiers.sandbox import Limits

runner = CliRunner()
FAST = ToolsConfig(workers=2, max_calls=3, cpu_seconds=1, wall_seconds=3.0, memory_mb=256)


def computes(code: str, hallucinated: str = "99"):
    """A model that writes ``code`` in a python block, opens the output block and, if nobody
    stops it, invents ``hallucinated`` as the output; after a real output block it states the
    block's last line as the answer."""

    def script(context: str) -> str:
        m = re.search(r"```output\n(.*?)\n```\n$", context, re.S)
        if m:
            return f"The answer is {m.group(1).splitlines()[-1]}."
        return f"Let me compute.\n```python\n{code}\n```\n```output\n{hallucinated}\n```\nThe answer is {hallucinated}."

    return script


def ids(backend, text: str) -> list[int]:
    return backend.tokenizer(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------------ parsing
def test_pending_code_finds_the_block_opened_for_its_output():
    assert pending_code("So:\n```python\nx = 6 * 7\nprint(x)\n```\n```output") == "x = 6 * 7\nprint(x)\n"
    assert pending_code("```python\nprint(1)\n```\n```output\n1\n```\n```python\nprint(2)\n```\n```output\n") == (
        "print(2)\n"
    )
    assert pending_code("```output") is None  # an output block with no code before it
    assert pending_code("```python\nprint(1)\n```\nThe answer is 1.") is None  # no output asked for
    assert open_block("Now:\n```python\nx = 1")
    assert not open_block("```python\nx = 1\n```\n")
    assert not open_block("no code at all")


def test_a_code_block_with_its_output_is_one_step():
    text = "Start with 4.\n```python\nx = 4 + 3\nprint(x)\n```\n```output\n7\n```\nThe answer is 7."
    assert split_steps(text, "\n") == [
        "Start with 4.",
        "```python\nx = 4 + 3\nprint(x)\n```\n```output\n7\n```",
        "The answer is 7.",
    ]
    open_code = "```python\nprint(1)\n\nprint(2)"
    assert split_steps(f"a\n\nb\n\n{open_code}", "\n\n") == ["a", "b", open_code]
    assert get_pack("arith").split_steps("1 + 2 = 3\nThe answer is 3.") == ["1 + 2 = 3", "The answer is 3."]


def test_what_the_model_sees_of_an_execution():
    lim = Limits(cpu_seconds=2, wall_seconds=3.0)
    assert shown_output("42\n", "", 0, False, lim, 100) == "42"
    err = 'Traceback (most recent call last):\n  File "<sandbox>", line 1\nZeroDivisionError: division by zero\n'
    assert shown_output("", err, 1, False, lim, 100) == "ZeroDivisionError: division by zero"
    assert shown_output("", "", None, True, lim, 100) == "TimeoutError: stopped after 2 s of CPU or 3 s"
    assert shown_output("1234567890" * 3, "", 0, False, lim, 12) == "123456789..."
    assert summary([[], []]) is None
    ok, bad = {"status": "ok", "seconds": 0.2}, {"status": "error", "seconds": 0.0}
    got = summary([[ok], [], [{"status": "ok", "seconds": 0.4}, bad]])
    assert got["answers_with_code"] == pytest.approx(2 / 3) and got["executions_per_answer"] == 1.0
    assert got["share_ok"] == pytest.approx(2 / 3) and got["share_error"] == pytest.approx(1 / 3)
    assert got["mean_seconds"] == pytest.approx(0.2)


@pytest.mark.parametrize("pack", ["arith", "gsm8k", "math"])
def test_the_tools_prompt_shows_code_and_its_output(pack):
    p = get_pack(pack, prompt="tools", source="")
    from reasoner.records import Problem

    msgs = p.messages(Problem(id="q", pack=pack, question="What is 6 times 7?", answer="42"))
    assert "```python" in msgs[0]["content"] and "```output" in msgs[0]["content"]
    worked = msgs[2]["content"]
    assert "```python\nprint(4 + 3 - 2)\n```\n```output\n5\n```" in worked
    assert worked.endswith("\\boxed{5}$." if pack == "math" else "The answer is 5.")
    assert p.is_final(p.split_steps(worked)[-1])
    assert msgs[-1] == {"role": "user", "content": "What is 6 times 7?"}


# ------------------------------------------------------------------------- the tool loop
def test_the_output_of_the_code_reaches_the_model_and_is_recorded():
    inner = Scripted(computes("x = 6 * 7\nprint(x)"))
    tb = ToolBackend(inner, FAST)
    prompt = ids(inner, "Q: 6 times 7?\nA: ")
    (c,) = tb.generate_ids([prompt], Sampling(temperature=0.0, max_new_tokens=200))
    assert c.text == "Let me compute.\n```python\nx = 6 * 7\nprint(x)\n```\n```output\n42\n```\nThe answer is 42."
    assert c.finish_reason == "eos" and inner.calls == [1, 1]  # paused once for the code
    (ex,) = c.meta["executions"]
    assert ex["code"] == "x = 6 * 7\nprint(x)\n" and ex["output"] == "42" and ex["status"] == "ok"
    assert ex["seconds"] > 0
    # the inserted tokens are the output block; given, not sampled: log-probability 0
    (start, end) = c.meta["tool_spans"][0]
    assert inner.tokenizer.decode(c.token_ids[start:end]) == "\n42\n```\n"
    assert all(lp == 0.0 for lp in c.logprobs[start:end]) and c.logprobs[0] == -0.5
    assert inner.tokenizer.decode(c.token_ids) == c.text and len(c.logprobs) == len(c.token_ids)
    assert tb.stats["executions"] == 1


def test_the_token_cap_counts_the_models_tokens_only():
    inner = Scripted(computes("print(6 * 7)"))
    first = len("Let me compute.\n```python\nprint(6 * 7)\n```\n```output")
    (c,) = ToolBackend(inner, FAST).generate_ids([ids(inner, "Q")], Sampling(max_new_tokens=first + 5))
    assert c.finish_reason == "length"
    assert c.text.endswith("```output\n42\n```\nThe a")  # 5 more model tokens after the output block
    model_tokens = len(c.token_ids) - sum(e - s for s, e in c.meta["tool_spans"])
    assert model_tokens == first + 5


def test_errors_and_calls_past_the_limit_are_written_back_not_raised():
    inner = Scripted(computes("print(1 / 0)"))
    (c,) = ToolBackend(inner, FAST).generate_ids([ids(inner, "Q")], Sampling(max_new_tokens=300))
    assert "```output\nZeroDivisionError: division by zero\n```\n" in c.text
    assert c.text.endswith("The answer is ZeroDivisionError: division by zero.")
    assert c.meta["executions"][0]["status"] == "error"

    def again(context: str) -> str:  # writes a new block after every output: only max_calls run
        return "```python\nprint(len('" + "x" * context.count("```output") + "'))\n```\n```output\n"

    one = ToolBackend(Scripted(again), ToolsConfig(max_calls=2, cpu_seconds=1, wall_seconds=3.0))
    (c,) = one.generate_ids([ids(one, "Q")], Sampling(max_new_tokens=400))
    assert [e["output"] for e in c.meta["executions"]] == ["0", "1"]
    assert c.text.endswith("```output") and c.finish_reason == "stop"  # the third block is not run


def test_in_step_wise_search_a_step_with_code_is_one_node():
    inner = Scripted(computes("a = 6\nb = 7\nprint(a * b)"))
    tb = ToolBackend(inner, FAST)
    step = Sampling(max_new_tokens=200, stop=("\n",), keep_kv=True)
    (first,) = tb.generate_ids([ids(inner, "Q\n")], step)
    assert first.text == "Let me compute.\n" and "executions" not in first.meta  # a plain step
    (code,) = tb.generate_ids([ids(inner, "Q\n") + first.token_ids], step)
    # stopped at "```python\n" inside an open block: continued to the output block, run, ended
    assert code.text == "```python\na = 6\nb = 7\nprint(a * b)\n```\n```output\n42\n```\n"
    assert code.finish_reason == "stop" and code.meta["executions"][0]["output"] == "42"
    (last,) = tb.generate_ids([ids(inner, "Q\n") + first.token_ids + code.token_ids], step)
    assert last.text == "The answer is 42." and last.finish_reason == "eos"


def test_code_starts_while_the_other_rows_are_still_decoding():
    inner = Scripted(computes("import time\ntime.sleep(0.6)\nprint(5)"), delay=0.3)
    tb = ToolBackend(inner, ToolsConfig(workers=4, cpu_seconds=2, wall_seconds=5.0))
    t0 = time.monotonic()
    outs = tb.generate_ids([ids(inner, f"Q{i}") for i in range(4)], Sampling(max_new_tokens=200))
    wall = time.monotonic() - t0
    assert [o.text.rsplit(" ", 1)[-1] for o in outs] == ["5."] * 4
    # run one after the other the four executions would take >= 2.4 s on top of the decoding;
    # submitted as each row stopped, they overlapped the 4 x 0.3 s of "decoding" and each other
    assert tb.stats["executions"] == 4 and tb.stats["execution_seconds"] >= 2.4
    assert tb.stats["wait_seconds"] < tb.stats["execution_seconds"] / 2
    assert wall < 0.3 * 8 + 2.4


HOSTILE = {
    "loops": ("while True:\n    pass", "timeout"),
    "forks": ("import os\nos.fork()\nprint('forked')", "error"),
    "eats memory": ("x = bytearray(10**10)\nprint(len(x))", "error"),
    "writes outside": ("open('/tmp/reasoner-tools-escape.txt', 'w').write('x')\nprint('wrote')", "error"),
    "sleeps": ("import time\ntime.sleep(60)", "timeout"),
}


def test_hostile_code_costs_its_own_limit_and_the_generation_goes_on(tmp_path):
    rows = list(HOSTILE.items())
    scripts = {f"Q{i}": computes(code) for i, (_, (code, _)) in enumerate(rows)}
    scripts["Qok"] = computes("print(6 * 7)")

    def script(context: str) -> str:
        key = context.split("\n", 1)[0]
        return scripts[key](context)

    inner = Scripted(script)
    tb = ToolBackend(inner, ToolsConfig(workers=3, cpu_seconds=1, wall_seconds=2.0, memory_mb=256))
    t0 = time.monotonic()
    prompts = [ids(inner, f"{k}\n") for k in scripts]
    outs = tb.generate_ids(prompts, Sampling(max_new_tokens=300))
    assert time.monotonic() - t0 < 30  # each hostile snippet cost its own limit, not the run
    for (name, (_, status)), out in zip(rows, outs, strict=False):
        (ex,) = out.meta["executions"]
        assert ex["status"] == status, (name, ex)
        assert out.finish_reason == "eos" and out.text.startswith("Let me compute.")
    shown = [o.meta["executions"][0]["output"] for o in outs]
    assert "forked" not in shown[1] and "PermissionError" in shown[1]
    assert "wrote" not in shown[3] and "outside the working folder" in shown[3]
    assert "MemoryError" in shown[2]
    assert not (tmp_path.parent / "reasoner-tools-escape.txt").exists()
    import os

    assert not os.path.exists("/tmp/reasoner-tools-escape.txt")
    assert outs[-1].text.endswith("The answer is 42.")  # the well-behaved row beside them


def test_without_code_the_wrapper_changes_nothing():
    loaded = models.load("tiny")
    hf = HFBackend(loaded.model, loaded.tokenizer)
    tb = ToolBackend(HFBackend(loaded.model, loaded.tokenizer), FAST)
    prompts = [ids(hf, "Tom has 3 apples."), ids(hf, "Ann has 5 pens.")]
    for sampling in (Sampling(temperature=0.0, max_new_tokens=12), Sampling(max_new_tokens=12, seed=4)):
        a, b = hf.generate_ids(prompts, sampling), tb.generate_ids(prompts, sampling)
        assert [x.token_ids for x in a] == [x.token_ids for x in b]
        assert [x.text for x in a] == [x.text for x in b] and tb.stats["executions"] == 0


def test_the_hf_backend_reports_each_row_as_it_finishes():
    loaded = models.load("tiny")
    hf = HFBackend(loaded.model, loaded.tokenizer)
    seen = {}
    outs = hf.generate_ids(
        [ids(hf, "a"), ids(hf, "bb"), ids(hf, "ccc")],
        Sampling(temperature=1.0, max_new_tokens=6, batch_size=2),
        on_row=lambda i, c: seen.setdefault(i, c.token_ids),
    )
    assert seen == {i: o.token_ids for i, o in enumerate(outs)}


def test_training_leaves_the_sandboxs_output_out_of_the_loss():
    from reasoner.records import Trajectory
    from reasoner.training.objectives.rft import RFT

    tok = models.tiny_tokenizer()
    text = "Go.\n```python\nprint(6 * 7)\n```\n```output\n42\n```\nThe answer is 42."
    ex = {"code": "print(6 * 7)\n", "output": "42", "status": "ok", "seconds": 0.1}
    t = Trajectory(id="t", problem_id="p", prompt="Q: ", steps=[], text=text, meta={"executions": [ex]})
    (e,) = RFT().examples([t], tok, "")
    ((a, b),) = e.given
    assert tok.decode(e.completion_ids[a:b]) == "\n42\n```\n"  # content and closing fence
    assert tok.decode(e.completion_ids[:a]).endswith("```output")  # the model wrote the opener
    assert RFT().units([e]) == len(text) - len("\n42\n```\n")
    plain = Trajectory(id="u", problem_id="p", prompt="Q: ", steps=[], text=text)  # no execution: all trained
    assert RFT().examples([plain], tok, "")[0].given == ()
    model = models.tiny_model(0)
    loss, units, _ = RFT().loss(model, [e], 0, "cpu")
    assert units == RFT().units([e])
    full, all_units, _ = RFT().loss(model, [RFT().examples([plain], tok, "")[0]], 0, "cpu")
    assert all_units == len(text) and float(full) > float(loss)  # fewer tokens summed


# ------------------------------------------------------------------ through the commands
@pytest.fixture
def scripted_backend():
    """`generate.backend = "scripted"`: the stand-in policy behind the real commands."""

    def factory(spec: str, device: str = "cpu", settings=None):
        return Scripted(computes("print(3 + 4)"))

    BACKENDS["scripted-tools"] = factory
    yield "scripted-tools"
    del BACKENDS["scripted-tools"]


def test_max_output_chars_cuts_what_the_model_is_shown_through_iterate(tmp_path):
    """`tools.max_output_chars`: a 40-character output is written back cut to 12 characters
    (9 of them and "..."), and the model answers from what it was shown."""
    BACKENDS["scripted-long"] = lambda spec, device="cpu", settings=None: Scripted(computes("print('7' * 40)"))
    sets = [*TINY_SAMPLES, "task.prompt=tools", "generate.backend=scripted-long", "generate.max_new_tokens=160"]
    sets += ["evaluate.max_new_tokens=160", "run.iterations=1", "train.policy.max_steps=1", "tools.cpu_seconds=2"]
    try:
        for cap, shown in ((12, "7" * 9 + "..."), (400, "7" * 40)):
            run = tmp_path / str(cap)
            got = runner.invoke(app, ["iterate", "--run", str(run), *as_sets([*sets, f"tools.max_output_chars={cap}"])])
            assert got.exit_code == 0, got.output
            rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()]
            assert rollouts and all(r["meta"]["executions"][0]["output"] == shown for r in rollouts)
            assert all(f"```output\n{shown}\n```" in r["text"] for r in rollouts)
    finally:
        del BACKENDS["scripted-long"]


def test_max_calls_bounds_the_blocks_run_per_solution_through_iterate(tmp_path):
    """`tools.max_calls`: a model that writes a new block after every output gets that many run."""

    def again(context: str) -> str:
        return "```python\nprint(len('" + "x" * context.count("```output") + "'))\n```\n```output\n"

    BACKENDS["scripted-again"] = lambda spec, device="cpu", settings=None: Scripted(again)
    sets = [*TINY_SAMPLES, "task.prompt=tools", "generate.backend=scripted-again", "generate.max_new_tokens=300"]
    sets += ["evaluate.max_new_tokens=40", "run.iterations=1", "train.policy.max_steps=1", "tools.cpu_seconds=2"]
    try:
        for calls in (1, 3):
            run = tmp_path / str(calls)
            got = runner.invoke(app, ["iterate", "--run", str(run), *as_sets([*sets, f"tools.max_calls={calls}"])])
            assert got.exit_code == 0, got.output
            rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()]
            for r in rollouts:  # the count starts at the prompt's own worked examples' output blocks
                outputs = [int(e["output"]) for e in r["meta"]["executions"]]
                assert outputs == list(range(outputs[0], outputs[0] + calls)), outputs
            assert rollouts
    finally:
        del BACKENDS["scripted-again"]


def test_iterate_and_evaluate_run_the_models_code(tmp_path, scripted_backend):
    run = tmp_path / "r"
    sets = [
        *TINY_SAMPLES,
        "task.prompt=tools",
        f"generate.backend={scripted_backend}",
        "generate.max_new_tokens=120",
        "evaluate.max_new_tokens=120",
        "run.iterations=1",
        "train.epochs=1",
        "tools.cpu_seconds=2",
    ]
    got = runner.invoke(app, ["iterate", "--run", str(run), *as_sets(sets), "--set", "run.baseline_eval=true"])
    assert got.exit_code == 0, got.output
    rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()]
    assert rollouts and all(r["meta"]["executions"][0]["output"] == "7" for r in rollouts)
    assert all(r["text"].endswith("The answer is 7.") for r in rollouts)
    assert any("```python\nprint(3 + 4)\n```\n```output\n7\n```" in s for s in rollouts[0]["steps"])
    ev = json.loads((run / "iter_0000" / "eval.json").read_text())
    assert ev["tools"]["executions_per_answer"] == 1.0 and ev["tools"]["share_ok"] == 1.0

    out = tmp_path / "ev"
    asked = ["evaluate", "--model", f"{run}@0", "--prompt", "tools", "--limit", "2", "--out", str(out)]
    got = runner.invoke(app, asked)
    assert got.exit_code == 0, got.output
    report = json.loads((out / "eval.json").read_text())
    assert report["greedy_tools"]["answers_with_code"] == 1.0
    sample = json.loads((out / "samples.jsonl").open().readline())
    assert sample["greedy"]["executions"][0]["code"] == "print(3 + 4)\n"
    assert "```python" in (out / "prompt.txt").read_text()


def test_beam_search_keeps_a_code_step_as_one_node(tmp_path, scripted_backend):
    run = tmp_path / "b"
    sets = [
        *TINY_SAMPLES,
        "task.prompt=tools",
        f"generate.backend={scripted_backend}",
        "generate.searcher=beam",
        "search.beam_width=1",
        "search.beam_expansions=1",
        "search.beam_scorer=code",  # the code labeller ranks the partial solutions
        "search.step_tokens=80",
        "run.iterations=1",
    ]
    got = runner.invoke(app, ["generate", "--run", str(run), "--iteration", "1", *as_sets(sets)])
    assert got.exit_code == 0, got.output
    rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()]
    r = rollouts[0]
    assert r["steps"] == ["Let me compute.", "```python\nprint(3 + 4)\n```\n```output\n7\n```", "The answer is 7."]
    assert r["meta"]["executions"][0]["output"] == "7"
    tree = json.loads((run / "iter_0001" / "trees.jsonl").open().readline())
    assert [n["step"] for n in tree["nodes"]][1:] == r["steps"]
    assert [n["value"] for n in tree["nodes"]][1:] == [1.0, 1.0, 1.0]  # no false claim in any step


def test_mcts_keeps_a_code_step_as_one_node(tmp_path, scripted_backend):
    run = tmp_path / "m"
    sets = [
        *TINY_SAMPLES,
        "task.prompt=tools",
        f"generate.backend={scripted_backend}",
        "generate.searcher=mcts",
        "search.mcts_value=none",
        "search.mcts_simulations=4",
        "search.mcts_expansions=1",
        "search.step_tokens=80",
        "run.iterations=1",
    ]
    got = runner.invoke(app, ["generate", "--run", str(run), "--iteration", "1", *as_sets(sets)])
    assert got.exit_code == 0, got.output
    rollouts = [json.loads(line) for line in (run / "iter_0001" / "rollouts.jsonl").open()]
    assert rollouts and all(r["text"].endswith("The answer is 7.") for r in rollouts)
    assert all(r["meta"]["executions"][0]["output"] == "7" for r in rollouts)
    assert all("```python\nprint(3 + 4)\n```\n```output\n7\n```" in r["steps"] for r in rollouts)
