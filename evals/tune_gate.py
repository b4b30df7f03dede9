"""Tune the relevance gate on the dev set instead of by hand.

The gate passes a question when `dense_top + w * coverage >= t`. For every
dev question this computes the two features once, then searches (w, t) for
the rule with the most right decisions (answer the answerable, refuse the
unanswerable), breaking ties by fewer wrong refusals and then by the widest
margin. Leave-one-out accuracy says how well the rule carries to questions
it was not tuned on.

    python -m evals.tune_gate [--dataset evals/data/dev.jsonl]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evals.dataset import DEV_SET, load_dataset
from ingest.job import IngestJob
from rag.chain import build_chain
from rag.settings import SAMPLE_CORPUS as SAMPLE
from rag.settings import Settings

WEIGHTS = np.round(np.arange(0.0, 2.01, 0.05), 2)


def features(rows: list[dict[str, Any]], settings: Settings) -> np.ndarray:
    chain = build_chain(settings)
    IngestJob(chain.retriever.store, chain.retriever.embeddings, settings, progress=False).run(
        [str(SAMPLE)]
    )
    out = []
    for row in rows:
        gate = chain.retriever.retrieve(row["question"]).gate
        out.append([gate["dense_top"] or 0.0, gate["coverage"]])
    return np.asarray(out)


def best_rule(x: np.ndarray, answerable: np.ndarray) -> tuple[float, float, int, int]:
    """(w, t, right decisions, wrong refusals) of the best rule on these rows."""
    best: tuple[Any, ...] = (-1, 0, 0.0, 0.0, 0.0)
    for w in WEIGHTS:
        score = x[:, 0] + w * x[:, 1]
        cuts = np.unique(score)
        # Thresholds halfway between neighbouring scores: the widest margins.
        mids = np.concatenate([[cuts[0] - 0.01], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 0.01]])
        for t in mids:
            passed = score >= t
            right = int(np.sum(passed == answerable))
            wrong_refusals = int(np.sum(~passed & answerable))
            margin = float(np.min(np.abs(score - t)))
            key = (right, -wrong_refusals, margin, -w, 0.0)
            if key[:3] > best[:3]:
                best = (*key[:3], float(w), float(t))
    right, neg_wrong, _, w, t = best
    return w, t, int(right), int(-neg_wrong)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEV_SET)
    args = parser.parse_args()
    rows = load_dataset(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        x = features(rows, Settings(data_dir=Path(tmp)))
    answerable = np.array([r["kind"] != "unanswerable" for r in rows])
    w, t, right, wrong_refusals = best_rule(x, answerable)
    loo = 0
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        wi, ti, _, _ = best_rule(x[keep], answerable[keep])
        loo += int((x[i, 0] + wi * x[i, 1] >= ti) == answerable[i])
    current = Settings().retrieval
    cur = x[:, 0] + current.gate_coverage_weight * x[:, 1] >= current.gate_threshold
    report = {
        "questions": len(rows),
        "unanswerable": int((~answerable).sum()),
        "best": {
            "gate_coverage_weight": w,
            "gate_threshold": round(t, 4),
            "accuracy": round(right / len(rows), 4),
            "wrong_refusals": wrong_refusals,
            "wrong_answers": len(rows) - right - wrong_refusals,
        },
        "leave_one_out_accuracy": round(loo / len(rows), 4),
        "current": {
            "gate_coverage_weight": current.gate_coverage_weight,
            "gate_threshold": current.gate_threshold,
            "accuracy": round(float(np.mean(cur == answerable)), 4),
            "wrong_refusals": int(np.sum(~cur & answerable)),
            "wrong_answers": int(np.sum(cur & ~answerable)),
        },
    }
    print(json.dumps(report, indent=2))
    for row, (d, c) in zip(rows, x, strict=True):
        verdict = "answer" if d + w * c >= t else "refuse"
        flag = "" if (verdict == "answer") == (row["kind"] != "unanswerable") else "  <-- wrong"
        print(f"{row['id']:>5} {row['kind']:<12} dense={d:.3f} cov={c:.3f} {verdict}{flag}")


if __name__ == "__main__":
    main()
