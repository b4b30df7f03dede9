"""Citation verification on hand-made drafts over real retrieved sources."""

from __future__ import annotations

import pytest

from rag.check.support import SentenceEncoder
from rag.check.verify import strip_markers, verify
from rag.text import sentence_spans
from rag.types import Source


def _source(n: int, title: str, abstract: str) -> Source:
    return Source(
        n=n, paper_id=f"p{n}", title=title, abstract=abstract, url=None, score=1.0, dense=0.5
    )


@pytest.fixture(scope="module")
def sources() -> list[Source]:
    return [
        _source(
            1,
            "Forests",
            "Random forests average many decision trees. "
            "We show that the ensemble behaves like an adaptive smoother whose "
            "bandwidth shrinks with more trees. Experiments use tabular regression data.",
        ),
        _source(
            2,
            "Diffusion",
            "Diffusion models generate images by denoising. "
            "We find that two networks trained on disjoint data learn nearly the same "
            "score function once the training set is large. This indicates strong "
            "generalization driven by geometry-adaptive harmonic bases.",
        ),
        _source(
            3,
            "Light",
            "Low-light images are dark and noisy. We propose to enhance them "
            "by training a network only on random noise, without any real images.",
        ),
    ]


@pytest.fixture(scope="module")
def encoder(embeddings) -> SentenceEncoder:  # type: ignore[no-untyped-def]
    return SentenceEncoder(embeddings)


def test_supported_citations_are_kept(sources, encoder) -> None:
    draft = (
        "Random forests behave like an adaptive smoother whose bandwidth shrinks as "
        "trees are added [1]."
    )
    out = verify(draft, sources, encoder)
    assert out.text == draft
    assert out.counts["kept"] == 1 and out.counts["dropped"] == 0
    (c,) = out.citations
    assert c.paper_id == "p1" and "adaptive smoother" in c.quote
    assert sources[0].abstract[c.start : c.end] == c.quote


def test_marker_to_a_missing_source_is_removed(sources, encoder) -> None:
    out = verify(
        "Low-light enhancement can be learned from random noise alone [7].", sources, encoder
    )
    assert "[7]" not in out.text
    assert out.counts["invalid"] == 1
    # The sentence is clearly supported by source 3, so it gets that marker instead.
    assert out.counts["added"] == 1 and out.citations[0].paper_id == "p3"


def test_citation_on_the_wrong_paper_moves_to_the_right_one(sources, encoder) -> None:
    out = verify(
        "Two networks trained on disjoint data learn nearly the same score function [3].",
        sources,
        encoder,
    )
    assert out.counts["moved"] == 1
    assert [c.paper_id for c in out.citations] == ["p2"]
    assert out.text.endswith("[1].")  # renumbered: the only cited source is now [1]


def test_unsupported_claim_loses_its_citation(sources, encoder) -> None:
    out = verify(
        "Bananas are a tropical fruit rich in potassium and grown in Ecuador [2].", sources, encoder
    )
    assert out.citations == []
    assert out.counts["dropped"] == 1 and "[" not in out.text


def test_renumbering_follows_first_appearance_and_merges_duplicates(sources, encoder) -> None:
    draft = (
        "Diffusion networks trained on disjoint data learn the same score function [2]. "
        "Random forests act as adaptive smoothers [1]. "
        "This points to generalization through geometry-adaptive harmonic bases [2][2]."
    )
    out = verify(draft, sources, encoder)
    assert [(c.n, c.paper_id) for c in out.citations] == [(1, "p2"), (2, "p1")]
    assert "[1][1]" not in out.text and out.text.count("[1]") == 2


def test_marker_styles_llms_write_are_understood(sources, encoder) -> None:
    for marker in ("[1, 3]", "[Source 1]", "[^1]", "[1][3]"):
        out = verify(f"Random forests behave like adaptive smoothers {marker}.", sources, encoder)
        assert [c.paper_id for c in out.citations] == ["p1"], marker
        assert strip_markers(out.text) == "Random forests behave like adaptive smoothers."


def test_short_non_claims_carry_no_citation(sources, encoder) -> None:
    out = verify("In short [1]:", sources, encoder)
    assert out.citations == [] and out.counts["dropped"] == 1


def test_quotes_are_whole_sentences_of_the_abstract(sources, encoder) -> None:
    out = verify(
        "A network trained only on random noise can enhance low-light images [3].", sources, encoder
    )
    (c,) = out.citations
    spans = sentence_spans(sources[2].abstract)
    assert c.start in {a for a, _ in spans} and c.end in {b for _, b in spans}
    # "them" in the second sentence needs the first to say what is enhanced.
    assert "Low-light" in c.quote and "random noise" in c.quote


def test_a_reported_claim_is_checked_without_the_embedder(sources) -> None:
    """The extractive answer reports "We find ..." as "The authors find ...": the
    attribution is not part of the claim, so the sentence is supported on its
    words alone (measured: a cold question's check fell from ~300 ms to ~10 ms)."""

    class NoEmbedder:
        def encode(self, texts):  # type: ignore[no-untyped-def]
            raise AssertionError(f"embedded {texts}")

    draft = (
        "The authors propose to enhance them by training a network only on random "
        "noise, without any real images [3]."
    )
    out = verify(draft, sources, NoEmbedder())  # type: ignore[arg-type]
    assert out.counts["kept"] == 1 and out.citations[0].paper_id == "p3"
    # A claim the paper does not make still goes to the embedder.
    with pytest.raises(AssertionError, match="embedded"):
        verify(
            "The authors propose to enhance them by training a network on thousands "
            "of real photographs [3].",
            sources,
            NoEmbedder(),  # type: ignore[arg-type]
        )
