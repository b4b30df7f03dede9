"""A fitted decision: a logistic regression over named, standardised features.

Two steps of an answer decide this way: which retrieved papers answer
(rag/answer/answerable.py) and which sentences state findings (rag/answer/roles.py). Each
keeps its weights in a JSON file beside its module, written by its fit in
`evals/` (`python -m evals.answerability --fit`, `python -m evals.roles --fit`,
both through `evals.fit.logistic`), so refitting changes no code. This module
is the one place that reads such a file and applies it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LinearModel:
    weights: dict[str, float]
    """One weight per feature, on the feature standardised by `mean` and `scale`."""
    bias: float
    mean: dict[str, float]
    scale: dict[str, float]
    threshold: float | None = None
    """The probability from which the decision is yes, for a model that decides."""

    def logits(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        z = np.full(len(rows), self.bias, dtype=np.float64)
        for f, w in self.weights.items():
            x = np.array([r[f] for r in rows], dtype=np.float64)
            z += w * (x - self.mean[f]) / self.scale[f]
        return z

    def probabilities(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(rows)))

    def probability(self, row: Mapping[str, float]) -> float:
        return float(self.probabilities([row])[0])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "features": list(self.weights),
            "weights": self.weights,
            "bias": self.bias,
        }
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out | {"mean": self.mean, "scale": self.scale}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearModel:
        threshold = data.get("threshold")
        return cls(
            weights={f: float(w) for f, w in data["weights"].items()},
            bias=float(data["bias"]),
            mean={f: float(v) for f, v in data["mean"].items()},
            scale={f: float(v) for f, v in data["scale"].items()},
            threshold=None if threshold is None else float(threshold),
        )


@cache
def load(path: Path) -> LinearModel:
    """The model in a weights file (read once)."""
    return LinearModel.from_json(json.loads(path.read_text()))
