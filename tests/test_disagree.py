"""Chat's note when the papers an answer cites disagree on its point
(rag/check/disagree.py, called from rag/chain.py's finish), on hand-made papers
with the real embedding model and the shipped claim models.

The shipped models are never sure of a label (SciFact's held-out figures,
docs/claims.md), so the mechanism is tested with their weights and sure bounds
set by hand; with the shipped bounds there is never a note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.check.disagree import note, point_of, sides
from rag.check.support import SentenceEncoder
from rag.claims import ClaimModels, load_models
from rag.types import Citation, Source

TOPICS = [
    ("aspirin", "stroke"),
    ("metformin", "cardiovascular death"),
    ("vitamin D supplementation", "hip fracture"),
    ("statin therapy", "dementia"),
    ("exercise training", "depression"),
]


def abstract(drug: str, outcome: str, works: bool) -> str:
    d = drug[0].upper() + drug[1:]
    finding = (
        f"{d} significantly reduced the risk of {outcome} compared with placebo."
        if works
        else f"{d} did not reduce the risk of {outcome}; there was no significant "
        "difference from placebo."
    )
    conclusion = (
        f"{d} reduces the risk of {outcome}."
        if works
        else f"{d} does not reduce the risk of {outcome}."
    )
    return (
        f"Background: {outcome[0].upper() + outcome[1:]} is common in older adults. "
        f"Methods: We randomly assigned 2,000 adults to {drug} or placebo for five years. "
        f"Results: {finding} Conclusions: {conclusion}"
    )


def paper(n: int, drug: str, outcome: str, works: bool) -> Source:
    return Source(n, f"p{n}", f"{drug} and {outcome}: trial {n}", abstract(drug, outcome, works),
                  None, 1.0, 0.5)  # fmt: skip


def cite(src: Source) -> Citation:
    quote = src.abstract.split("Results: ")[1].split(" Conclusions:")[0]
    start = src.abstract.index(quote)
    return Citation(n=src.n, paper_id=src.paper_id, title=src.title, url=None, quote=quote,
                    start=start, end=start + len(quote))  # fmt: skip


@pytest.fixture(scope="module")
def encoder(embeddings) -> SentenceEncoder:  # type: ignore[no-untyped-def]
    return SentenceEncoder(embeddings)


def sure_models() -> ClaimModels:
    """The shipped weights with bounds that call these hand-made papers sure."""
    m = load_models()
    return ClaimModels(
        m.rationale, m.contradicts, {"supports_below": 0.45, "contradicts_from": 0.5}
    )


SLOW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(topic=st.sampled_from(TOPICS), first_works=st.booleans())
def test_papers_that_disagree_are_named_on_both_sides(
    encoder: SentenceEncoder, topic: tuple[str, str], first_works: bool
) -> None:
    drug, outcome = topic
    papers = [paper(1, drug, outcome, first_works), paper(2, drug, outcome, not first_works)]
    question = f"Does {drug} reduce the risk of {outcome}?"
    d = sides(question, [cite(p) for p in papers], papers, encoder, sure_models())
    assert d is not None
    yes, no = (1, 2) if first_works else (2, 1)
    assert d.supports == [yes] and d.contradicts == [no]
    assert {p.paper_id for p in d.papers} == {"p1", "p2"}
    text = note(d)
    assert f"[{yes}]" in text and f"[{no}]" in text


@SLOW
@given(topic=st.sampled_from(TOPICS), works=st.booleans())
def test_papers_that_agree_get_no_note(
    encoder: SentenceEncoder, topic: tuple[str, str], works: bool
) -> None:
    drug, outcome = topic
    papers = [paper(1, drug, outcome, works), paper(2, drug, outcome, works)]
    question = f"Does {drug} reduce the risk of {outcome}?"
    assert sides(question, [cite(p) for p in papers], papers, encoder, sure_models()) is None


def test_no_note_without_a_point_one_paper_or_sure_models(encoder: SentenceEncoder) -> None:
    drug, outcome = TOPICS[0]
    papers = [paper(1, drug, outcome, True), paper(2, drug, outcome, False)]
    cites = [cite(p) for p in papers]
    question = f"Does {drug} reduce the risk of {outcome}?"
    # An open question has no side to take.
    assert sides(f"What is known about {drug} and {outcome}?", cites, papers, encoder,
                 sure_models()) is None  # fmt: skip
    # One paper cited: nobody to disagree with.
    assert sides(question, cites[:1], papers, encoder, sure_models()) is None
    # The shipped bounds: never sure (SciFact, held out), so never a note.
    assert load_models().sure is not None
    assert sides(question, cites, papers, encoder) is None


def test_the_point_of_a_question() -> None:
    assert point_of("Does aspirin reduce the risk of stroke?") == (
        "Does aspirin reduce the risk of stroke"
    )
    assert point_of("Statins reduce hip fractures.") == "Statins reduce hip fractures"
    assert point_of("Landolt C and Snellen E acuity: differences in amblyopia?") is not None
    for open_question in ("What is LoRA?", "Which papers study noisy labels?", "How does it work?"):
        assert point_of(open_question) is None
    assert point_of("  ") is None


def test_a_chat_answer_whose_cited_papers_disagree_says_so(tmp_path: Path, embeddings) -> None:  # type: ignore[no-untyped-def]
    """End to end over a two-paper store: the note closes the answer, its markers are
    the answer's citations, and `disagreement` says the same; with the shipped models
    the same answer carries no note."""
    from ingest.job import IngestJob
    from rag.chain import Question, build_chain
    from rag.index.store import open_store
    from rag.settings import Settings

    drug, outcome = TOPICS[0]
    corpus = tmp_path / "trials.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": f"trial-{i}", "title": f"{drug} and {outcome}: trial {i}",
                        "abstract": abstract(drug, outcome, works)}) + "\n"
            for i, works in ((1, True), (2, False))
        )
    )  # fmt: skip
    s = Settings(data_dir=tmp_path / "data")
    store = open_store(s)
    IngestJob(store, embeddings, s, progress=False).run([str(corpus)])
    chain = build_chain(s, store=store, embeddings=embeddings)
    question = Question(f"Does {drug} reduce the risk of {outcome}?")
    plain = chain.invoke(question)
    assert plain.disagreement is None and "disagree" not in plain.answer
    chain.parts.claims = sure_models()
    a = chain.invoke(question)
    cited = {c.paper_id for c in a.citations}
    if len(cited) < 2:
        pytest.skip(f"the answer cites {sorted(cited)} only: {question.question!r}")
    assert a.disagreement is not None
    by_n = {c.n: c.paper_id for c in a.citations}
    assert [by_n[n] for n in a.disagreement.supports] == ["trial-1"]
    assert [by_n[n] for n in a.disagreement.contradicts] == ["trial-2"]
    assert a.answer.endswith(note(a.disagreement))
    assert a.to_json()["disagreement"]["point"] == a.disagreement.point
