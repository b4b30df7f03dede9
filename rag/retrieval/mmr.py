"""Maximal marginal relevance: the one implementation, used to diversify papers
(retrieval) and sentences (the extractive summary)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def mmr_select(
    sims: np.ndarray,
    relevance: Sequence[float],
    k: int,
    lam: float,
    *,
    admit: Callable[[int, float], bool] | None = None,
    on_pick: Callable[[int], None] | None = None,
    chosen: Sequence[int] = (),
) -> list[int]:
    """Up to `k` indices, each maximising `lam * relevance - (1 - lam) * similarity
    to those already chosen`. `sims` is the pairwise similarity matrix; `admit(i,
    sim)` can refuse a candidate given its similarity to the chosen ones (a
    redundancy cap, a per-group quota that `on_pick` keeps count of). Ties go to
    the more relevant candidate. `chosen`: indices already taken (they count
    towards `k` and are returned first)."""
    order = sorted(range(len(relevance)), key=lambda i: relevance[i], reverse=True)
    chosen = list(chosen)
    while len(chosen) < k:
        best, best_val = None, -np.inf
        for i in order:
            if i in chosen:
                continue
            sim = max((float(sims[i][j]) for j in chosen), default=0.0)
            if admit is not None and not admit(i, sim):
                continue
            val = lam * relevance[i] - (1 - lam) * sim
            if val > best_val:
                best, best_val = i, val
        if best is None:
            break
        chosen.append(best)
        if on_pick is not None:
            on_pick(best)
    return chosen


def mmr_order(vectors: list[np.ndarray], relevance: list[float], k: int, lam: float) -> list[int]:
    """MMR over vectors (cosine similarity) with relevance scaled to [0, 1]."""
    if not vectors:
        return []
    mat = np.vstack(vectors)
    mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    rel = np.asarray(relevance, dtype=float)
    if rel.max() > rel.min():
        rel = (rel - rel.min()) / (rel.max() - rel.min())
    return mmr_select(mat @ mat.T, rel.tolist(), k, lam)
