"""Conversions between formats: ranked or scored lists -> pairwise, pairwise -> unpaired.

Ranked input: ``{"prompt": ..., "completions": [best, ..., worst]}`` (list order is the rank),
or with ``"scores": [s1, s2, ...]`` (higher is better; ties give no pair).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from align.data.io import DataError, Record, describe

PAIRINGS = ("best-worst", "adjacent", "all")


def ranked_to_pairwise(records: list[Record], file: str, pairs: str = "best-worst"
                       ) -> tuple[list[dict[str, Any]], list[DataError]]:
    """Turn each ranked record into preference pairs.

    ``pairs``: ``best-worst`` (one pair: top vs bottom), ``adjacent`` (rank i vs i+1),
    ``all`` (every ordered pair, n(n-1)/2 per record). Returns ``(rows, errors)``.
    """
    if pairs not in PAIRINGS:
        raise ValueError(f"--pairs {pairs!r} is not valid; choose from [{', '.join(PAIRINGS)}]")
    rows, errors = [], []
    for rec in records:
        data = rec.data
        completions = data.get("completions")
        if not isinstance(completions, list) or len(completions) < 2:
            errors.append(DataError(file, rec.position, "completions",
                                    f"expected a list of at least 2 completions, "
                                    f"found {describe(completions)}"))
            continue
        scores = data.get("scores")
        if scores is not None:
            if (not isinstance(scores, list) or len(scores) != len(completions)
                    or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in scores)):
                errors.append(DataError(file, rec.position, "scores",
                                        f"expected {len(completions)} numbers (one per "
                                        f"completion), found {describe(scores)}"))
                continue
            order = sorted(range(len(completions)), key=lambda i: -scores[i])
        else:
            order = list(range(len(completions)))
        ranked = [completions[i] for i in order]
        ranked_scores = [scores[i] for i in order] if scores is not None else None
        if pairs == "best-worst":
            index_pairs = [(0, len(ranked) - 1)]
        elif pairs == "adjacent":
            index_pairs = [(i, i + 1) for i in range(len(ranked) - 1)]
        else:
            index_pairs = list(combinations(range(len(ranked)), 2))
        extra = {k: v for k, v in data.items() if k not in ("prompt", "completions", "scores")}
        for hi, lo in index_pairs:
            if ranked_scores is not None and ranked_scores[hi] == ranked_scores[lo]:
                continue  # a tie carries no preference
            row = {"prompt": data.get("prompt"), "chosen": ranked[hi], "rejected": ranked[lo]}
            if ranked_scores is not None:
                row["margin"] = float(ranked_scores[hi] - ranked_scores[lo])
            rows.append({**extra, **row})
    return rows, errors


def pairwise_to_unpaired(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split each validated pair into a desirable and an undesirable KTO example."""
    out = []
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in ("chosen", "rejected", "margin")}
        out.append({**extra, "completion": row["chosen"], "label": True})
        out.append({**extra, "completion": row["rejected"], "label": False})
    return out
