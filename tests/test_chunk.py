"""Chunking: exact offsets, sentence boundaries, overlap, the title in what is embedded."""

from __future__ import annotations

import pytest

from ingest.chunk import chunk_paper, embed_text
from ingest.loaders import Skipped, load
from ingest.loaders.common import make_paper
from tests.helpers import SAMPLE


def _sample_papers():
    return [p for _, p in load(str(SAMPLE)) if not isinstance(p, Skipped)]


@pytest.mark.parametrize(("size", "overlap"), [(800, 200), (300, 60), (2000, 0)])
def test_offsets_point_at_the_chunk_text(size: int, overlap: int) -> None:
    for paper in _sample_papers():
        chunks = chunk_paper(paper, size, overlap)
        assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
        for c in chunks:
            assert paper.abstract[c.start : c.end] == c.text
            assert len(c.text) <= size
        # Together the chunks cover the whole abstract, in order.
        assert chunks[0].start == 0 and chunks[-1].end == len(paper.abstract)
        for a, b in zip(chunks, chunks[1:], strict=False):
            assert a.start < b.start <= a.end + 1


def test_chunks_end_at_sentence_boundaries() -> None:
    sentences = [f"Sentence number {i} says something about bias and variance." for i in range(30)]
    paper = make_paper(title="T", abstract=" ".join(sentences))
    chunks = chunk_paper(paper, 300, 80)
    assert len(chunks) > 5
    for c in chunks:
        assert c.text.endswith("."), c.text
        assert c.text.startswith("Sentence number")


def test_neighbouring_chunks_overlap_by_whole_sentences() -> None:
    sentences = [f"Short sentence {i}." for i in range(60)]
    paper = make_paper(title="T", abstract=" ".join(sentences))
    chunks = chunk_paper(paper, 200, 60)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # they overlap
        shared = paper.abstract[b.start : a.end]
        assert shared.startswith("Short sentence") and shared.endswith(".")


def test_a_sentence_longer_than_a_chunk_is_still_split() -> None:
    paper = make_paper(title="T", abstract=("word " * 500).strip())
    chunks = chunk_paper(paper, 250, 50)
    assert all(len(c.text) <= 250 for c in chunks)
    assert chunks[-1].end == len(paper.abstract)


def test_title_is_embedded_with_every_chunk_or_the_first() -> None:
    paper = max(_sample_papers(), key=lambda p: len(p.abstract))
    chunks = chunk_paper(paper, 800, 200)
    assert len(chunks) > 1
    for c in chunks:
        text = embed_text(paper, c, "every")
        assert text.startswith(paper.title) and text.endswith(c.text)
    # "first": the title once per paper, with chunk 0; the others embed their own text.
    assert embed_text(paper, chunks[0], "first") == embed_text(paper, chunks[0], "every")
    assert [embed_text(paper, c, "first") for c in chunks[1:]] == [c.text for c in chunks[1:]]
