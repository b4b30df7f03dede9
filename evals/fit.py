"""The one way citeqa fits its decisions (rag/answer/fitted.py): a logistic regression on
standardised features in which each dev corpus weighs the same, so that 500
PubMedQA questions do not drown the sample's 128 and the weights serve a field
that is neither. `evals.answerability` and `evals.roles` fit through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.answer.fitted import LinearModel


def corpus_weights(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """A weight per row such that each corpus sums to the same (mean weight 1)."""
    per: dict[str, int] = {}
    for r in rows:
        per[r["corpus"]] = per.get(r["corpus"], 0) + 1
    return np.array([len(rows) / (len(per) * per[r["corpus"]]) for r in rows])


def _standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    return (x - mean) / scale, mean, scale


def logistic(
    rows: Sequence[dict[str, Any]],
    features: Sequence[str],
    c: float,
    extra: np.ndarray | None = None,
) -> tuple[LinearModel, np.ndarray | None]:
    """Fit P(`label`) on each row's named `features` (and on `extra` columns, row
    for row, if given). Returns the model of the named features and the extra
    columns' weights on their raw values, their standardisation folded into those
    weights and into the model's bias (None without extra columns)."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([[r["features"][f] for f in features] for r in rows], dtype=float)
    parts, mean, scale = [], [], []
    for block in (x, extra) if extra is not None else (x,):
        z, m, s = _standardised(np.asarray(block, dtype=float))
        parts.append(z)
        mean.append(m)
        scale.append(s)
    y = np.array([r["label"] for r in rows])
    clf = LogisticRegression(C=c, max_iter=5000)
    clf.fit(np.hstack(parts), y, sample_weight=corpus_weights(rows))
    coef, bias = clf.coef_[0], float(clf.intercept_[0])
    extra_weights = None
    if extra is not None:
        extra_weights = coef[len(features) :] / scale[1]
        bias -= float(extra_weights @ mean[1])
    model = LinearModel(
        weights={f: float(v) for f, v in zip(features, coef[: len(features)], strict=True)},
        bias=bias,
        mean={f: float(v) for f, v in zip(features, mean[0], strict=True)},
        scale={f: float(v) for f, v in zip(features, scale[0], strict=True)},
    )
    return model, extra_weights
