"""`code`: steps checked by running their computable claims in the sandbox.

A claim is an equation whose left side is arithmetic on numbers and whose right side is a number
("4 + 3 = 7", "12 x 15 = 180 pencils", "$1,200 / 4 = $300", "2^3 = 8"; up to two unit words after
a number are dropped: "8 books - 4 books = 4 books", "72 cubic ft * 3/4 = 54", but not a multiplier
such as "dozen"; a value with decimals is read as rounded to them: "2060 / 15 = 137.33" holds).
Each trajectory's claims run as one program in the sandbox (`reasoner.verifiers.sandbox`, under
`[tools]`'s limits, in its pool of workers); a step scores 1 when every claim in it holds, 0 when
one does not, and 1 when it makes none or the program could not finish (no evidence against it,
as `gold` counts None). With `label.code_answer`, the last step also scores 0 when the solution
makes claims and none of them states its final answer.
Needs no model and no gold labels, so it works on any data set whose steps compute; it says
nothing about whether a true equation is the right one to write (that is what `gold` adds on
`arith`). Also a beam-search scorer: a partial solution scores its weakest step.
"""

from __future__ import annotations

import json
import re

from reasoner.config import ToolsConfig
from reasoner.records import StepLabels, Trajectory
from reasoner.rewards import LabelContext, register

_NUM = r"\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_OP = r"[-–−+*/×x÷^]"
# an operator standing alone ("x" only as a word of its own: not the x of "boxes")
_STANDALONE_OP = r"(?:[-–−+*/×÷^]|(?<![A-Za-z])x(?![A-Za-z]))"
_ASCII_OPS = str.maketrans({"×": "*", "x": "*", "÷": "/", "–": "-", "−": "-"})
# left side: numbers joined by operators (parentheses allowed), each number perhaps with one or two
# unit words ("8 books - 4 books = 4 books", "72 cubic ft * 3/4"; three are more often prose), never a
# multiplier word ("2 dozen - 4" is no "2 - 4") nor the operator x; right side: one number
_UNIT = r"(?:\s+(?!(?:x|dozens?|hundreds?|thousands?|millions?|billions?|percent)\b)[A-Za-z]{2,}){0,2}"
_TERM = rf"\(*\s*{_NUM}{_UNIT}\s*\)*"
# what an expression is made of once its unit words are dropped
_TOKEN = re.compile(rf"{_NUM}|{_STANDALONE_OP}|[()]")
# the right side is a value, not the start of an expression ("= 4000 + 2040", "= 5A/5",
# "= 240 students – 224 students"), nor a percentage or a mixed number ("= 20%", "= 1 1/2"), nor
# cut from a longer number ("= 2,520,000")
_GOES_ON = rf",?\d|\.\d|[A-Za-z]*\s*(?:[A-Za-z]{{2,}}\s*)?{_STANDALONE_OP}|\s*%|\s+(?:and\s+)?\d+/\d"
_CLAIM = re.compile(rf"(?<![\w.])({_TERM}(?:\s*{_OP}\s*{_TERM})+)\s*=\s*(-?{_NUM})(?!{_GOES_ON})")
# text just before a match that makes its left side the tail of a longer expression: an operator,
# perhaps with a word after it, or a whole number ("8 x 1 1/2 = 12", "1 and 1/4 cup = 1.5"); a number
# and a word are not ("a total of $20 so 20/4 = $5")
_CUT = re.compile(rf"(?:{_STANDALONE_OP}\s*(?:[A-Za-z]+\s*)?|\d\s*(?:and\s*)?)$")
_PROGRAM = """import json
out = []
for expr, value in json.loads(CLAIMS):
    try:
        got = eval(expr, {"__builtins__": {}})
        tol = 1e-6 * max(1.0, abs(value))
        text = repr(value)
        if value != int(value) and "e" not in text:  # "= 137.33": rounded to its decimals
            tol = max(tol, 0.5000001 * 10 ** -len(text.split(".")[1]))
        out.append(abs(got - value) <= tol)
    except Exception:
        out.append(None)
print(json.dumps(out))
"""


def claims(step: str) -> list[tuple[str, float]]:
    """The (python expression, stated value) of each computable equation in ``step``.

    >>> claims("4 + 3 = 7, and 2 x (3 + 1) = 8 pens")
    [('4 + 3', 7.0), ('2 * ( 3 + 1 )', 8.0)]

    An equation whose left side only ends a longer expression ("60 students x 2/3 = 40", a mixed
    number "1 1/2") or whose right side goes on ("= 5A/5") is no claim: a missed claim costs a
    check, a misread one would fail a true step.
    """
    out = []
    for match in _CLAIM.finditer(step):
        left, right = match.groups()
        if left.count("(") != left.count(")") or _CUT.search(step[: match.start()]):
            continue
        expr = " ".join(_TOKEN.findall(left)).replace("$", "").replace(",", "")
        expr = expr.translate(_ASCII_OPS).replace("^", "**")
        out.append((expr, float(right.replace("$", "").replace(",", ""))))
    return out


def program(all_claims: list[tuple[str, float]]) -> str:
    """One sandbox program that prints, as JSON, whether each claim holds (null: it raised)."""
    return f"CLAIMS = {json.dumps(json.dumps(all_claims))}\n" + _PROGRAM


def step_scores(verdicts: list[bool | None], per_step: list[int]) -> list[float]:
    """Scores of steps holding ``per_step[i]`` claims each, from the claims' verdicts in order:
    0.0 when one claim is false, else 1.0."""
    out, at = [], 0
    for n in per_step:
        mine = verdicts[at : at + n]
        at += n
        out.append(0.0 if any(v is False for v in mine) else 1.0)
    return out


def answer_follows(answer: str | None, all_claims: list[tuple[str, float]]) -> bool:
    """Whether a solution's final ``answer`` is the stated value of one of its claims, as a
    solution's answer should come out of its work ("7 + 3 = 10", "The answer is 11." does not).
    True where there is nothing to compare: no claim, no answer, or an answer that is no plain
    number ("3/4", "x + 1").

    >>> answer_follows("11", [("7 + 3", 10.0)]), answer_follows("$1,200", [("2 * 600", 1200.0)])
    (False, True)
    """
    try:
        value = float((answer or "").replace("$", "").replace(",", ""))
    except ValueError:
        return True
    return not all_claims or any(abs(v - value) <= 1e-6 * max(1.0, abs(v)) for _, v in all_claims)


@register("code")
class CodeLabeller:
    name = "code"
    threshold = 0.5
    role = None
    targets_from = None
    variants: dict[str, tuple[str, float]] = {}

    def label(self, trajectories: list[Trajectory], ctx: LabelContext) -> list[StepLabels]:
        scores = self.score(trajectories, ctx.tools, answers=ctx.settings.code_answer)
        return [StepLabels(t.id, self.name, s) for t, s in zip(trajectories, scores, strict=True)]

    @staticmethod
    def score(trajectories: list[Trajectory], cfg: ToolsConfig, answers: bool = False) -> list[list[float]]:
        """Step scores of each trajectory; with ``answers`` (`label.code_answer`), also its last
        step's 0 when its final answer is none of its claims' values (`answer_follows`)."""
        from reasoner.tools import SandboxPool

        parsed = [[claims(step) for step in t.steps] for t in trajectories]
        flat = [[c for step in p for c in step] for p in parsed]  # each trajectory's claims in order
        pool = SandboxPool(cfg)
        try:
            # all trajectories at once: the pool's workers run them side by side
            runs = [pool.submit(program(f)) if f else None for f in flat]
            out = []
            for t, p, f, run in zip(trajectories, parsed, flat, runs, strict=True):
                verdicts: list[bool | None] = []
                if run is not None:
                    ex = run.result()
                    try:
                        verdicts = json.loads(ex.output) if ex.status == "ok" else []
                    except ValueError:
                        verdicts = []
                scores = step_scores(verdicts, [len(step) for step in p])
                if answers and scores and not answer_follows(t.answer, f):
                    scores[-1] = 0.0
                out.append(scores)
            return out
        finally:
            pool.close()

    def search_scores(self, trajectories: list[Trajectory], ctx: LabelContext, seed: int) -> list[float]:
        return [min(s, default=1.0) for s in self.score(trajectories, ctx.tools)]
