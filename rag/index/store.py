"""The vector store seam: the `VectorStore` protocol, the registry of stores, and
`open_store`, the one place a store is chosen (`CITEQA_VECTOR_STORE`).

Every store keeps one record per chunk, id `paper_id#chunk_index`, with the
chunk's text, its vector and a flat metadata dict (`paper_id`, `title`,
`chunk_index`, `start`, `end`, `n_chunks`, `paper_hash`, optional `url`, `year`,
`authors`, `categories`, `code_links`; chunk 0 also carries `abstract` and
`extra`). Callers speak in the project's `Filters`; each store translates them
into its engine's query language itself, so nothing outside a store's module
knows that syntax. A second store is one new module with a class that meets the
protocol, plus one line in `STORES`.

Every store also keeps a change log: writers append the ids of the papers they
are about to change and have changed (`log_changes`), and a reader that derives
something from the store (the BM25 index, rag/index/lexical.py) asks what changed
since the entry it last applied (`changes_since`). The log lives in the store
itself, so a reader needs nothing but the store's address and its own disk.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cachetools import LRUCache

from rag.settings import Settings
from rag.types import ChunkHit, Filters, split_chunk_id


class StoreUnavailable(RuntimeError):
    """The vector store cannot be reached or failed to answer."""


class StoreConfigError(ValueError):
    """The settings name a store that cannot exist (a URL without a host, say)."""


@dataclass(frozen=True)
class StoredChunk:
    id: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class LogPosition:
    """Where a reader is in a store's change log: the log's identity (a new log,
    say after the collection was recreated, has another) and the last entry read."""

    epoch: str
    seq: int


@dataclass(frozen=True)
class Changes:
    """What changed after a `LogPosition`: the papers to re-read, up to `head`."""

    head: LogPosition
    """The newest entry of the log (what a reader is at once it has applied these)."""
    paper_ids: frozenset[str] | None
    """Papers changed since the position asked about; None when the log cannot tell
    (another epoch, trimmed past that position, or a change logged without paper
    ids): the reader has to start over from the whole store."""


@runtime_checkable
class VectorStore(Protocol):
    """What citeqa needs of a vector store. Methods raise `StoreUnavailable` when
    the store cannot be reached."""

    name: str
    """The collection (or index) name; carries the index fingerprint."""
    location: str
    """Where the store is, for messages (a URL, or a path)."""
    max_batch_size: int
    """Most records one write may carry."""

    # -- writes
    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Insert or replace records. Metadata values that are None or empty lists
        mean "absent"; the store drops them if its engine cannot hold them."""
        ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def bump_version(self) -> str:
        """Mark the store changed without saying what changed: readers rebuild what
        they derive from it from scratch (logged as an entry without paper ids)."""
        ...

    def log_changes(self, paper_ids: Iterable[str]) -> str:
        """Append the papers being (or just) changed to the change log and stamp a
        new version; returns the version. Writers call it before their first write
        of a paper (so a run killed half-way still names what it touched) and after
        the last."""
        ...

    def changes_since(self, position: LogPosition | None) -> Changes:
        """The papers changed after `position` (None: a reader with nothing yet)."""
        ...

    # -- reads
    def version(self) -> str | None:
        """The change marker: differs after every write that `bump_version` stamped."""
        ...

    def nearest(
        self,
        vector: Sequence[float],
        n: int,
        filters: Filters | None = None,
        *,
        with_vectors: bool = False,
    ) -> list[tuple[str, float, list[float] | None]]:
        """The `n` nearest chunk ids with cosine similarity (and vectors if asked)."""
        ...

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[ChunkHit]:
        """Chunks by id (score nan; vectors when asked), in the order asked; unknown
        ids left out."""
        ...

    def chunks_of(self, paper_ids: Iterable[str]) -> dict[str, list[StoredChunk]]:
        """Stored chunks (id and metadata) of the given papers, by paper id."""
        ...

    def iter_chunks(
        self, *, include_documents: bool = False, heads_only: bool = False
    ) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """Every chunk (or every paper's chunk 0) as (id, document, metadata)."""
        ...

    def iter_records(self, *, with_vectors: bool = False) -> Iterator[ChunkHit]:
        """Every chunk with its text and metadata (and vector when asked)."""
        ...

    def count(self) -> int:
        """Chunks stored."""
        ...

    def paper_count(self) -> int: ...

    def papers(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """A page of papers (the metadata of their chunk 0), in a stable order."""
        ...

    def paper(self, paper_id: str) -> dict[str, Any] | None:
        """The metadata of one paper's chunk 0 (with its abstract), or None."""
        ...

    def heartbeat(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...


Store = VectorStore  # the name most callers use

# name -> "module:factory"; a factory takes Settings and returns a VectorStore.
# Imported lazily, so a store's client library loads only when it is used.
STORES: dict[str, str] = {
    "chroma": "rag.index.chroma_store:open_chroma",
}


def store_names() -> tuple[str, ...]:
    return tuple(STORES)


def open_store(settings: Settings) -> VectorStore:
    """The store the settings point at (`vector_store`, default Chroma: a `chroma
    run` server when `chroma_url` is set, else embedded on disk)."""
    module, _, attr = STORES[settings.vector_store].partition(":")
    factory: Callable[[Settings], VectorStore] = getattr(importlib.import_module(module), attr)
    return factory(settings)


class RecordCache:
    """Chunk records (text and metadata) by id, least recently used out first.

    The retriever's `LexicalCache` holds one. When it sees a new store version
    stamp it forgets the records of the papers the store's change log names
    (`forget_papers`), or all of them when the log cannot tell, so a record never
    outlives its paper's version by more than the reader's staleness check while
    the rest of the corpus stays in memory through an ingest. A miss is read from
    the BM25 index's stored documents, or from the store for a changed paper
    (`LexicalCache.read_records`); a hot query path finds it here.
    """

    FORGOTTEN_MAX = 200_000
    """Papers remembered as changed; past this the cache starts over (bounded memory)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        # chunk id -> (record, the generation its read started in)
        self._data: LRUCache[str, tuple[ChunkHit, int]] | None = (
            LRUCache(maxsize) if maxsize > 0 else None
        )
        self._generation = 0
        self._changed: dict[str, int] = {}  # paper id -> the generation it changed in
        self._floor = 0  # reads begun before this generation are not served
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def __len__(self) -> int:
        return len(self._data) if self._data is not None else 0

    def forget_papers(self, paper_ids: Iterable[str]) -> None:
        """These papers changed: their records, cached or being read right now, are
        not served again; the next read fetches them anew."""
        with self._lock:
            self._generation += 1
            for pid in paper_ids:
                self._changed[pid] = self._generation
            if len(self._changed) > self.FORGOTTEN_MAX:
                self._changed.clear()
                self._floor = self._generation
                if self._data is not None:
                    self._data.clear()

    def _valid(self, cid: str, read_in: int) -> bool:
        """A record is good unless its paper changed at or after its read began."""
        return read_in >= max(self._floor, self._changed.get(split_chunk_id(cid)[0], -1))

    def get_many(
        self, ids: Sequence[str], fetch: Callable[[Sequence[str]], list[ChunkHit]]
    ) -> dict[str, ChunkHit]:
        """The records of `ids` that exist, from the cache or else one `fetch` call."""
        found: dict[str, ChunkHit] = {}
        with self._lock:
            started = self._generation
            if self._data is not None:
                for cid in ids:
                    entry = self._data.get(cid)
                    if entry is not None and self._valid(cid, entry[1]):
                        found[cid] = entry[0]
        missing = [cid for cid in dict.fromkeys(ids) if cid not in found]
        if not missing:
            return found
        fetched = fetch(missing)
        found.update((hit.id, hit) for hit in fetched)
        if self._data is not None:
            with self._lock:
                for hit in fetched:
                    # Read before a forget that came meanwhile: kept, but never served.
                    self._data[hit.id] = (hit, started)
        return found
