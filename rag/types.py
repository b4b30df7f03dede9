"""The records that flow through citeqa: papers, their chunks, search results."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Paper:
    """One paper as a loader read it."""

    paper_id: str
    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    year: int | None = None
    url: str | None = None
    categories: tuple[str, ...] = ()
    code_links: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    """Whatever else the source carried (CSV columns, BibTeX fields), as strings."""

    def content_hash(self) -> str:
        """Changes whenever anything stored about the paper changes."""
        payload = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Chunk:
    """A passage of a paper's abstract: `abstract[start:end] == text`."""

    paper_id: str
    chunk_index: int
    text: str
    start: int
    end: int

    @property
    def id(self) -> str:
        return chunk_id(self.paper_id, self.chunk_index)


def chunk_id(paper_id: str, chunk_index: int) -> str:
    return f"{paper_id}#{chunk_index}"


@dataclass(frozen=True)
class ChunkHit:
    """A chunk returned by the store for a query, with its cosine similarity."""

    id: str
    paper_id: str
    text: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PaperHit:
    """A paper-level search result: the best chunk speaks for the paper."""

    paper_id: str
    title: str
    score: float
    snippet: str
    url: str | None = None
    chunk_index: int = 0
    start: int = 0
    end: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
