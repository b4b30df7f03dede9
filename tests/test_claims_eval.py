"""The SciFact scores of `citeqa eval --dataset scifact` (evals/claims.py) on
hand-made predictions."""

from __future__ import annotations

from evals.claims import (
    Claim,
    GoldPaper,
    PaperPrediction,
    _groups,
    abstract_scores,
    gold_spans,
    nei_share,
    sentence_scores,
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
