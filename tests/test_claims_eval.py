"""The SciFact scores of `citeqa eval --dataset scifact` (evals/claims.py) on
hand-made predictions, its resumable sentence vectors and its sure-label bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evals.claims import (
    Claim,
    GoldPaper,
    PaperPrediction,
    SentenceVectors,
    _groups,
    abstract_scores,
    gold_spans,
    nei_share,
    sentence_scores,
    sure_bounds,
    to_gold,
)


def claims() -> list[Claim]:
    return [
        Claim(1, "a", ["p1"], {"p1": GoldPaper("CONTRADICT", [[2], [4, 5]])}),
        Claim(2, "b", ["p2"], {"p2": GoldPaper("SUPPORT", [[0]])}),
        Claim(3, "c", ["p3"], {}),
    ]


def test_abstract_and_sentence_scores() -> None:
    preds = [
        {"p1": PaperPrediction("CONTRADICT", {4, 5, 7})},  # right label, a whole set
        {"p2": PaperPrediction("CONTRADICT", {0}), "p9": PaperPrediction("SUPPORT", {1})},
        {},
    ]
    a = abstract_scores(claims(), preds)
    assert a["label_only"] == {"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4}
    assert a["label+rationale"]["precision"] == 1 / 3
    s = sentence_scores(claims(), preds)
    # predicted sentences: 3 + 1 + 1; gold sentences: 3 + 1
    assert s["selection"]["precision"] == 3 / 5 and s["selection"]["recall"] == 3 / 4
    assert s["selection+label"]["precision"] == 2 / 5  # p2's label is wrong
    # A rationale that misses part of the set scores nothing for it.
    half = [{"p1": PaperPrediction("CONTRADICT", {4})}, {}, {}]
    assert abstract_scores(claims(), half)["label+rationale"]["precision"] == 0.0
    assert sentence_scores(claims(), half)["selection"]["precision"] == 0.0
    assert nei_share(claims(), preds) == 1.0
    assert nei_share(claims(), [{}, {}, {"p3": PaperPrediction("SUPPORT", {0})}]) == 0.0


def test_unmatched_sentences_count_against_precision() -> None:
    preds = [{"p1": PaperPrediction("CONTRADICT", {2}, unmatched=1)}, {}, {}]
    assert sentence_scores(claims(), preds)["selection"]["precision"] == 1 / 2


def test_claims_sharing_a_cited_paper_share_a_group() -> None:
    g = _groups([["a"], ["b", "c"], ["c"], ["d"], ["a", "e"]])
    assert g[0] == g[4] and g[1] == g[2] and len({g[0], g[1], g[3]}) == 3


def test_gold_sentences_map_onto_our_sentence_spans() -> None:
    sents = ["First one.", "Second, longer sentence here.", "Third."]
    abstract = " ".join(sents)
    spans = gold_spans(abstract, sents)
    assert [abstract[a:b] for a, b in spans] == sents
    assert to_gold(spans[1], spans) == {1}
    assert to_gold((0, spans[1][1]), spans) == {0, 1}  # one of ours covering two


class CountingEncoder:
    """Unit vectors from text lengths; counts the texts it was asked for."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        v = np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_sentence_vectors_embed_each_paper_once_and_resume(tmp_path: Path) -> None:
    wanted = {("p1", "ours"): ["a b.", "c d e."], ("p2", "gold"): ["f."], ("p3", "ours"): []}
    enc = CountingEncoder()
    store = SentenceVectors(tmp_path, enc, "model")
    store.fill(wanted, log=lambda _: None, papers_per_call=1)
    assert sorted(enc.seen) == ["a b.", "c d e.", "f."]
    assert store.get(("p1", "ours"), ["a b.", "c d e."]).shape == (2, 2)
    # A new run (a killed one resumed) reads the shards and embeds only what changed.
    again = CountingEncoder()
    resumed = SentenceVectors(tmp_path, again, "model")
    resumed.fill({**wanted, ("p2", "gold"): ["f changed."]}, log=lambda _: None)
    assert again.seen == ["f changed."]
    np.testing.assert_allclose(
        resumed.get(("p1", "ours"), ["a b.", "c d e."]),
        store.get(("p1", "ours"), ["a b.", "c d e."]),
    )
    # Another embedding model keeps its own vectors.
    other = CountingEncoder()
    SentenceVectors(tmp_path, other, "another model").fill(wanted, log=lambda _: None)
    assert len(other.seen) == 3


def test_sure_bounds_are_where_held_out_labels_are_right_often_enough() -> None:
    rng = np.random.default_rng(0)
    prob = rng.uniform(0, 1, 2000)
    gold = (rng.uniform(0, 1, 2000) < prob).astype(int)  # calibrated: P(contradicts) = prob
    b = sure_bounds(gold, prob, precision=0.9, least=30)
    assert b["contradicts_precision"] >= 0.9 and b["supports_precision"] >= 0.9
    assert 0.0 < b["supports_below"] < 0.5 < b["contradicts_from"] < 1.0
    # A model no better than chance is never sure: no note can follow from it.
    flat = sure_bounds(rng.integers(0, 2, 2000), prob, precision=0.9, least=30)
    assert flat["supports_below"] == 0.0 and flat["contradicts_from"] > 1.0


def test_point_labels_read_yes_no_questions_only(tmp_path: Path) -> None:
    from evals.claims import point_labels

    rows = [
        {"question": "Does aspirin reduce stroke?", "conclusion": "Aspirin reduced stroke.",
         "decision": "yes"},
        {"question": "Does zinc shorten colds?", "conclusion": "Zinc did not shorten colds.",
         "decision": "no"},
        {"question": "Is coffee harmful?", "conclusion": "Unclear.", "decision": "maybe"},
        {"question": "What is known about tea?", "conclusion": "Tea is drunk.", "decision": "yes"},
    ]  # fmt: skip
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = point_labels(path, threads=1)
    assert out["points"] == 2 and out["contradicted_share"] == 0.5
    assert 0.0 <= out["accuracy_at_0.5"] <= 1.0
    assert set(out["sure"]) >= {"supports_below", "contradicts_from"}
