"""Fit and check the paper-answerability model (rag/answer/answerable.py) on the dev sets.

For every answerable dev question of each named dataset (the sample and
PubMedQA), retrieval runs as in `/v1/chat` and the extractive generator scores
each retrieved paper's sentences; each (question, paper) pair becomes one row
of features, labelled by whether the paper is a gold paper. The rows are cached
(`<out>/answerability-rows.jsonl`), so refitting costs seconds.

    python -m evals.answerability [--out DIR] [--fit] [--refresh]

Reports, always from predictions on questions the model was *not* fitted on:
- 5-fold cross-validation grouped by question, over both corpora pooled;
- leave-one-corpus-out: fitted on one corpus, scored on the other;
per corpus and question kind: citation precision (kept papers that are gold)
and recall (gold papers kept). `--fit` then fits on all rows and writes the
weights to rag/answer/answerable.json. Both corpora weigh the same in the fit, so the
500 PubMedQA questions do not drown the sample's.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evals.dataset import cached_rows
from evals.fit import logistic
from rag.answer.answerable import (
    FEATURES,
    WEIGHTS,
    Evidence,
    features,
    intent,
    read_sentences,
)
from rag.answer.fitted import LinearModel
from rag.types import Source

ANSWERABLE = ("single", "multi", "fact")


def collect(name: str, out: Path) -> list[dict[str, Any]]:
    from evals.dataset import load_dataset, named
    from evals.run import CiteQA, _store_dir, file_hash
    from rag.check.support import SentenceEncoder
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    d = named(name)
    rows = [r for r in load_dataset(d.questions) if r["kind"] in ANSWERABLE]
    with _store_dir(out, file_hash(d.corpus), True) as store_dir:
        settings = Settings(data_dir=Path(store_dir), llm="extractive")
        embeddings = make_embeddings(settings)
        config = CiteQA(settings, embeddings, d.corpus)
        encoder = SentenceEncoder(embeddings)
        found = []
        for r in rows:
            # As the chain does: more papers for a question about a set of papers.
            cfg = settings.retrieval
            k = max(cfg.k, cfg.set_k) if intent(r["question"]) == "set" else cfg.k
            got = config.chain.retriever.retrieve(r["question"], k=k)
            reading = read_sentences(r["question"], got.sources, encoder, got.vector)
            evidence = reading.evidence(got.sources)
            for rank, e in enumerate(evidence):
                found.append(
                    {
                        "corpus": d.field,
                        "qid": r["id"],
                        "kind": r["kind"],
                        "intent": intent(r["question"]),
                        "rank": rank,
                        "label": int(e.source.paper_id in r["gold_paper_ids"]),
                        "n_gold": len(r["gold_paper_ids"]),
                        "evidence": {
                            "best": e.best,
                            "dense": e.source.dense,
                            "coverage": e.source.coverage,
                            "dense_rank": e.source.dense_rank,
                            "lexical_rank": e.source.lexical_rank,
                        },
                    }
                )
    return found


def _by_question(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    by_q: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_q.setdefault((r["corpus"], r["qid"]), []).append(r)
    return [sorted(g, key=lambda r: r["rank"]) for g in by_q.values()]


def _evidence(group: list[dict[str, Any]]) -> list[Evidence]:
    return [
        Evidence(
            Source(
                r["rank"] + 1,
                str(r["rank"]),
                "",
                "",
                None,
                0.0,
                float("nan") if r["evidence"]["dense"] is None else r["evidence"]["dense"],
                dense_rank=r["evidence"]["dense_rank"],
                lexical_rank=r["evidence"]["lexical_rank"],
                coverage=r["evidence"]["coverage"],
            ),
            r["evidence"]["best"],
        )
        for r in group
    ]


def with_features(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the paper model's features, computed from each question's evidence."""
    out = []
    for group in _by_question(rows):
        feats = features(_evidence(group), group[0]["intent"])
        out.extend(dict(r, features=f) for r, f in zip(group, feats, strict=True))
    return out


def fit(rows: list[dict[str, Any]], threshold: float | None = None) -> LinearModel:
    m, _ = logistic(rows, FEATURES, c=1.0)
    if threshold is None:
        threshold = best_threshold(rows, replace(m, threshold=0.5))
    return replace(m, threshold=threshold)


def kept_by_question(
    rows: list[dict[str, Any]], m: LinearModel, threshold: float | None = None
) -> dict[tuple[str, str], set[int]]:
    """The row indices each question keeps (at least its most probable paper)."""
    t = threshold if threshold is not None else m.threshold if m.threshold is not None else 0.5
    by_q: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        by_q.setdefault((r["corpus"], r["qid"]), []).append(i)
    out = {}
    for q, idx in by_q.items():
        probs = {i: m.probability(rows[i]["features"]) for i in idx}
        kept = {i for i in idx if probs[i] >= t} or {max(idx, key=probs.__getitem__)}
        out[q] = kept
    return out


def scores(rows: list[dict[str, Any]], kept: dict[tuple[str, str], set[int]]) -> dict[str, Any]:
    """Per corpus and kind: mean citation precision and recall over questions."""
    info = {(r["corpus"], r["qid"]): (r["kind"], r["n_gold"]) for r in rows}
    by: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (corpus, qid), idx in kept.items():
        kind, n_gold = info[(corpus, qid)]
        tp = sum(rows[i]["label"] for i in idx)
        precision = tp / len(idx)
        recall = tp / n_gold
        by.setdefault((corpus, kind), []).append((precision, recall))
    return {
        f"{c}/{k}": {
            "n": len(v),
            "precision": round(statistics.mean(p for p, _ in v), 3),
            "recall": round(statistics.mean(r for _, r in v), 3),
        }
        for (c, k), v in sorted(by.items())
    }


def _objective(rows: list[dict[str, Any]], kept: dict[tuple[str, str], set[int]]) -> float:
    """Mean of precision and recall per question kind (single, set, fact), each kind
    and each corpus counted once: the many single-paper questions must not buy
    their precision with the recall of the few set questions."""
    s = scores(rows, kept)
    per_corpus: dict[str, list[float]] = {}
    for key, v in s.items():
        per_corpus.setdefault(key.split("/")[0], []).append((v["precision"] + v["recall"]) / 2)
    return statistics.mean(statistics.mean(v) for v in per_corpus.values())


def best_threshold(rows: list[dict[str, Any]], m: LinearModel) -> float:
    grid = [round(t, 2) for t in np.arange(0.2, 0.81, 0.05)]
    return max(grid, key=lambda t: _objective(rows, kept_by_question(rows, m, t)))


def cross_validated(rows: list[dict[str, Any]], folds: int = 5) -> dict[str, Any]:
    qids = sorted({(r["corpus"], r["qid"]) for r in rows})
    rng = np.random.default_rng(0)
    fold_of = {q: int(f) for q, f in zip(qids, rng.permutation(len(qids)) % folds, strict=True)}
    kept: dict[tuple[str, str], set[int]] = {}
    for f in range(folds):
        train = [r for r in rows if fold_of[(r["corpus"], r["qid"])] != f]
        m = fit(train)
        test_idx = [i for i, r in enumerate(rows) if fold_of[(r["corpus"], r["qid"])] == f]
        sub = [rows[i] for i in test_idx]
        for q, idx in kept_by_question(sub, m).items():
            kept[q] = {test_idx[i] for i in idx}
    return scores(rows, kept)


def leave_one_corpus_out(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for held in sorted({r["corpus"] for r in rows}):
        train = [r for r in rows if r["corpus"] != held]
        test = [r for r in rows if r["corpus"] == held]
        out.update(scores(test, kept_by_question(test, fit(train))))
    return out


def baseline(rows: list[dict[str, Any]], top: int) -> dict[str, Any]:
    """Citing the first `top` retrieved papers, for comparison."""
    kept: dict[tuple[str, str], set[int]] = {}
    for i, r in enumerate(rows):
        if r["rank"] < top:
            kept.setdefault((r["corpus"], r["qid"]), set()).add(i)
    return scores(rows, kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.answerability", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--fit", action="store_true", help="Write rag/answer/answerable.json.")
    parser.add_argument("--refresh", action="store_true", help="Recollect the feature rows.")
    args = parser.parse_args(argv)
    every = cached_rows(
        args.out / "answerability-rows.jsonl", args.refresh, lambda name: collect(name, args.out)
    )
    rows = with_features([r for r in every if r["kind"] in ANSWERABLE])
    print(f"{len(rows)} rows, {len({(r['corpus'], r['qid']) for r in rows})} questions")
    print("top-1 retrieved:", json.dumps(baseline(rows, 1), indent=1))
    print("5-fold CV (held-out):", json.dumps(cross_validated(rows), indent=1))
    print("leave-one-corpus-out:", json.dumps(leave_one_corpus_out(rows), indent=1))
    if args.fit:
        m = fit(rows)
        WEIGHTS.write_text(json.dumps(m.to_json(), indent=1) + "\n")
        print(f"wrote {WEIGHTS} (threshold {m.threshold})")
        print("training fit:", json.dumps(scores(rows, kept_by_question(rows, m)), indent=1))


if __name__ == "__main__":
    main()
