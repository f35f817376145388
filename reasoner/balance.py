"""B-STaR's balance (Zeng et al., "B-STaR: Monitoring and Balancing Exploration and Exploitation
in Self-Taught Reasoners", arXiv 2412.17256). Pure functions over verified probe samples.

For one query, with ``s`` responses passing the reward threshold, ``c`` of them distinct and
correct, and ``n*`` the target count of distinct correct responses (8 in the authors' code):

    balance = min(c / n*, 1) * c / s          (0 when s = 0)

averaged over the probe queries; the (temperature, threshold) with the highest mean is chosen
for the next iteration. Exploration is reported as pass@k and the mean number of distinct
correct responses; exploitation as the share of passing responses that are correct.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Response:
    query: str
    text: str
    correct: bool
    score: float = 0.0  # the reward labeller's aggregated score (0 when there is none)


def balance_score(responses: list[Response], threshold: float, target: int) -> float:
    """Mean over queries of min(c / n*, 1) * c / s (see the module docstring)."""
    by_query: dict[str, list[Response]] = {}
    for r in responses:
        by_query.setdefault(r.query, []).append(r)
    total = 0.0
    for group in by_query.values():
        passing = [r for r in group if r.score >= threshold]
        if not passing:
            continue
        c = len({r.text.strip() for r in passing if r.correct})
        total += min(c / target, 1.0) * c / len(passing)
    return total / max(len(by_query), 1)


def exploration(responses: list[Response]) -> dict[str, float]:
    """pass@k (share of queries with a correct response) and mean distinct correct responses."""
    by_query: dict[str, list[Response]] = {}
    for r in responses:
        by_query.setdefault(r.query, []).append(r)
    n = max(len(by_query), 1)
    return {
        "pass_at_k": sum(any(r.correct for r in g) for g in by_query.values()) / n,
        "distinct_correct": sum(len({r.text.strip() for r in g if r.correct}) for g in by_query.values()) / n,
    }


def exploitation(responses: list[Response], threshold: float) -> float:
    """Share of the responses passing the threshold that are correct (the reward's selection
    accuracy); 0 when none pass."""
    passing = [r for r in responses if r.score >= threshold]
    return sum(r.correct for r in passing) / len(passing) if passing else 0.0


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by the nearest-rank rule (``q = 0``: the minimum)."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("-inf")


def choose(
    by_temperature: dict[float, list[Response]], quantiles: list[float], target: int
) -> tuple[float, float, list[dict[str, float]]]:
    """The (temperature, threshold) with the best balance score, and the whole table. Candidate
    thresholds are ``quantiles`` of each temperature's scores; ties go to the first candidate
    (lower temperature, lower threshold)."""
    table = []
    for temperature, responses in sorted(by_temperature.items()):
        scores = [r.score for r in responses]
        for q in sorted(set(quantiles)):
            threshold = quantile(scores, q)
            row = {
                "temperature": temperature,
                "quantile": q,
                "threshold": threshold,
                "balance": balance_score(responses, threshold, target),
                "exploitation": exploitation(responses, threshold),
                **exploration(responses),
            }
            table.append(row)
    best = max(table, key=lambda row: row["balance"])  # max keeps the first of equal rows
    return best["temperature"], best["threshold"], table
