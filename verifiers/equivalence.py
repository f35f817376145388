"""Answer equivalence: a quick in-process path and a symbolic path for the worker.

`quick` decides what plain string and exact-number work can decide (numbers, fractions,
percent, money, units, multiple-choice letters, clock times, text answers, simple equations,
hedged answers). What it leaves undecided goes to `symbolic`, which parses LaTeX with
latex2sympy2-extended (an ANTLR grammar, not `eval`/`sympify` of the raw text) and compares
with sympy. `symbolic` runs only inside a worker process under a hard time limit
(`reasoner.verifiers.pool`), so a parser that hangs or a huge expression cannot stall the caller.
"""

from __future__ import annotations

import re
from fractions import Fraction

from reasoner.verifiers.normalize import (
    MAX_ANSWER,
    MAX_DEPTH,
    NEGATION,
    choice_letter,
    clean,
    clock_time,
    depth,
    hedged,
    is_textual,
    parse_number,
    states_text,
    strip_unit_suffix,
    strip_units,
    text_key,
)
from reasoner.verifiers.verdict import CORRECT, INCORRECT, UNVERIFIABLE, Verdict

REL_TOL = 1e-6
_EQ_VAR = re.compile(r"^\s*([A-Za-z](?:_\{?\w+\}?)?)\s*=\s*(.+)$")
_HEDGE = re.compile(r"\s+(?:or|and/or)\s+", re.I)
# A number followed by words only: "42 apples in the basket", "18 per day".
_LEADING_NUMBER = re.compile(r"^(-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?\s?%?)\s+[A-Za-z][A-Za-z' /]*$")
_HUGE = re.compile(r"\^\s*\{?\s*\d{4,}|\*\*|\^\s*\{[^{}]*\^|(\d{4,})\s*!|\\?[a-z]*\^\s*\{?\s*\d+\s*\}?\s*\^")


def _number(s: str) -> tuple[Fraction | None, dict[str, bool]]:
    value, flags = strip_units(s)
    return parse_number(value), flags


def _numbers_equal(g: Fraction, p: Fraction, gold_text: str) -> bool:
    if g == p:
        return True
    decimals = re.search(r"\.(\d+)", gold_text)
    if decimals and len(decimals.group(1)) >= 4:  # a rounded float gold such as 0.6666666667
        return abs(g - p) <= REL_TOL * max(abs(g), 1)
    return False


def _as_lists(g: str, p: str) -> tuple[str, str]:
    """A gold written "2 or -2" lists its answers, so that "\\pm 2" or "-2, 2" match it."""
    if not hedged(g):
        return g, p
    return _listed(_HEDGE.sub(", ", g)), _listed(_HEDGE.sub(", ", p))


def _listed(s: str) -> str:
    """ "x=2, x=-2" -> "2, -2": one variable's values as a list."""
    m = re.fullmatch(r"\s*([A-Za-z])\s*=\s*(.+?),\s*\1\s*=\s*(.+)", s)
    return f"{m.group(2)}, {m.group(3)}" if m else s


def _split_equation(s: str) -> tuple[str | None, str]:
    m = _EQ_VAR.match(s)
    if m and "=" not in m.group(2):
        return m.group(1), m.group(2).strip()
    return None, s


def quick(gold: str, prediction: str | None) -> Verdict | None:
    """A verdict from string and exact-number work alone, or None when sympy is needed."""
    if prediction is None or not prediction.strip():
        return Verdict(INCORRECT, "no answer found")
    if len(prediction) > MAX_ANSWER:
        return Verdict(UNVERIFIABLE, f"answer longer than {MAX_ANSWER} characters")
    if depth(prediction) > MAX_DEPTH:
        return Verdict(UNVERIFIABLE, f"answer nested deeper than {MAX_DEPTH} brackets")
    g, p = clean(gold), clean(prediction)
    if g == p:
        return Verdict(CORRECT, "identical after normalisation")
    letter = choice_letter(g)
    if letter is not None:
        got = choice_letter(p)
        return Verdict(CORRECT if got == letter else INCORRECT, f"choice {got} vs {letter}")
    clock = clock_time(g)
    if clock is not None:
        got = clock_time(p)
        ok = got is not None and got[:3] == clock[:3] and (not got[3] or not clock[3] or got[3] == clock[3])
        return Verdict(CORRECT if ok else INCORRECT, "clock time")
    g, p = _as_lists(g, p)
    if hedged(p) and not hedged(g):
        return Verdict(INCORRECT, "hedged answer: more than one answer offered")
    gvar, grhs = _split_equation(g)
    pvar, prhs = _split_equation(p)
    if gvar and pvar and gvar != pvar:
        return Verdict(INCORRECT, f"equation for {pvar}, expected {gvar}")
    gn, gflags = _number(grhs)
    pn, pflags = _number(prhs)
    lead = _LEADING_NUMBER.match(prhs)
    if gn is not None and pn is None and lead and not NEGATION.search(prhs):
        pn, pflags = _number(lead.group(1))  # "42 apples in the basket": the number is the answer
    if gn is not None and pn is not None:
        if _numbers_equal(gn, pn, grhs):
            return Verdict(CORRECT, "equal numbers")
        if (pflags["percent"] or gflags["percent"]) and (pn / 100 == gn or gn / 100 == pn):
            return Verdict(CORRECT, "equal numbers (percent)")
        return Verdict(INCORRECT, f"{pn} != {gn}")
    if is_textual(grhs):
        if text_key(grhs) == text_key(prhs):
            return Verdict(CORRECT, "text answer")
        if states_text(prhs, grhs):
            return Verdict(CORRECT, "text answer stated in a sentence")
        return Verdict(INCORRECT, "text answer")
    if gn is not None and is_textual(prhs):
        return Verdict(INCORRECT, "prediction is words, gold is a number")
    if gvar or pvar:
        return quick(grhs, prhs) if (gvar or pvar) and (grhs, prhs) != (g, p) else None
    return None


# ------------------------------------------------------------------------------- symbolic
def symbolic(gold: str, prediction: str) -> Verdict:
    """Parse both with latex2sympy2-extended and compare with sympy (worker process only)."""
    decided = quick(gold, prediction)
    if decided is not None:
        return decided
    g, p = _as_lists(clean(gold), clean(prediction))
    gvar, grhs = _split_equation(g)
    pvar, prhs = _split_equation(p)
    if gvar is None or pvar is None or gvar == pvar:  # "x = \\pm 3" against "3 or -3"
        g, p = grhs, prhs
    if _HUGE.search(p):
        return Verdict(UNVERIFIABLE, "refused: huge power or factorial")
    gold_expr = _parse(g)
    if gold_expr is None:
        return Verdict(UNVERIFIABLE, "gold answer does not parse")
    pred_expr = _parse(p)
    if pred_expr is None:
        return Verdict(INCORRECT, "prediction does not parse")
    if _too_big(pred_expr):
        return Verdict(UNVERIFIABLE, "refused: huge power or factorial")
    return (
        Verdict(CORRECT, "symbolically equal")
        if _equal(gold_expr, pred_expr)
        else Verdict(INCORRECT, "symbolically different")
    )


_SET_BUILDER = re.compile(r"^\\\{\s*([a-zA-Z])\s*(?:\\mid|\||:)\s*(.+)\\\}$")


def _parse(s: str):
    from latex2sympy2_extended import latex2sympy

    s = re.sub(r"^\s*[a-zA-Z]\s*\\in(?![a-zA-Z])", "", s)  # "x \in [1, 2]" is the set itself
    s = re.sub(r"\\in(?![a-zA-Z])", "", s).strip()  # (but not \infty)
    m = _SET_BUILDER.match(s)
    try:
        if m:
            cond = latex2sympy(m.group(2))
            return cond.as_set()
        value, _ = strip_units(strip_unit_suffix(s))
        return latex2sympy(value)
    except Exception:  # the parser raises many kinds on malformed LaTeX; all mean "does not parse"
        return None


def _too_big(expr) -> bool:
    import sympy

    if not isinstance(expr, sympy.Basic):
        return False
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_Number and abs(node.exp) > 10_000:
            return node.base not in (0, 1, -1)
        if isinstance(node, sympy.factorial) and node.args[0].is_Number and node.args[0] > 1000:
            return True
    return False


def _equal(a, b) -> bool:
    import sympy

    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        return (
            isinstance(a, sympy.MatrixBase)
            and isinstance(b, sympy.MatrixBase)
            and a.shape == b.shape
            and all(_scalar_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, sympy.FiniteSet) and isinstance(b, sympy.FiniteSet):
        return len(a) == len(b) and _match_unordered(list(a), list(b))
    if isinstance(a, sympy.Tuple) or isinstance(b, sympy.Tuple) or isinstance(a, tuple):
        ta, tb = tuple(a) if _is_seq(a) else (a,), tuple(b) if _is_seq(b) else (b,)
        return len(ta) == len(tb) and all(_scalar_equal(x, y) for x, y in zip(ta, tb, strict=True))
    if isinstance(a, sympy.Set) or isinstance(b, sympy.Set):
        return (
            isinstance(a, sympy.Set)
            and isinstance(b, sympy.Set)
            and bool(sympy.simplify(a.symmetric_difference(b)) == sympy.S.EmptySet)
        )
    if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
        da, db = a.lhs - a.rhs, b.lhs - b.rhs
        if da.free_symbols != db.free_symbols:
            return False
        ratio = sympy.simplify(da / db) if db != 0 else None
        return ratio is not None and ratio.is_number and ratio != 0
    if isinstance(a, sympy.Equality) or isinstance(b, sympy.Equality):
        return False
    return _scalar_equal(a, b)


def _is_seq(x) -> bool:
    import sympy

    return isinstance(x, (tuple, list, sympy.Tuple))


def _match_unordered(xs: list, ys: list) -> bool:
    remaining = list(ys)
    for x in xs:
        for i, y in enumerate(remaining):
            if _scalar_equal(x, y):
                del remaining[i]
                break
        else:
            return False
    return True


def _scalar_equal(a, b) -> bool:
    import sympy

    try:
        a, b = sympy.sympify(a), sympy.sympify(b)  # already sympy objects from the parser
        if a == b:
            return True
        if a.free_symbols != b.free_symbols:
            return False
        if sympy.simplify(a - b) == 0:
            return True
        if a.is_number and b.is_number:
            va, vb = complex(a.evalf(30)), complex(b.evalf(30))
            return abs(va - vb) <= REL_TOL * max(abs(va), 1)
    except (TypeError, ValueError, AttributeError, sympy.SympifyError):
        return False
    return False
