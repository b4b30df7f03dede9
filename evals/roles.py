"""Fit and check the sentence-role model (rag/answer/roles.py): does a sentence state a
finding (a contribution, a result, a conclusion) or its setting?

    python -m evals.roles            # held-out figures for each feature set
    python -m evals.roles --fit      # also write rag/answer/roles.json

The sentences are those of `evals/data/roles-{sample,pubmedqa}.jsonl`, every
sentence of 61 machine-learning and 60 PubMed abstracts labelled with its role
by reading (`evals/data/roles.md`). Figures are held out two ways: by paper
within each corpus (5 folds; no paper's sentences on both sides) and across
corpora (fitted on one field's sentences, scored on the other's), since users
bring corpora of fields nobody labelled. Each corpus weighs the same in a fit.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.dataset import ROLE_FILES
from evals.fit import logistic
from evals.metrics import FINDING_ROLES
from rag.answer.fitted import LinearModel
from rag.answer.roles import FEATURES, WEIGHTS, cue_features

FEATURE_SETS = ("cues", "cues+embedding")
C_GRID = (0.03, 0.1, 0.3, 1.0)
# The shipped model: cues and place, no embedding. The embedding adds a little
# within a field and costs more across fields (the held-out figures: AUC 0.80 and
# 0.82 across corpora against 0.84 and 0.94 without it); a user's corpus is
# usually of a field nobody labelled.
FIT_C = 0.1


def labelled() -> list[dict[str, Any]]:
    """Every labelled sentence, with its corpus and its cue and place features."""
    rows = []
    for corpus, path in ROLE_FILES.items():
        raw = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
        count: dict[str, int] = {}
        for r in raw:
            count[r["paper_id"]] = count.get(r["paper_id"], 0) + 1
        for r in raw:
            rows.append(
                dict(
                    r,
                    corpus=corpus,
                    label=int(r["role"] in FINDING_ROLES),
                    features=cue_features(r["text"], r["i"], count[r["paper_id"]]),
                )
            )
    return rows


def vectors(rows: list[dict[str, Any]]) -> np.ndarray:
    """The sentences' unit vectors from the embedding model citeqa answers with."""
    from rag.check.support import SentenceEncoder
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    return SentenceEncoder(make_embeddings(Settings())).encode([r["text"] for r in rows])


@dataclass(frozen=True)
class WithEmbedding:
    """The cue model plus weights on the sentence's unit vector: a feature set the
    held-out figures compare with the shipped one, not shipped (see `FIT_C`)."""

    cues: LinearModel
    embedding: np.ndarray

    def probabilities(self, rows: list[dict[str, float]], vecs: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.cues.logits(rows) + vecs @ self.embedding)))


def fit(
    rows: list[dict[str, Any]], vecs: np.ndarray | None, c: float = 1.0
) -> LinearModel | WithEmbedding:
    """A logistic regression on the rows' cues and place (and their vectors, if
    given); each corpus weighs the same."""
    m, embedding = logistic(rows, FEATURES, c, extra=vecs)
    return m if embedding is None else WithEmbedding(m, embedding)


def predict(
    m: LinearModel | WithEmbedding, rows: list[dict[str, Any]], vecs: np.ndarray | None
) -> np.ndarray:
    features = [r["features"] for r in rows]
    if isinstance(m, WithEmbedding):
        assert vecs is not None
        return m.probabilities(features, vecs)
    return m.probabilities(features)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The chance that a finding scores above a non-finding (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def scored(rows: list[dict[str, Any]], probs: np.ndarray) -> dict[str, Any]:
    y = np.array([r["label"] for r in rows])
    by_role: dict[str, list[float]] = {}
    for r, p in zip(rows, probs, strict=True):
        by_role.setdefault(r["role"], []).append(float(p))
    return {
        "n": len(rows),
        "auc": round(auc(y, probs), 3),
        "accuracy": round(float(((probs >= 0.5) == (y == 1)).mean()), 3),
        "mean_p_by_role": {k: round(float(np.mean(v)), 3) for k, v in sorted(by_role.items())},
    }


def _folds(rows: list[dict[str, Any]], k: int = 5) -> list[int]:
    papers = sorted({(r["corpus"], r["paper_id"]) for r in rows})
    fold = {p: i % k for i, p in enumerate(papers)}
    return [fold[(r["corpus"], r["paper_id"])] for r in rows]


def held_out(
    rows: list[dict[str, Any]], vecs: np.ndarray | None, c: float, k: int = 5
) -> dict[str, Any]:
    """Scores by paper fold within both corpora, and across corpora."""
    folds = np.array(_folds(rows, k))
    probs = np.zeros(len(rows))
    for f in range(k):
        train, test = folds != f, folds == f
        m = fit([r for r, t in zip(rows, train, strict=True) if t], _take(vecs, train), c)
        probs[test] = predict(
            m, [r for r, t in zip(rows, test, strict=True) if t], _take(vecs, test)
        )
    out: dict[str, Any] = {}
    for corpus in ROLE_FILES:
        mask = np.array([r["corpus"] == corpus for r in rows])
        out[f"{corpus} (by paper)"] = scored(
            [r for r, t in zip(rows, mask, strict=True) if t], probs[mask]
        )
        m = fit([r for r, t in zip(rows, ~mask, strict=True) if t], _take(vecs, ~mask), c)
        test = [r for r, t in zip(rows, mask, strict=True) if t]
        out[f"{corpus} (fitted on the other corpus)"] = scored(
            test, predict(m, test, _take(vecs, mask))
        )
    return out


def _take(vecs: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if vecs is None else vecs[mask]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help=f"write {WEIGHTS}")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--only",
        choices=sorted(ROLE_FILES),
        help="fit on this corpus's sentences only (to score answers on the other one held out)",
    )
    parser.add_argument("--to", type=Path, default=WEIGHTS, help="where --fit writes")
    args = parser.parse_args(argv)
    rows = labelled()
    if args.only:
        rows = [r for r in rows if r["corpus"] == args.only]
    vecs = vectors(rows) if not args.only else None
    report: dict[str, Any] = {}
    for name in FEATURE_SETS if not args.only else ():
        for c in C_GRID:
            figures = held_out(rows, vecs if "embedding" in name else None, c)
            report[f"{name}, C={c}"] = figures
            line = "  ".join(
                f"{k}: auc {v['auc']:.3f} acc {v['accuracy']:.3f}" for k, v in figures.items()
            )
            print(f"{name:16} C={c:<5} {line}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if args.fit:
        m = fit(rows, None, FIT_C)
        assert isinstance(m, LinearModel)
        args.to.write_text(json.dumps(m.to_json(), indent=1) + "\n")
        print(f"wrote {args.to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
