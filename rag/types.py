"""The records that flow through citeqa: papers, their chunks, search results."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

# An absolute link with nothing that could end an HTML attribute or a markdown link.
_WEB_URL = re.compile(r"https?://[^\s<>\"'`\\]+", re.IGNORECASE)


def web_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) link, else None. Only such links are stored
    or shown: never javascript:, data:, relative links or markup. Credentials in it
    (`https://user:pass@host/...`) are dropped: the link keeps its host and path."""
    if not url or not _WEB_URL.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if not host:
        return None
    if "@" in parts.netloc:
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def has_userinfo(url: str | None) -> bool:
    """True when `url` carries credentials (`user:pass@`) that `web_url` drops."""
    try:
        return url is not None and "@" in urlsplit(url).netloc
    except ValueError:
        return False


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


def indexed_text(title: str, text: str) -> str:
    """What BM25 indexes of every chunk, and what the embedder sees of chunk 0 (of
    every chunk with `chunking.title="every"`): the title carries the paper's topic."""
    return f"{title}\n{text}"


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
    vector: Sequence[float] | None = None
    """Its embedding when asked for (a numpy row when read in bulk)."""


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
    dense_rank: int | None = None
    """Its place (0 = first) among papers by dense similarity; None if dense missed it."""
    lexical_rank: int | None = None
    """Its place among papers by BM25; None if BM25 missed it."""
    coverage: float = 0.0
    """Share of the question's terms its title and abstract hold, each weighted by
    `rag.retrieval.retrieve.topic_weights` (IDF times rarity in English)."""

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


class Citation(BaseModel):
    """A marker [n] in an answer and the passage of the paper that supports it."""

    n: int
    paper_id: str
    title: str
    url: str | None
    quote: str = Field(description="The supporting passage, `abstract[start:end]`.")
    start: int
    end: int
    """`quote == abstract[start:end]` of the paper: what the page highlights."""

    @field_validator("url")
    @classmethod
    def _web_only(cls, url: str | None) -> str | None:
        return web_url(url)  # stores ingested before the check

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Side(BaseModel):
    """One cited paper's side on an answer's point."""

    n: int = Field(description="Its citation marker [n] in the answer.")
    paper_id: str
    label: Literal["supports", "contradicts"]
    probability: float = Field(description="The claim model's P(its quote contradicts the point).")


class Disagreement(BaseModel):
    """Cited papers on both sides of the answer's point (rag/check/disagree.py)."""

    point: str = Field(description="The point the papers were read against: the question.")
    supports: list[int] = Field(description="Markers of the cited papers that support it.")
    contradicts: list[int] = Field(description="Markers of the cited papers that contradict it.")
    papers: list[Side]


class Answer(BaseModel):
    """A cited answer: what `citeqa ask --json`, `POST /v1/chat` and the stream's
    `done` event return (one model for all three)."""

    model_config = ConfigDict(extra="forbid")

    question: str
    answer: str = Field(description="The cited summary; every [n] has an entry in citations.")
    citations: list[Citation]
    refused: bool = False
    degraded: bool = False
    degraded_reason: str | None = None
    generator: str = "extractive"
    standalone_question: str | None = None
    verification: dict[str, int] = Field(default_factory=dict)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    nearest: list[dict[str, Any]] = Field(
        default_factory=list,
        description="On a refusal of a question near the corpus (asked in other words than "
        "the papers', or on a neighbouring topic): the nearest papers, which may not answer "
        "it. Empty otherwise.",
    )
    gate: dict[str, Any] = Field(default_factory=dict)
    reader: dict[str, Any] = Field(
        default_factory=dict,
        description="With the reader on and consulted (docs/reader.md): its `reads` (paper, "
        "P(answers), supporting sentence, seconds), `changed` (what they changed), "
        "`cut_short` (why reading stopped before every unsure paper was read: the time "
        "budget or the read limit), `error` (the reader failed), `seconds`. Empty otherwise.",
    )
    disagreement: Disagreement | None = Field(
        None,
        description="When the cited papers take both sides of the answer's point (each "
        "sure, by the claim model): who supports it and who contradicts it, also said in a "
        "note closing the answer. None otherwise.",
    )
    timings: dict[str, float] = Field(default_factory=dict)

    @field_serializer("timings")
    def _round(self, timings: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in timings.items()}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Filters:
    """Metadata filters on papers; a paper without the field never matches a filter
    on it. Each store translates them into its own query language
    (`VectorStore.nearest`); `matches` is their meaning, for indexes that filter in
    Python (BM25)."""

    year_min: int | None = None
    year_max: int | None = None
    paper_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when no filter is set (`year_min=0` is a filter, not an empty one)."""
        return (
            self.year_min is None
            and self.year_max is None
            and not self.paper_ids
            and not self.categories
        )

    def matches(self, meta: dict[str, Any]) -> bool:
        year = meta.get("year")
        if self.year_min is not None and (year is None or year < self.year_min):
            return False
        if self.year_max is not None and (year is None or year > self.year_max):
            return False
        if self.paper_ids and meta.get("paper_id") not in self.paper_ids:
            return False
        if self.categories and not set(self.categories) & set(meta.get("categories") or ()):
            return False
        return True
