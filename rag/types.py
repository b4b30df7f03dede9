"""The records that flow through citeqa: papers, their chunks, search results."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

# An absolute link with nothing that could end an HTML attribute or a markdown link.
_WEB_URL = re.compile(r"https?://[^\s<>\"'`\\]+", re.IGNORECASE)


def web_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) link, else None. Only such links are stored
    or shown: never javascript:, data:, relative links or markup."""
    if not url or not _WEB_URL.fullmatch(url):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return url if host else None


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
    notes: tuple[str, ...] = field(default=(), compare=False)
    """What the loader changed about the record (a dropped link); reported, not stored."""

    def content_hash(self) -> str:
        """Changes whenever anything stored about the paper changes."""
        data = asdict(self)
        del data["notes"]
        payload = json.dumps(data, sort_keys=True, ensure_ascii=False)
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


def split_chunk_id(cid: str) -> tuple[str, int]:
    """(paper_id, chunk_index) of a `chunk_id`; a paper id may itself hold '#'."""
    paper_id, index = cid.rsplit("#", 1)
    return paper_id, int(index)


@dataclass(frozen=True)
class ChunkHit:
    """A chunk returned by the store for a query, with its cosine similarity."""

    id: str
    paper_id: str
    text: str
    score: float
    metadata: dict[str, Any]
    vector: list[float] | None = None


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", web_url(self.url))  # stores ingested before the check

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Passage:
    """A retrieved chunk of a source's abstract."""

    chunk_id: str
    text: str
    start: int
    end: int
    score: float


@dataclass
class Source:
    """A retrieved paper as the generator sees it, numbered as cited: [n]."""

    n: int
    paper_id: str
    title: str
    abstract: str
    url: str | None
    score: float
    dense: float
    """Best cosine similarity of any of its chunks to the question (nan if none)."""
    passages: list[Passage] = field(default_factory=list)
    year: int | None = None

    def __post_init__(self) -> None:
        self.url = web_url(self.url)  # stores ingested before the check

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "paper_id": self.paper_id,
            "title": self.title,
            "url": self.url,
            "score": round(self.score, 5),
        }


@dataclass
class Citation:
    """A marker [n] in an answer and the passage of the paper that supports it."""

    n: int
    paper_id: str
    title: str
    url: str | None
    quote: str
    start: int
    end: int
    """`quote == abstract[start:end]` of the paper: what the page highlights."""

    def __post_init__(self) -> None:
        self.url = web_url(self.url)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation]
    refused: bool = False
    degraded: bool = False
    degraded_reason: str | None = None
    generator: str = "extractive"
    standalone_question: str | None = None
    verification: dict[str, int] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    gate: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        return data
