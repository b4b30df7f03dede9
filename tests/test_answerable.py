"""Answers cite the papers that answer: sentences that read as sentences, the
fitted paper-answerability decision, and generators given only those papers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from rag.answer.answerable import (
    FEATURES,
    WEIGHTS,
    Evidence,
    answering,
    features,
    model,
    read_sentences,
    topic,
)
from rag.chain import Question, build_chain
from rag.check.support import SentenceEncoder, source_sentences
from rag.text import sentence_spans
from rag.types import Source
from tests.helpers import FakeEmbeddings

LISTY = (
    "Simplicity bias is widely invoked to explain generalization. "
    "We design datasets that (a) incorporate a precise notion of simplicity, "
    "(b) comprise multiple predictive features, and (c) capture the non-robustness "
    "of trained networks. We make four observations: (i) SB of SGD can be extreme. "
    "(ii) The extreme aspect of SB could explain why benign shifts degrade models. "
    "Our results suggest that (1) input gradients of standard models violate (A), "
    "whereas (2) input gradients of robust models satisfy (A)."
)


def test_lists_inside_abstracts_stay_whole_and_read_as_sentences() -> None:
    pieces = [LISTY[a:b] for a, b in sentence_spans(LISTY)]
    marker = re.compile(r"^\(?([a-z]|[ivx]+|\d+)\)\s")
    for piece in pieces:
        assert re.search(r"[.!?]$", piece), f"not a whole sentence: {piece!r}"
        assert not marker.match(piece), f"starts with a list marker: {piece!r}"
    assert any("(a) incorporate" in p and "(c) capture the non-robustness" in p for p in pieces)
    # An item that is a sentence of its own is quoted without its marker.
    assert "The extreme aspect of SB could explain why benign shifts degrade models." in pieces
    assert any(p.startswith("Our results suggest that (1)") and "(2) input" in p for p in pieces)


def test_a_section_label_glued_to_the_sentence_before_starts_a_sentence_without_it() -> None:
    text = (
        "Patients with HRS were not transplant candidates.AIM: To identify variables "
        "associated with survival. Rates were 5%.METHODS AND RESULTS: We enrolled 20 (n=3). "
        "RAFT: Reward rAnked FineTuning aligns models. : A Markov model was used."
    )
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Patients with HRS were not transplant candidates.",
        "To identify variables associated with survival.",
        "Rates were 5%.",
        "We enrolled 20 (n=3).",
        "RAFT: Reward rAnked FineTuning aligns models.",  # a name, not a glued label
        "A Markov model was used.",  # the source dropped the label, not its colon
    ]


def test_spans_are_trimmed_ordered_and_disjoint() -> None:
    src = Source(1, "p", "t", LISTY, None, 1.0, 1.0)
    spans = source_sentences(src)
    for s in spans:
        assert s.text.strip() == s.text and s.text
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end <= b.start, "two quoted sentences overlap"


def test_a_set_questions_topic_is_embedded_once_for_both_reads_of_its_papers() -> None:
    asked: list[str] = []

    class Counting(FakeEmbeddings):
        def embed_query(self, text: str) -> list[float]:
            asked.append(text)
            return super().embed_query(text)

    encoder = SentenceEncoder(Counting())
    question = "Which papers study simplicity bias in neural networks?"
    sources = [Source(1, "p", "t", LISTY, None, 1.0, 1.0)]
    first = read_sentences(question, sources, encoder, query_vector=[1.0] * 64)
    again = read_sentences(question, sources, encoder, query_vector=[1.0] * 64)
    # The answerability step, then the extractive summary: the topic is embedded once
    # (retrieval's vector is of the whole question, frame and all).
    assert asked == [topic(question)] and first.topical == again.topical


# -- the fitted decision -------------------------------------------------------------


def test_the_weights_file_names_exactly_the_features_computed() -> None:
    data = json.loads(WEIGHTS.read_text())
    assert tuple(data["features"]) == FEATURES
    assert 0 < data["threshold"] < 1


def _evidence(pid: str, best: float, coverage: float, rank: int) -> Evidence:
    src = Source(
        rank + 1,
        pid,
        pid,
        "",
        None,
        1.0,
        1.0,
        dense_rank=rank,
        lexical_rank=rank,
        coverage=coverage,
    )
    return Evidence(src, best)


def test_the_best_paper_always_answers_and_a_far_weaker_one_does_not() -> None:
    ev = [_evidence("strong", 0.8, 0.9, 0), _evidence("weak", 0.2, 0.1, 7)]
    assert answering(ev, "How does X work?") == ["strong"]
    only_weak = [_evidence("weak", 0.05, 0.0, 7)]
    assert answering(only_weak, "How does X work?") == ["weak"]


def test_answerability_grows_with_a_papers_evidence() -> None:
    m = model()
    probs = []
    for best in (0.3, 0.45, 0.6, 0.75):
        ev = [_evidence("top", 0.8, 0.8, 0), _evidence("other", best, best, 1)]
        probs.append(m.probability(features(ev, "single")[1]))
    assert probs == sorted(probs) and probs[-1] > probs[0]


# -- the pipeline -------------------------------------------------------------------


class Spy:
    """A model that quotes one sentence of every source it is given, citing each."""

    name = "openai"
    uses_model = True
    given: list[Source] = []

    def stream(self, question, sources, **kwargs) -> Iterator[str]:  # type: ignore[no-untyped-def]
        Spy.given = list(sources)
        for s in sources:
            sent = source_sentences(s)[-1].text.rstrip(".")
            yield f"{sent} [{s.n}]. "

    def rewrite(self, history, question, cancel=None):  # type: ignore[no-untyped-def]
        return None


def test_a_model_is_given_and_may_cite_only_the_papers_that_answer(
    sample_settings, sample_store, embeddings
) -> None:
    settings = sample_settings.model_copy(update={"llm": "openai"})
    chain = build_chain(
        settings, store=sample_store, embeddings=embeddings, generators={"openai": Spy()}
    )
    answer = chain.invoke(
        Question("Does the tendency of SGD to find simple functions hurt robustness?")
    )
    retrieved = {s["paper_id"] for s in answer.sources}
    given = {s.paper_id for s in Spy.given}
    assert given and given < retrieved, "every retrieved paper was passed on"
    assert {c.paper_id for c in answer.citations} <= given
    assert "the-pitfalls-of-simplicity-bias-in-neural-networ-9ccd8696" in given


def test_a_set_question_looks_at_more_papers(sample_chain) -> None:  # type: ignore[no-untyped-def]
    single = sample_chain.invoke(Question("How does HelixSurf reconstruct indoor scenes?"))
    many = sample_chain.invoke(Question("Which papers study learning with noisy labels?"))
    assert len(many.sources) > len(single.sources)


@pytest.mark.parametrize(
    "question",
    [
        "Which papers study learning with noisy labels?",
        "Which papers use or analyze randomized smoothing for certified robustness?",
    ],
)
def test_a_set_question_cites_several_papers(sample_chain, question) -> None:  # type: ignore[no-untyped-def]
    answer = sample_chain.invoke(Question(question))
    assert not answer.refused
    assert len({c.paper_id for c in answer.citations}) >= 2


# -- findings first -------------------------------------------------------------------

COFFEE = (
    "Whether regular coffee drinking changes the risk of kidney stones in adults is debated. "
    "We followed 4,000 adults for ten years and recorded their coffee intake with yearly "
    "questionnaires. Stones were confirmed by imaging in 212 participants. "
    "Participants drinking two or more cups a day formed stones 30% less often than those "
    "drinking none. Caffeinated beverages may thus lower nephrolithiasis incidence. "
    "The study was registered at ClinicalTrials.gov (NCT01234567)."
)


def test_a_sole_papers_answer_carries_its_conclusion_not_its_registration(embeddings) -> None:  # type: ignore[no-untyped-def]
    # The opening restates the question almost word for word; the conclusion shares
    # few of its words. The conclusion is still quoted (it is what the paper found),
    # and the closing registration line never is.
    from rag.check.support import SentenceEncoder
    from rag.generate.extractive import ExtractiveGenerator

    src = Source(1, "coffee", "Coffee and kidney stones", COFFEE, None, 1.0, 1.0)
    picked = ExtractiveGenerator(None, SentenceEncoder(embeddings)).select(
        "Does regular coffee drinking change the risk of kidney stones in adults?", [src]
    )
    texts = [s.text for s in picked]
    assert "Caffeinated beverages may thus lower nephrolithiasis incidence." in texts
    assert not any("registered" in t for t in texts)
