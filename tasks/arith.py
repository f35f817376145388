"""`arith`: procedurally generated multi-step arithmetic word problems with gold steps.

A problem is a start quantity followed by ``steps`` operations; each operation is one sentence
of the question and one line ``a op b = c`` of the gold solution, which ends with
"The answer is N.". The problem's operations are known, so any model step can be checked
(`check_steps`): each equation in it must be arithmetically true AND apply, to a quantity the
story can be in, operations of the problem that were not yet used, in an order that keeps the
story's result (additions and subtractions commute; a "times as large" applies to everything
before it and nothing after it). "The answer is N" must name the gold answer. So "3 + 10 = 13"
for "has 3, sells 1, finds 10" is a right step (the two changes commute), while "9 - 4 = 5" for
"has 5, finds 4, buys 4" is wrong although 5 is a quantity of the story. Changes may be combined first
("sells 5, loses 2": "5 + 2 = 7", then "8 - 7 = 1"), up to three at a time.
Deterministic from a seed; the test split comes from its own fixed seed and the train split
never repeats a test question.
"""

from __future__ import annotations

import ast
import functools
import itertools
import operator
import random
import re
from dataclasses import dataclass
from typing import Any

from reasoner.records import Problem
from reasoner.tasks import PackError, check_prompt, register, split_steps, states_answer, tool_chat

NAMES = ["Tom", "Ann", "Sam", "Lily", "Ben", "Mia", "Max", "Eva", "Leo", "Zoe", "Kim", "Raj"]
ITEMS = ["apples", "books", "marbles", "coins", "stickers", "pens", "cards", "shells", "stamps"]
PHRASES = {
    "+": ["{name} buys {n} more {item}.", "{name} finds {n} more {item}.", "A friend gives {name} {n} more {item}."],
    "-": ["{name} gives away {n} {item}.", "{name} loses {n} {item}.", "{name} sells {n} {item}."],
    "*": ["Then the number of {item} {name} has becomes {n} times as large."],
}
MAX_STEPS = 12  # the step check enumerates the 2**steps sets of used operations
COMBINE = 3  # most changes one step may combine ("5 + 2 = 7", then "8 - 7 = 1")
TEST_SEED = 20_241_124
FINAL = "The answer is {answer}."
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
_OPERAND = r"[\d.]+(?:\s+(?!x\b)[A-Za-z']+){0,2}"  # a number, perhaps with its unit: "7 shells"
_EQUATION = re.compile(rf"((?:{_OPERAND}\s*[-+*/x×÷]\s*)+{_OPERAND})\s*=\s*(-?[\d.,]+)")
_WORD = re.compile(r"\b(?!x\b)[A-Za-z']+")
_ASCII_OPS = str.maketrans({"×": "*", "x": "*", "÷": "/"})
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
        self.prompt = check_prompt(self.name, prompt)

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
        if self.prompt == "tools":
            return tool_chat(FINAL, "\n", problem.question)
        msgs = [{"role": "system", "content": SYSTEM}]
        if self.prompt == "fewshot":
            for question, solution in EXAMPLES:
                msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
        return msgs + [{"role": "user", "content": problem.question}]

    def is_final(self, step: str) -> bool:
        return states_answer(step)

    def split_steps(self, text: str) -> list[str]:
        return split_steps(text, "\n")

    # ---------------------------------------------------------------------------- gold steps
    def check_steps(self, problem: Problem, steps: list[str]) -> list[bool | None]:
        story = _Story.of(problem)
        reader = _Reader(story, float(problem.answer))
        return [reader.check(step) for step in steps]


class _Story:
    """The quantities a problem can be in: one per valid set of used operations."""

    def __init__(self, start: float, operations: tuple[tuple[str, float], ...]):
        self.operations = operations
        # how many "times as large" come before each operation: changes combine only within one
        self.segment = [sum(op == "*" for op, _ in operations[:k]) for k in range(len(operations))]
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

    def paths(self, start: float, moves: list[tuple[str, float]], result: float) -> set[frozenset[int]]:
        """The sets of used operations reached by applying ``moves`` left to right from a story
        quantity equal to ``start``, ending at ``result``. A move is one unused
        operation of the problem, or a combined change: up to ``COMBINE`` unused additions and
        subtractions whose net change is the move's amount ("8 - 7" after "sells 5, loses 2")."""
        frontier = {used for used, value in self.states.items() if _close(value, start)}
        for op, n in moves:
            frontier = {nxt for used in frontier for nxt in self._moves(used, op, n)}
        return {used for used in frontier if _close(self.states[used], result)}

    def _moves(self, used: frozenset[int], op: str, n: float) -> list[frozenset[int]]:
        out = []
        for k, (o, m) in enumerate(self.operations):
            if k not in used and o == op and _close(m, n) and used | {k} in self.states:
                out.append(used | {k})
        if op in "+-":
            change = n if op == "+" else -n
            free = [k for k, (o, _) in enumerate(self.operations) if k not in used and o in "+-"]
            for size in range(2, COMBINE + 1):
                for group in itertools.combinations(free, size):
                    nxt = used | set(group)
                    if nxt in self.states and _close(sum(self._signed(k) for k in group), change):
                        out.append(nxt)
        return out

    def combines(self, unused_in: set[frozenset[int]], numbers: list[float], result: float) -> bool:
        """Whether ``numbers`` are the amounts of 2 to ``COMBINE`` additions and subtractions of
        the problem not used in one of ``unused_in``, none across a "times as large", and
        ``result`` their net change or its size ("5 + 2 = 7" for "sells 5, loses 2")."""
        if not 2 <= len(numbers) <= COMBINE:
            return False
        for group in itertools.permutations(range(len(self.operations)), len(numbers)):
            amounts = zip(group, numbers, strict=True)
            if not all(self.operations[k][0] in "+-" and _close(self.operations[k][1], v) for k, v in amounts):
                continue
            segments = {self.segment[k] for k in group}
            net = sum(self._signed(k) for k in group)
            fresh = any(not used & set(group) for used in unused_in)
            if fresh and len(segments) == 1 and (_close(net, result) or _close(abs(net), result)):
                return True
        return False

    def _signed(self, k: int) -> float:
        op, n = self.operations[k]
        return n if op == "+" else -n


@functools.lru_cache(maxsize=128)  # a 12-step story holds 4,096 states; keep the cache small
def _story(start: float, operations: tuple[tuple[str, float], ...]) -> _Story:
    return _Story(start, operations)


def _apply(value: float, op: str, n: float) -> float:
    return {"+": value + n, "-": value - n, "*": value * n}[op]


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


class _Reader:
    """Reads a solution step by step, keeping the operations its latest right equation used.

    An equation must start from a quantity the story can be in (steps done in one's head are
    allowed; with one commutative operation the quantity may come second: "4 + 9" for 9 plus 4)
    and apply operations not used on the way to it, or combine the amounts of changes the
    solution has not used yet ("5 + 2 = 7" for "sells 5, loses 2"; after "6 + 10 = 16",
    "8 + 10 = 18" counts the 10 twice). A wrong equation leaves the state as it was."""

    def __init__(self, story: _Story, gold: float):
        self.story, self.gold = story, gold
        self.latest: set[frozenset[int]] = {frozenset()}

    def check(self, step: str) -> bool | None:
        claims: list[bool] = []
        for found, rhs in _EQUATION.findall(step):
            lhs = _WORD.sub(" ", found).translate(_ASCII_OPS)
            left, right = _evaluate(lhs), _number(rhs)
            claims.append(left is not None and right is not None and _close(left, right) and self._follows(lhs, right))
        for value in _ANSWER.findall(step):
            claims.append(_number(value) == self.gold)
        return all(claims) if claims else None

    def _follows(self, lhs: str, result: float) -> bool:
        tokens = _TOKEN.findall(lhs)
        numbers = [_number(t) for t in tokens[::2]]
        ops = tokens[1::2]
        if any(v is None for v in numbers) or len(numbers) != len(ops) + 1:
            return False
        ends = self.story.paths(numbers[0], list(zip(ops, numbers[1:], strict=True)), result)
        if not ends and len(ops) == 1 and ops[0] in "+*":
            ends = self.story.paths(numbers[1], [(ops[0], numbers[0])], result)
        if ends:
            self.latest = ends
            return True
        return self.story.combines(self.latest, numbers, result)


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def _evaluate(expr: str) -> float | None:
    """Value of a short arithmetic expression (numbers and + - * /), never eval'd."""
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
