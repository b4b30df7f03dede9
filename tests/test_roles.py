"""Sentence roles: the labelled sentences (evals/data/roles-*.jsonl) line up with
the abstracts as citeqa splits them, the shipped model (rag/answer/roles.json) is the
fit of those labels and tells findings from their setting in a field it was not
fitted on, and `citeqa eval` reads which roles an answer quotes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evals import dataset as D
from evals import metrics as M
from evals.roles import FIT_C, auc, fit, held_out, labelled
from ingest.loaders import load
from rag.answer.fitted import LinearModel
from rag.answer.roles import FEATURES, cue_features, finding_probability, model
from rag.check.support import SourceSentence
from rag.text import sentence_spans
from rag.types import Source


def _sentence(abstract: str, text: str) -> SourceSentence:
    src = Source(n=1, paper_id="p", title="t", abstract=abstract, url=None, score=1, dense=1)
    start = abstract.index(text)
    return SourceSentence(src, start, start + len(text))


def _p(abstract: str, text: str) -> float:
    return float(finding_probability([_sentence(abstract, text)])[0])


@pytest.mark.parametrize("corpus", sorted(D.ROLE_FILES))
def test_the_labels_cover_every_sentence_of_their_abstracts_as_citeqa_splits_them(
    corpus: str,
) -> None:
    """A change to the sentence splitter must come with relabelled sentences."""
    if not D.DATASETS[corpus].corpus.is_file():
        pytest.skip(f"no {corpus} corpus at {D.DATASETS[corpus].corpus}")
    rows = [json.loads(line) for line in D.ROLE_FILES[corpus].open(encoding="utf-8")]
    papers = {p.paper_id: p for _, p in load(str(D.DATASETS[corpus].corpus)) if hasattr(p, "title")}
    by_paper: dict[str, list[dict]] = {}
    for r in rows:
        assert r["role"] in M.ROLES, r
        by_paper.setdefault(r["paper_id"], []).append(r)
    assert len(by_paper) >= 60
    for pid, own in by_paper.items():
        abstract = papers[pid].abstract
        spans = sentence_spans(abstract)
        assert [(r["start"], r["end"]) for r in own] == list(spans), pid
        assert all(abstract[r["start"] : r["end"]] == r["text"] for r in own)
        assert [r["i"] for r in own] == list(range(len(spans)))
    # Both kinds are there in numbers: findings and their setting.
    roles = [r["role"] for r in rows]
    assert 0.3 < sum(r in M.FINDING_ROLES for r in roles) / len(roles) < 0.7


def test_the_shipped_weights_are_the_fit_of_the_labels() -> None:
    """Refitting (`python -m evals.roles --fit`) on the committed labels gives the
    committed weights: no hand-edited number hides in roles.json."""
    fitted = fit(labelled(), None, FIT_C)
    shipped = model()
    assert isinstance(fitted, LinearModel)
    assert set(shipped.weights) == set(FEATURES)
    for f in FEATURES:
        assert fitted.weights[f] == pytest.approx(shipped.weights[f], abs=1e-6)
    assert fitted.bias == pytest.approx(shipped.bias, abs=1e-6)


def test_findings_are_told_from_their_setting_in_a_field_the_model_was_not_fitted_on() -> None:
    rows = labelled()
    figures = held_out(rows, None, FIT_C)
    for corpus in D.ROLE_FILES:
        other = figures[f"{corpus} (fitted on the other corpus)"]
        assert other["auc"] >= 0.8, (corpus, other)
        # Motivation is the role an answer must not quote: it scores below every finding role.
        p = other["mean_p_by_role"]
        assert p["background"] < min(p[r] for r in M.FINDING_ROLES if r in p)
    # And, scored on a field it was not fitted on, the fit beats the factors the
    # generator used before it (set by hand, on the same cues and place), per corpus.
    hand = {
        "finding_cue": 1.08,
        "background_cue": 0.8,
        "aim_cue": 0.75,
        "method_cue": 0.9,
        "future_cue": 0.75,
        "conclusion_cue": 1.08,
        "opening": 0.9,
        "closing": 1.25,
    }
    for corpus in D.ROLE_FILES:
        own = [r for r in rows if r["corpus"] == corpus]
        y = np.array([r["label"] for r in own])
        by_hand = np.array(
            [np.prod([w for f, w in hand.items() if r["features"][f]] or [1.0]) for r in own]
        )
        assert figures[f"{corpus} (fitted on the other corpus)"]["auc"] > auc(y, by_hand) + 0.05


def test_findings_and_conclusions_outrank_aims_and_methods() -> None:
    abstract = (
        "The aim of this study was to assess whether early mobilisation shortens recovery. "
        "Forty patients were enrolled and randomised to two arms. "
        "Early mobilisation shortened recovery by three days on average. "
        "These results suggest that early mobilisation should be routine."
    )
    aim, method, finding, conclusion = (
        _p(abstract, s.strip() + ".") for s in abstract.split(".")[:4]
    )
    assert conclusion > finding > 0.5 > method > aim


def test_a_closing_call_for_further_study_is_not_taken_for_the_finding() -> None:
    abstract = (
        "Recovery after surgery is slow. "
        "Early mobilisation reduced recovery time by three days on average. "
        "Further studies with larger and more diverse cohorts are recommended."
    )
    finding, future = (_p(abstract, s.strip() + ".") for s in abstract.split(".")[1:3])
    assert future < 0.5 < finding  # though the abstract's last sentence
    # In the same place, motivation scores below a finding.
    background = "Bed rest has been considered key to recovery."
    found = "Bed rest reduced recovery time by two days."
    assert _p(f"Recovery varies. {background} It helped.", background) < _p(
        f"Recovery varies. {found} It helped.", found
    )


def test_the_features_read_the_sentences_place_in_its_abstract() -> None:
    assert cue_features("We show that it works.", 0, 5)["opening"] == 1.0
    last = cue_features("Overall, it works.", 4, 5)
    assert last["closing"] == 1.0 and last["place"] == 1.0 and last["conclusion_cue"] == 1.0
    assert cue_features("A lone sentence.", 0, 1)["place"] == 0.0


# -- which roles an answer quotes (evals.metrics) --------------------------------------


LABELLED = [
    ("Deep networks generalise well despite their size.", "background"),
    ("We study why with a new coherence metric.", "aim"),
    ("We show that coherent gradients explain generalisation on real data.", "result"),
]


def test_a_quote_is_found_under_the_summarys_rewording() -> None:
    summary = (
        "“Coherent Gradients”: The authors show that coherent gradients explain "
        "generalisation on real data [1]."
    )
    assert M.quoted_role(summary, LABELLED) == "result"
    assert M.quoted_role("Deep networks generalise well despite their size [2].", LABELLED) == (
        "background"
    )
    # A model's paraphrase quotes no labelled sentence.
    assert M.quoted_role("Gradients that agree make networks generalise [1].", LABELLED) is None


def test_role_scores() -> None:
    assert M.role_scores(["background", None, "result", "conclusion"]) == {
        "finding_share": 2 / 3,
        "background_share": 1 / 3,
        "opens_with_finding": 0.0,
    }
    assert M.role_scores([None])["finding_share"] is None


def test_an_answer_dangles_when_it_quotes_a_sentence_without_the_one_it_refers_to() -> None:
    roles = {
        "p": [
            ("We decompose the objective into bias and variance.", "design"),
            ("This decomposition explains why networks overfit.", "result"),
            ("It is concluded that compression helps.", "conclusion"),
            ("This study used four benchmarks.", "design"),
        ]
    }
    assert M.dangling([("p", 1)], roles) == 1.0
    assert M.dangling([("p", 0), ("p", 1)], roles) == 0.0
    assert M.dangling([("p", 1), ("p", 0)], roles) == 1.0  # given, but after it
    assert M.dangling([("p", 2), ("p", 3), None], roles) == 0.0
    assert M.dangling([None], roles) is None
