"""The fitted decisions' one model type (rag/answer/fitted.py) and their one fit
(evals/fit.py): the shipped weight files read and write back unchanged, each
corpus weighs the same in a fit, and extra columns' standardisation folds into
their weights exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evals.fit import corpus_weights, logistic
from rag.answer import answerable, roles
from rag.answer.fitted import LinearModel


@pytest.mark.parametrize("path", [answerable.WEIGHTS, roles.WEIGHTS])
def test_the_shipped_weight_files_read_and_write_back_unchanged(path) -> None:
    text = path.read_text()
    m = LinearModel.from_json(json.loads(text))
    assert json.dumps(m.to_json(), indent=1) + "\n" == text


def test_a_probability_is_the_logistic_of_the_standardised_features() -> None:
    m = LinearModel({"a": 2.0, "b": -1.0}, 0.5, {"a": 1.0, "b": 0.0}, {"a": 2.0, "b": 4.0})
    row = {"a": 3.0, "b": 2.0}
    z = 0.5 + 2.0 * (3.0 - 1.0) / 2.0 - 1.0 * (2.0 - 0.0) / 4.0
    assert m.probability(row) == pytest.approx(1 / (1 + math.exp(-z)))
    assert m.probabilities([row, row]).tolist() == pytest.approx([m.probability(row)] * 2)
    assert m.threshold is None and "threshold" not in m.to_json()


def _rows(rng: np.random.Generator, corpus: str, n: int, shift: float) -> list[dict]:
    x = rng.normal(shift, 1.0, n)
    return [
        {
            "corpus": corpus,
            "features": {"x": float(v)},
            "label": int(v + rng.normal(0, 0.5) > shift),
        }
        for v in x
    ]


def test_each_corpus_weighs_the_same_whatever_its_size() -> None:
    rows = [{"corpus": "big"}] * 30 + [{"corpus": "small"}] * 10
    w = corpus_weights(rows)
    assert w[:30].sum() == pytest.approx(w[30:].sum()) and w.mean() == pytest.approx(1.0)


def test_extra_columns_are_read_raw_with_their_standardisation_folded_in() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    rows = _rows(rng, "a", 60, 0.0) + _rows(rng, "b", 20, 3.0)
    extra = rng.normal(5.0, 3.0, (len(rows), 2))
    m, e = logistic(rows, ["x"], 1.0, extra=extra)
    assert e is not None and e.shape == (2,)
    mine = 1 / (1 + np.exp(-(m.logits([r["features"] for r in rows]) + extra @ e)))
    # The same fit on the standardised columns directly.
    x = np.hstack([np.array([[r["features"]["x"]] for r in rows]), extra])
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    clf = LogisticRegression(C=1.0, max_iter=5000)
    clf.fit(z, [r["label"] for r in rows], sample_weight=corpus_weights(rows))
    assert mine == pytest.approx(clf.predict_proba(z)[:, 1], abs=1e-9)
    # Without extra columns: the model of the named features alone.
    alone, none = logistic(rows, ["x"], 1.0)
    assert none is None and set(alone.weights) == {"x"} and alone.weights["x"] > 0
