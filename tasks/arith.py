"""`arith`: procedurally generated multi-step arithmetic word problems with gold steps.

A problem is a start quantity followed by ``steps`` operations; each operation is one sentence
of the question and one line ``a op b = c`` of the gold solution, which ends with
"The answer is N.". The problem's operations are known, so any model step can be checked
(`check_steps`): each equation in it must be arithmetically true AND apply, to a quantity the
story can be in, operations of the problem that were not yet used, in an order that keeps the
story's result (additions and subtractions commute; a "times as large" applies to everything
before it and nothing after it). "The answer is N" must name the gold answer. So "3 + 10 = 13"
for "has 3, sells 1, finds 10" is a right step (the two changes commute), while "9 - 4 = 5" for
"has 5, finds 4, buys 4" is wrong although 5 is a quantity of the story. Equations that combine
the changes first ("10 - 1 = 9", then "3 + 9 = 12") are marked wrong: a known limit.
Deterministic from a seed; the test split comes from its own fixed seed and the train split
never repeats a test question.
"""

from __future__ import annotations

import ast
import functools
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
MAX_STEPS = 12  # the step check enumerates the 2**steps sets of used operations
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
_TOKEN = re.compile(r"[\d.]+|[-+*/]")
_ANSWER = re.compile(r"answer is\s*:?\s*\$?(-?[\d.,]+)", re.I)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass
class Difficulty:
    steps: int = 2
    max_number: int = 10
    ops: str = "+-"

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS or self.max_number < 2 or not self.ops or set(self.ops) - set(PHRASES):
            raise PackError(f"arith difficulty: 1 <= steps <= {MAX_STEPS}, max_number >= 2, ops a subset of '+-*'")


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
        lines, chain, operations = [], [value], []
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
            operations.append([op, n])
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
            meta={"chain": chain, "operations": operations, "steps": d.steps, "max_number": d.max_number, "ops": d.ops},
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
        story = _Story.of(problem)
        gold = float(problem.answer)
        return [_check_step(step, story, gold) for step in steps]


class _Story:
    """The quantities a problem can be in: one per valid set of used operations."""

    def __init__(self, start: float, operations: tuple[tuple[str, float], ...]):
        self.start, self.operations = start, operations
        self.states: dict[frozenset[int], float] = {}
        self._grow(frozenset(), start)

    @classmethod
    def of(cls, problem: Problem) -> _Story:
        chain = [float(v) for v in problem.meta.get("chain", [])]
        if not chain:
            raise PackError(f"arith problem {problem.id} has no gold chain in meta; step checks need it")
        ops = problem.meta.get("operations")
        if ops is None:  # records written before operations were stored: differences of the chain
            ops = [("+" if b >= a else "-", abs(b - a)) for a, b in zip(chain, chain[1:], strict=False)]
        return _story(chain[0], tuple((str(op), float(n)) for op, n in ops))

    def _valid(self, used: frozenset[int]) -> bool:
        for i, (op, _) in enumerate(self.operations):
            if op == "*" and (
                (i in used and any(j not in used for j in range(i)))
                or (i not in used and any(j in used for j in range(i + 1, len(self.operations))))
            ):
                return False
        return True

    def _grow(self, used: frozenset[int], value: float) -> None:
        if used in self.states:
            return
        self.states[used] = value
        for k, (op, n) in enumerate(self.operations):
            nxt = used | {k}
            if k not in used and self._valid(nxt):
                self._grow(nxt, _apply(value, op, n))

    def reaches(self, start: float, moves: list[tuple[str, float]], result: float) -> bool:
        """Whether applying ``moves`` left to right from a story quantity equal to ``start``, each
        move a not-yet-used operation of the problem, keeps to valid states and ends at ``result``."""
        frontier = [used for used, v in self.states.items() if _close(v, start)]
        for op, n in moves:
            frontier = [
                used | {k}
                for used in frontier
                for k, (o, m) in enumerate(self.operations)
                if k not in used and o == op and _close(m, n) and (used | {k}) in self.states
            ]
        return any(_close(self.states[used], result) for used in frontier)


@functools.lru_cache(maxsize=4096)
def _story(start: float, operations: tuple[tuple[str, float], ...]) -> _Story:
    return _Story(start, operations)


def _apply(value: float, op: str, n: float) -> float:
    return {"+": value + n, "-": value - n, "*": value * n}[op]


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def _check_step(step: str, story: _Story, gold: float) -> bool | None:
    claims: list[bool] = []
    for lhs, rhs in _EQUATION.findall(step):
        left, right = _evaluate(lhs), _number(rhs)
        claims.append(left is not None and right is not None and _close(left, right) and _on_story(lhs, right, story))
    for value in _ANSWER.findall(step):
        claims.append(_number(value) == gold)
    return all(claims) if claims else None


def _on_story(lhs: str, result: float, story: _Story) -> bool:
    """The equation's left side read as a story quantity followed by operations of the problem;
    with one commutative operation the quantity may come second ("4 + 9" for 9 plus 4)."""
    tokens = _TOKEN.findall(lhs.replace("×", "*").replace("x", "*").replace("÷", "/"))
    numbers = [_number(t) for t in tokens[::2]]
    ops = tokens[1::2]
    if any(v is None for v in numbers) or len(numbers) != len(ops) + 1:
        return False
    if story.reaches(numbers[0], list(zip(ops, numbers[1:], strict=True)), result):
        return True
    return len(ops) == 1 and ops[0] in "+*" and story.reaches(numbers[1], [(ops[0], numbers[0])], result)


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
