"""Each eval metric on small cases whose right value is known by hand."""

from __future__ import annotations

import math

import pytest

from evals.metrics import (
    citation_precision,
    citation_recall,
    citation_validity,
    contains,
    markers,
    mean,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    refusal_scores,
    words,
)


def test_recall_at_k() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"c"}, 1) == 0.0
    assert recall_at_k(ranked, {"c"}, 3) == 1.0
    assert recall_at_k(ranked, {"a", "d", "z"}, 4) == pytest.approx(2 / 3)
    assert recall_at_k([], {"a"}, 5) == 0.0
    assert recall_at_k(ranked, set(), 5) is None  # no gold: not applicable


def test_recall_counts_a_paper_once_even_if_ranked_twice() -> None:
    assert recall_at_k(["a", "a", "a", "b"], {"b"}, 2) == 1.0  # dedupe: b is 2nd


def test_mrr_at_k() -> None:
    assert mrr_at_k(["x", "y", "g"], {"g"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["g"], {"g", "h"}, 10) == 1.0
    assert mrr_at_k(["x", "y", "g"], {"g"}, 2) == 0.0
    assert mrr_at_k(["x"], [], 10) is None


def test_ndcg_at_k() -> None:
    assert ndcg_at_k(["g", "x"], {"g"}, 10) == 1.0
    # gold at rank 2 only: (1/log2 3) / (1/log2 2)
    assert ndcg_at_k(["x", "g"], {"g"}, 10) == pytest.approx(1 / math.log2(3))
    # two gold, one found at rank 1: 1 / (1 + 1/log2 3)
    assert ndcg_at_k(["g", "x"], {"g", "h"}, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["x"], {"g"}, 10) == 0.0
    assert ndcg_at_k(["x"], set(), 10) is None


def test_citation_validity() -> None:
    cited = {1: "p1", 2: "p2"}
    assert citation_validity("A [1]. B [2].", cited, {"p1", "p2"}) == 1.0
    assert citation_validity("A [1]. B [3].", cited, {"p1", "p2"}) == 0.5  # [3]: no entry
    assert citation_validity("A [2].", cited, {"p1"}) == 0.0  # p2 was not retrieved
    assert citation_validity("A [1][1]. B [4].", cited, {"p1"}) == pytest.approx(2 / 3)
    assert citation_validity("No markers.", cited, {"p1"}) is None
    assert citation_validity("", {}, set()) is None  # empty answer


def test_citation_precision_and_recall() -> None:
    assert citation_precision(["a", "b"], {"a"}) == 0.5
    assert citation_precision(["a", "a", "a"], {"a"}) == 1.0  # duplicates count once
    assert citation_precision([], {"a"}) is None
    assert citation_precision(["a"], set()) is None
    assert citation_recall(["a"], {"a", "b"}) == 0.5
    assert citation_recall([], {"a"}) == 0.0
    assert citation_recall(["a"], set()) is None


def test_refusal_scores() -> None:
    s = refusal_scores([True, True, False, False], [True, False, True, False])
    assert s == {"refusal_precision": 0.5, "refusal_recall": 0.5, "wrong_refusals": 1}
    none = refusal_scores([False, False], [False, False])
    assert none["refusal_precision"] is None and none["refusal_recall"] is None


def test_contains_and_words() -> None:
    assert contains("reaches 95.2%  accuracy", "95.2% accuracy") == 1.0
    assert contains("reaches 95.2%", "96%") == 0.0
    assert contains("", "x") == 0.0
    assert contains("anything", None) is None
    assert words("One two [1]. Three [2][3].") == 3
    assert markers("a [1] b [12][1]") == [1, 12, 1]


def test_mean_and_percentile() -> None:
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == pytest.approx(9.55)
    assert percentile([], 50) is None


def test_judge_scores_are_parsed_strictly() -> None:
    from evals.judge import parse_score

    assert parse_score("0.8") == 0.8
    assert parse_score("Score: 1") == 1.0
    assert parse_score("I'd say 0.25.") == 0.25
    assert parse_score("7/10") is None  # not a 0..1 number
    assert parse_score("no idea") is None
