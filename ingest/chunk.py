"""Sentence-aware chunking with overlap, keeping each chunk's offsets in the abstract."""

from __future__ import annotations

from functools import lru_cache

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.types import Chunk, Paper, indexed_text

# Paragraphs, then sentence ends, then clause breaks, then words: a chunk only
# cuts a sentence when one sentence alone is longer than the chunk size.
_SEPARATORS = ["\n\n", "\n", r"(?<=[.!?])\s+", r"(?<=[;:])\s+", r",\s+", r"\s+", ""]


@lru_cache(maxsize=8)
def _splitter(size: int, overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=size,
        chunk_overlap=min(overlap, size // 2),
        separators=_SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        add_start_index=True,
        strip_whitespace=True,
    )


def chunk_paper(paper: Paper, size: int, overlap: int) -> list[Chunk]:
    """Chunks of the abstract; `paper.abstract[c.start:c.end] == c.text` for each."""
    splitter = _splitter(size, overlap)
    chunks: list[Chunk] = []
    for i, doc in enumerate(splitter.create_documents([paper.abstract])):
        start = int(doc.metadata["start_index"])
        if start < 0 or paper.abstract[start : start + len(doc.page_content)] != doc.page_content:
            # The splitter could not place the chunk (it rejoined splits with a
            # different separator): find it ourselves after the previous start.
            prev = chunks[-1].start if chunks else 0
            start = paper.abstract.find(doc.page_content, prev)
            if start < 0:
                raise ValueError(f"chunk {i} of {paper.paper_id} not found in its abstract")
        chunks.append(
            Chunk(paper.paper_id, i, doc.page_content, start, start + len(doc.page_content))
        )
    return chunks


def embed_text(paper: Paper, chunk: Chunk, title: str = "first") -> str:
    """What the embedder sees: the chunk, with the paper's title in front of every
    chunk (`title="every"`, the text BM25 indexes) or of chunk 0 only ("first")."""
    if title == "first" and chunk.chunk_index > 0:
        return chunk.text
    return indexed_text(paper.title, chunk.text)
