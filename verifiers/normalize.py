"""Text-level normalisation of answers and the exact number parser (no eval, no sympy).

Everything here is plain string work with bounded regexes, safe to run in-process on any
model output; the symbolic comparison runs in a worker process (`reasoner.verifiers.pool`).
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_ANSWER = 2_000  # characters of an extracted answer; longer is "unverifiable"
MAX_DEPTH = 40  # bracket nesting depth

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACES = re.compile(r"(?<!\\)\\[,!;: ]|\\quad|\\qquad|~|\\displaystyle")  # not the \\ of a matrix row
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_MONEY = re.compile(r"\\\$|\$|\\euro|€|£")
_PERCENT = re.compile(r"\\%|%")
# Trailing unit words of two letters or more ("5 apples", "9 (apples)"); "5x" and "5r^5" keep theirs.
_UNIT_WORDS = re.compile(r"(?<=\d)\s*(?:\((?:[a-z ]+)\)|(?:[a-z]{2,}\.?\s*){1,3}(?:\^\d|\^\{\d\})?)$", re.I)
_TEXT_UNIT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\{\s*[a-zA-Z][a-zA-Z ./]*\}\s*(?:\^\{?\d\}?)?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SCI = re.compile(r"^([-+]?\d+(?:\.\d+)?)(?:e([-+]?\d{1,4})|(?:\\times|\\cdot|\*|x)10\^\{?([-+]?\d{1,4})\}?)$", re.I)
_FRAC = re.compile(
    r"^([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}$|^([-+]?)\\frac(\d)(\d)$"
    r"|^([-+]?)\\frac\{(\d+)\}(\d)$|^([-+]?)\\frac(\d)\{(\d+)\}$"
)
_MIXED = re.compile(r"^([-+]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$|^([-+]?)(\d+)\\frac(\d)(\d)$")


def depth(text: str) -> int:
    level = best = 0
    for ch in text:
        if ch in "([{":
            level += 1
            best = max(best, level)
        elif ch in ")]}":
            level -= 1
    return best


def clean(text: str) -> str:
    """Strip presentation: $..$, \\left/\\right, thin spaces, \\text{} wrappers, \\dfrac."""
    s = text.strip().replace("\u2212", "-").replace("\u2013", "-").replace("\u00d7", "\\times ")
    s = s.strip("$").strip()
    if s.startswith("\\(") and s.endswith("\\)") or s.startswith("\\[") and s.endswith("\\]"):
        s = s[2:-2]
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "")
    s = s.replace("{,}", ",")
    s = re.sub(r"(?<=\d),\\!(?=\d{3})", ",", s)
    s = re.sub(r"(?<=\d)\\,(?=\d{3}\b)", ",", s)  # 1\,200
    s = _SPACES.sub(" ", s)
    s = _TEXT_UNIT.sub("", s)  # 5\text{ cm}^2: a unit written after a number
    for _ in range(3):
        s = _WRAPPERS.sub(r"\1", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\sqrt\s*(\d|[a-zA-Z](?![a-zA-Z]))", r"\\sqrt{\1}", s)  # TeX's \sqrt3 is \sqrt{3}
    s = s.replace("\\le ", "\\leq ").replace("\\ge ", "\\geq ")
    s = re.sub(r"\s+", " ", s).strip()
    return s.rstrip(".").strip()


# "1.5 million" is 1500000, "negative 2" is -2: written out before any unit word is dropped
_SCALE = re.compile(r"^(\d[\d,]*(?:\.\d+)?|\.\d+)\s*(thousand|million|billion|trillion)\b", re.I)
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_SIGN_WORD = re.compile(r"^(?:negative|minus)\s+(?=[\d.])", re.I)


def _scaled(m: re.Match) -> str:
    value = parse_number(m.group(1))
    return m.group(0) if value is None else str(value * _SCALES[m.group(2).lower()])


def strip_units(s: str) -> tuple[str, dict[str, bool]]:
    """Remove money signs, percent, degrees and trailing unit words from a number; a scale word
    ("1.5 million") multiplies it, "negative"/"minus" before it is its sign."""
    flags = {"percent": bool(_PERCENT.search(s)), "degrees": bool(_DEGREES.search(s))}
    s = _MONEY.sub("", s)
    s = _PERCENT.sub("", s)
    s = _DEGREES.sub("", s)
    s = _SIGN_WORD.sub("-", s.strip())
    s = _SCALE.sub(_scaled, s).strip()
    stripped = _UNIT_WORDS.sub("", s).strip()
    if stripped != s and parse_number(stripped) is not None:
        s = stripped
    return s, flags


_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}


def parse_number(text: str) -> Fraction | None:
    """Exact value of a plain number, or None: 1,234  -3.5  007  27.0  4.5e33  4.5\\times10^{33}
    \\frac{3}{4}  \\frac34  3/4  2\\frac58 and 2 5/8 (mixed)."""
    m = re.fullmatch(r"\s*([-+]?)(\d+)\s+(\d+)/(\d+)\s*", text)  # before spaces go: "2 1/2" is not 21/2
    if m:
        return _mixed(*m.groups())
    s = text.replace(" ", "")
    if not s or len(s) > 64:
        return None
    if s.lower() in _WORDS:  # "six": a number written as a word
        return Fraction(_WORDS[s.lower()])
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)", s):
        return Fraction(s)
    m = _SCI.match(s)
    if m:
        exp = int(m.group(2) or m.group(3))
        return Fraction(m.group(1)) * Fraction(10) ** exp if abs(exp) <= 400 else None
    m = _FRAC.match(s)
    if m:
        sign, num, den = next(m.groups()[i : i + 3] for i in (0, 3, 6, 9) if m.group(i + 2) is not None)
        return _ratio(sign or "", num, den)
    m = _MIXED.match(s)
    if m:
        g = [x for x in m.groups() if x is not None]
        return _mixed(*g) if len(g) == 4 else _mixed("", *g)
    m = re.fullmatch(r"([-+]?\d+)/([-+]?\d+)", s)
    if m:
        return _ratio("", m.group(1), m.group(2))
    return None


def _mixed(sign: str, whole: str, num: str, den: str) -> Fraction | None:
    """A mixed number: whole and num/den, the sign applying to both (-2 1/2 is -5/2)."""
    frac = _ratio("", num, den)
    return None if frac is None else (-1 if sign == "-" else 1) * (int(whole) + frac)


def _ratio(sign: str, num: str, den: str) -> Fraction | None:
    n, d = int(num), int(den)
    if d == 0:
        return None
    return Fraction(-n if sign == "-" else n, d)


# a yes/no question's gold is often written True/False (StrategyQA) and answered yes or no
_BOOLEAN = {"true": "yes", "false": "no"}


def text_key(s: str) -> str:
    """A text answer reduced to lowercase letters and digits, articles dropped."""
    s = clean(s).lower()
    s = re.sub(r"\\[a-z]+", " ", s)
    s = re.sub(r"[^a-z0-9 ]", " ", s)
    words = [_BOOLEAN.get(w, w) for w in s.split() if w not in {"the", "a", "an"}]
    return " ".join(words)


def is_textual(s: str) -> bool:
    """A word answer (Monday, east, yes, no): letters, at least one word of 3+ (or the answer
    "no"), no math."""
    c = clean(s)
    if c.lower() == "no":
        return True
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z '\-]*", c)) and bool(re.search(r"[A-Za-z]{3,}", c))


_LETTER = re.compile(r"^\(?([A-Ea-e])\)?[.):]?$")


def choice_letter(s: str) -> str | None:
    """Multiple-choice letter of an answer: "B", "(B)", "B)", "option B", "\\text{(B)}", and a
    letter with its option's text, "(B) 4" or AQuA's "B)4"."""
    c = clean(s)
    c = re.sub(r"^(?:option|choice|answer)\s*", "", c, flags=re.I).strip()
    m = _LETTER.match(c) or re.match(r"^\(?([A-E])\)\s*\S", c)
    return m.group(1).upper() if m else None


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?$", re.I)


def clock_time(s: str) -> tuple[int, int, int, str] | None:
    m = _CLOCK.match(clean(s))
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2))
    if minute > 59 or hour > 24:
        return None
    half = (m.group(4) or "").replace(".", "").lower()
    return hour, minute, int(m.group(3) or 0), half


_UNIT_VOCAB = (
    r"(?:square|sq\.?|cubic|cu\.?)?\s*(?:units?|cm|mm|km|m|meters?|metres?|centimeters?|millimeters?|"
    r"kilometers?|inch(?:es)?|in|feet|foot|ft|yards?|yd|miles?|mi|degrees?|radians?|rad|seconds?|sec|s|"
    r"minutes?|min|hours?|hrs?|days?|weeks?|years?|dollars?|cents?|grams?|g|kg|pounds?|lbs?|ounces?|oz|"
    r"liters?|litres?|l|ml|gallons?|mph|km/h)"
)
_GLUED_UNIT = re.compile(r"(?<=[\d}])\s*" + _UNIT_VOCAB + r"\.?\s*(?:\^\s*\{?\s*[23]\s*\}?)?$", re.I)


def strip_unit_suffix(s: str) -> str:
    """A known unit written after a radical or a number with no \\text{} around it:
    "6\\sqrt{2} cm", "4\\sqrt{3}units^2". Only listed unit names go, so "\\frac12 ab" keeps its
    variables."""
    out = _GLUED_UNIT.sub("", s).strip()
    return out or s


NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|cannot)\b|n't\b", re.I)
_OPENERS = re.compile(r"^(?:so|thus|therefore|hence|then|finally|in conclusion|in total)\s*,?\s*", re.I)
_COPULAS = {"is", "are", "was", "were", "be", "equals", "becomes", "faces", "facing"}


def states_text(sentence: str, gold: str) -> bool:
    """Whether a sentence states word answer ``gold`` the way prose does: as its subject ("So Tom
    finishes first.") or after a copula at its end ("He faces east.", "The winner is Tom."), with
    no negation and no second answer offered ("Tom and Sam tie", "east or west")."""
    key = text_key(gold).split()
    if not key or NEGATION.search(sentence) or hedged(sentence):
        return False
    words = text_key(_OPENERS.sub("", clean(sentence))).split()
    if "and" in words and "and" not in key:
        return False
    n = len(key)
    if words[:n] == key:
        return True
    return len(words) > n and words[-n:] == key and words[-n - 1] in _COPULAS


def hedged(s: str) -> bool:
    """ "12 or 13", "12 \\text{ or } 13", "either 4 or 5": more than one answer offered."""
    return bool(re.search(r"\S\s+(?:or|and/or)\s+\S", clean(s), re.I))
