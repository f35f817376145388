"""`arith`: procedurally generated multi-step arithmetic word problems with gold steps.

A problem is a start quantity followed by ``steps`` operations; each operation is one sentence
of the question and one line ``a op b = c`` of the gold solution, which ends with
"The answer is N.". Every intermediate result is known, so any model step can be checked:
each equation in it must be arithmetically true and land on a value of the gold chain, and an
"answer is" claim must equal the gold answer. Deterministic from a seed; the test split comes
from its own fixed seed and the train split never repeats a test question.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from dataclasses import dataclass
from typing import Any

from reasoner.records import Problem
from reasoner.tasks import PackError, register

NAMES = ["Tom", "Ann", "Sam", "Lily", "Ben", "Mia", "Max", "Eva", "Leo", "Zoe", "Kim", "Raj"]
ITEMS = ["apples", "books", "marbles", "coins", "stickers", "pens", "cards", "shells", "stamps"]
PHRASES = {
    "+": ["{name} buys {n} more {item}.", "{name} finds {n} more {item}.", "A friend gives {name} {n} more {item}."],
    "-": ["{name} gives away {n} {item}.", "{name} loses {n} {item}.", "{name} sells {n} {item}."],
    "*": ["Then the number of {item} {name} has becomes {n} times as large."],
}
TEST_SEED = 20_241_124
SYSTEM = (
    "Solve the math word problem. Write one calculation per line in the form a + b = c, "
    "then finish with a line 'The answer is N.'"
)
EXAMPLES = [
    (
        "Kim has 4 pens. Kim buys 3 more pens. Kim gives away 2 pens. How many pens does Kim have now?",
        "4 + 3 = 7\n7 - 2 = 5\nThe answer is 5.",
    ),
    (
        "Raj has 9 stamps. Raj loses 6 stamps. A friend gives Raj 8 more stamps. How many stamps does Raj have now?",
        "9 - 6 = 3\n3 + 8 = 11\nThe answer is 11.",
    ),
]
_EQUATION = re.compile(r"((?:[\d.]+\s*[-+*/x×÷]\s*)+[\d.]+)\s*=\s*(-?[\d.,]+)")
_ANSWER = re.compile(r"answer is\s*:?\s*\$?(-?[\d.,]+)", re.I)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass
class Difficulty:
    steps: int = 2
    max_number: int = 10
    ops: str = "+-"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.max_number < 2 or not self.ops or set(self.ops) - set(PHRASES):
            raise PackError("arith difficulty: steps >= 1, max_number >= 2, ops a subset of '+-*'")


@register("arith")
class ArithPack:
    name = "arith"
    extractor = "flexible"
    verifier = "math"
    step_separator = "\n"

    def __init__(self, difficulty: dict[str, Any] | None = None, prompt: str = "fewshot", **_: Any):
        try:
            self.difficulty = Difficulty(**(difficulty or {}))
        except TypeError as err:
            raise PackError(f"arith difficulty: {err}; valid keys: steps, max_number, ops") from None
        if prompt not in ("fewshot", "zeroshot"):
            raise PackError(f"arith prompt must be fewshot or zeroshot, got {prompt!r}")
        self.prompt = prompt

    # ----------------------------------------------------------------------------- problems
    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split == "test":
            return [self._make(random.Random(f"{TEST_SEED}:{i}"), f"arith-test-{i}") for i in range(n)]
        if split != "train":
            raise PackError(f"arith has splits train and test, not {split!r}")
        test_questions = {p.question for p in self.problems("test", 1000, 0)}
        out, i = [], 0
        while len(out) < n:
            problem = self._make(random.Random(f"{seed}:train:{i}"), f"arith-train-{seed}-{i}")
            i += 1
            if problem.question not in test_questions:
                out.append(problem)
        return out

    def _make(self, rng: random.Random, pid: str) -> Problem:
        d = self.difficulty
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        value = rng.randint(1, d.max_number)
        sentences = [f"{name} has {value} {item}."]
        lines, chain = [], [value]
        for _ in range(d.steps):
            op = rng.choice([o for o in d.ops if o != "-" or value > 1])
            if op == "-":
                n = rng.randint(1, value - 1)
            elif op == "*":
                n = rng.randint(2, 3)
            else:
                n = rng.randint(1, d.max_number)
            new = {"+": value + n, "-": value - n, "*": value * n}[op]
            sentences.append(rng.choice(PHRASES[op]).format(name=name, n=n, item=item))
            lines.append(f"{value} {op} {n} = {new}")
            value = new
            chain.append(value)
        sentences.append(f"How many {item} does {name} have now?")
        lines.append(f"The answer is {value}.")
        return Problem(
            id=pid,
            pack="arith",
            question=" ".join(sentences),
            answer=str(value),
            solution="\n".join(lines),
            meta={"chain": chain, "steps": d.steps, "max_number": d.max_number, "ops": d.ops},
        )

    # ------------------------------------------------------------------------------- prompt
    def messages(self, problem: Problem) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": SYSTEM}]
        if self.prompt == "fewshot":
            for question, solution in EXAMPLES:
                msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
        return msgs + [{"role": "user", "content": problem.question}]

    def split_steps(self, text: str) -> list[str]:
        return [line.strip() for line in text.strip().splitlines() if line.strip()]

    # ---------------------------------------------------------------------------- gold steps
    def check_steps(self, problem: Problem, steps: list[str]) -> list[bool | None]:
        chain = {float(v) for v in problem.meta.get("chain", [])}
        gold = float(problem.answer)
        return [_check_step(step, chain, gold) for step in steps]


def _check_step(step: str, chain: set[float], gold: float) -> bool | None:
    claims: list[bool] = []
    for lhs, rhs in _EQUATION.findall(step):
        left, right = _evaluate(lhs), _number(rhs)
        claims.append(left is not None and right is not None and abs(left - right) < 1e-9 and right in chain)
    for value in _ANSWER.findall(step):
        claims.append(_number(value) == gold)
    return all(claims) if claims else None


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def _evaluate(expr: str) -> float | None:
    """Value of a short arithmetic expression (numbers and + - * /), never eval'd."""
    expr = expr.replace("×", "*").replace("x", "*").replace("÷", "/")
    if len(expr) > 100:
        return None
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    return _walk(tree)


def _walk(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _walk(node.left), _walk(node.right)
        if a is None or b is None or (isinstance(node.op, ast.Div) and b == 0):
            return None
        return _OPS[type(node.op)](a, b)
    return None
