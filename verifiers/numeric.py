"""Numeric equivalence for GSM8K-style answers and normalised string matching for the rest.

Numbers are parsed by hand into exact fractions (no eval, no sympify), so model text can never
execute. What this does not cover yet: symbolic LaTeX equivalence (radicals, intervals, sets,
matrices); such answers fall back to normalised string comparison.
"""

from __future__ import annotations

import re
from fractions import Fraction

from reasoner.verifiers import register
from reasoner.verifiers.verdict import CORRECT, INCORRECT, UNVERIFIABLE, Verdict

MAX_ANSWER = 1_000
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_UNITS = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{[^{}]*\}|\\[,!;: ]|\\%|%|\$|\\\$|\^\\circ|\^\{\\circ\}|°")


def normalise(text: str) -> str:
    text = text.strip().replace("\u2212", "-").replace("{,}", ",")
    text = _UNITS.sub("", text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = text.replace("\\left", "").replace("\\right", "")
    text = re.sub(r"\s+", "", text)
    return text.rstrip(".").lower()


def parse_number(text: str) -> Fraction | None:
    """Exact value of a plain number: 1,234  -3.5  007  27.0  3/4  \\frac{3}{4}  1.5e3."""
    s = normalise(text)
    s = re.sub(r"^[a-z]\s*=", "", s)
    if len(s) > 64:
        return None
    frac = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s) or re.fullmatch(r"(-?)\\frac(\d)(\d)", s)
    if frac:
        sign, num, den = frac.groups()
        value = _ratio(num, den)
        return -value if value is not None and sign else value
    if "/" in s:
        num, _, den = s.partition("/")
        return _ratio(num, den)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(e[+-]?\d{1,3})?", s):
        return Fraction(s)
    return None


def _ratio(num: str, den: str) -> Fraction | None:
    try:
        n, d = int(num), int(den)
    except ValueError:
        return None
    return Fraction(n, d) if d else None


@register("numeric")
def numeric(gold: str, prediction: str | None) -> Verdict:
    """Exact equality of numbers (relative tolerance 1e-6 when the gold is a long decimal),
    else equality of normalised strings."""
    if prediction is None or not prediction.strip():
        return Verdict(INCORRECT, "no answer found")
    if len(prediction) > MAX_ANSWER:
        return Verdict(UNVERIFIABLE, f"answer longer than {MAX_ANSWER} characters")
    g, p = parse_number(gold), parse_number(prediction)
    if g is not None and p is not None:
        if g == p:
            return Verdict(CORRECT, "equal numbers")
        tol = 1e-6 * max(abs(g), 1)
        if "." in gold and len(gold.split(".")[-1]) >= 4 and abs(g - p) <= tol:
            return Verdict(CORRECT, "equal within relative tolerance 1e-6")
        return Verdict(INCORRECT, f"{prediction} != {gold}")
    if normalise(gold) == normalise(prediction):
        return Verdict(CORRECT, "equal after normalisation")
    if g is not None and p is None:
        return Verdict(INCORRECT, "prediction is not a number")
    return Verdict(INCORRECT, "different after normalisation")
