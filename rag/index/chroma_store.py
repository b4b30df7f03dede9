"""Chroma as a `VectorStore` (see rag/index/store.py): the only module that imports chromadb.

One collection per index fingerprint (embedding model + chunking), cosine
space, vectors always computed by us: Chroma's default embedding function
would try to download a model, so the collection is created without one.
Each record is a chunk with id `paper_id#chunk_index`; its metadata carries
the paper's fields, the paper's content hash and its chunk count, which is
what lets ingestion tell a complete, unchanged paper from a stale or
half-written one. The version stamp lives in the collection's metadata. Chroma's
own rules (no None and no empty lists in metadata, its `where` syntax) stay here.

The change log (see rag/index/store.py) is a side collection, `<collection>__changes`:
one record per entry, id the zero-padded sequence number, document the JSON list
of paper ids (null: "anything may have changed"), and a 1-d dummy vector (Chroma
wants one; nothing searches it). A writer claims sequence number head + 1 with
`add`, which keeps the first record of an id and ignores later ones, then reads
the record back: if it holds another writer's token it lost the race and tries
the next number. So entries are numbered without gaps, and a gap in what a reader
gets back can only mean the log was trimmed (to the newest `log_keep` entries)
past the reader's position. The log's epoch is the two collections' ids: a
recreated collection starts a new log, and readers start over.

Embedded Chroma keeps its vector index in the memory of each process that opened
it, and does not see what another process writes afterwards (its records and
metadata it does: they are read from SQLite). So each version stamp names the
process that wrote it, and an embedded store that finds a stamp of another
process (`citeqa ingest` beside a running `citeqa serve`) opens its collections
afresh: dense search then finds the new papers, as BM25 does through the log.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import chromadb
import httpx
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError

from rag.index.store import Changes, LogPosition, StoreConfigError, StoredChunk, StoreUnavailable
from rag.settings import Settings
from rag.types import ChunkHit, Filters

log = logging.getLogger(__name__)

# Chroma answers `$in` filters and gets in pages; keep each request modest.
_PAGE = 1000
VERSION_KEY = "citeqa_version"
LOG_HEAD_KEY = "citeqa_log_head"
"""A hint (never behind by more than concurrent writers) of the log's newest entry."""
WRITER_KEY = "citeqa_writer"
"""Which process stamped the version (see the module's docstring)."""
_PROCESS = uuid.uuid4().hex
# Embedded Chroma shares one in-process System per path. Per path: how many times
# this process has opened it afresh (the generation of the shared System) and the
# version stamp that System has seen (of the collection last checked: stores of
# several collections on one path may open it afresh more often than needed).
_SHARED: dict[str, tuple[int, str | None]] = {}
_SHARED_LOCK = threading.Lock()
# Chroma's HNSW `sync_threshold` stays at its default (1,000 changes between writes of
# the index files). Raised to 100,000, each upsert grew slower with the changes not yet
# written (at 1M chunks, 3,000 chunks in 19 s with 3k pending, 43 s with 9k, 56 s with
# 18k), and so did the waits of readers behind it.
LOG_SUFFIX = "__changes"
LOG_KEEP = 2000
"""Entries the change log keeps; a reader further behind rebuilds from the store."""
_LOG_IDS = 1000  # paper ids per entry: a prune of 100k papers is 100 modest records
_TRIM_EVERY = 20  # trim once every this many entries, not on every write


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Connection failures inside a store method surface as StoreUnavailable."""

    @functools.wraps(method)
    def wrapper(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise _as_unavailable(exc, self.location) from exc

    return wrapper  # type: ignore[return-value]


def _writes(method: F) -> F:
    """A write: refused as StoreUnavailable when the embedded store's files are gone
    (sqlite keeps the removed files open, read-only: reads go on, writes fail)."""

    @functools.wraps(method)
    def wrapper(self: ChromaStore, *args: Any, **kwargs: Any) -> Any:
        self._check_files()
        return method(self, *args, **kwargs)

    return _guarded(wrapper)  # type: ignore[return-value]


_DB_FILE = "chroma.sqlite3"


def _file_id(directory: str) -> tuple[int, int] | None:
    """(device, inode) of the embedded store's database file, None when there is none."""
    try:
        st = os.stat(os.path.join(directory, _DB_FILE))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def to_where(filters: Filters | None) -> dict[str, Any] | None:
    """`Filters` as a Chroma `where` (None when no filter is set)."""
    if filters is None or filters.empty:
        return None
    clauses: list[dict[str, Any]] = []
    if filters.year_min is not None:
        clauses.append({"year": {"$gte": filters.year_min}})
    if filters.year_max is not None:
        clauses.append({"year": {"$lte": filters.year_max}})
    if filters.paper_ids:
        clauses.append({"paper_id": {"$in": list(filters.paper_ids)}})
    if filters.categories:
        cats = [{"categories": {"$contains": c}} for c in filters.categories]
        clauses.append(cats[0] if len(cats) == 1 else {"$or": cats})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def chroma_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma takes no None and no empty lists: absent values are left out."""
    return {k: v for k, v in meta.items() if v is not None and v != [] and v != ()}


class ChromaStore:
    """A Chroma collection (embedded or a `chroma run` server) as a `VectorStore`."""

    def __init__(
        self,
        client: Any,
        collection_name: str,
        *,
        location: str,
        log_keep: int = LOG_KEEP,
        embedded: bool = False,
    ) -> None:
        """`embedded`: Chroma on disk at `location`, which other processes may write."""
        self.name = collection_name
        self.location = location
        self.log_keep = max(1, log_keep)
        self._embedded = embedded
        self.reopened = 0
        """Times this store opened its collections afresh (another process wrote)."""
        self._open(client)
        self._files = _file_id(location) if embedded else None
        """The database file this process opened; another one (or none) at `location`
        means the data directory was removed or replaced under us."""
        self._gen, self._seen = 0, None
        if embedded:
            value, writer = self._stamp()
            with _SHARED_LOCK:  # the stamp the System this client shares has seen
                self._gen, self._seen = _SHARED.setdefault(location, (0, value))
            self._follow(value, writer)

    def _open(self, client: Any) -> None:
        self._client = client
        self._collection = client.get_or_create_collection(
            self.name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        self._log = client.get_or_create_collection(self.name + LOG_SUFFIX, embedding_function=None)
        self.max_batch_size = int(client.get_max_batch_size())

    # -- writes -----------------------------------------------------------------

    @_writes
    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        for lo in range(0, len(ids), self.max_batch_size):
            hi = lo + self.max_batch_size
            self._collection.upsert(
                ids=list(ids[lo:hi]),
                embeddings=[list(map(float, e)) for e in embeddings[lo:hi]],
                documents=list(documents[lo:hi]),
                metadatas=[chroma_metadata(dict(m)) for m in metadatas[lo:hi]],
            )

    @_writes
    def delete(self, ids: Sequence[str]) -> None:
        for lo in range(0, len(ids), self.max_batch_size):
            self._collection.delete(ids=list(ids[lo : lo + self.max_batch_size]))

    # -- reads ------------------------------------------------------------------

    @_guarded
    def chunks_of(self, paper_ids: Iterable[str]) -> dict[str, list[StoredChunk]]:
        """Stored chunks (id and metadata) of the given papers, by paper id."""
        wanted = list(dict.fromkeys(paper_ids))
        found: dict[str, list[StoredChunk]] = {pid: [] for pid in wanted}
        for lo in range(0, len(wanted), _PAGE):
            page = wanted[lo : lo + _PAGE]
            where = {"paper_id": {"$in": page}} if len(page) > 1 else {"paper_id": page[0]}
            res = self._collection.get(where=where, include=["metadatas"])  # type: ignore[list-item]
            for cid, meta in zip(res["ids"], res["metadatas"] or [], strict=True):
                found[str(meta["paper_id"])].append(StoredChunk(cid, dict(meta)))
        return found

    def iter_chunks(
        self, *, include_documents: bool = False, heads_only: bool = False
    ) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """Every chunk (or each paper's chunk 0) as (id, document, metadata), page by page."""
        where = {"chunk_index": 0} if heads_only else None
        include = ["metadatas", "documents"] if include_documents else ["metadatas"]
        offset = 0
        while True:
            res = self._page(where, include, offset)
            ids = res["ids"]
            if not ids:
                return
            docs = res["documents"] if include_documents else [None] * len(ids)
            rows = zip(ids, docs or [], res["metadatas"] or [], strict=True)
            yield from (row for row in rows if row[2])  # skip records deleted mid-read
            offset += len(ids)

    @_guarded
    def _page(self, where: dict[str, Any] | None, include: list[str], offset: int) -> Any:
        return self._collection.get(
            where=where,
            include=include,  # type: ignore[arg-type]
            limit=_PAGE,
            offset=offset,
        )

    def iter_records(self, *, with_vectors: bool = False) -> Iterator[ChunkHit]:
        """Every chunk as a record (text, metadata; its vector when asked and Chroma
        can give it), page by page."""
        offset = 0
        while True:
            res, got = self._records(
                lambda include: self._page(None, include, offset),  # noqa: B023 (called at once)
                with_vectors,
            )
            ids = res["ids"]
            if not ids:
                return
            yield from _hits(res, got)
            offset += len(ids)

    @_guarded
    def _records(self, read: Callable[[list[str]], Any], with_vectors: bool) -> tuple[Any, bool]:
        """`read(include)` for records, with their vectors when asked. An embedded
        store whose vector index has not seen another process's writes fails to give
        their vectors ("Error finding id"): it follows the version stamp (opening the
        store afresh) and reads again. Vectors are for a reader's local scoring, not
        the records' truth, so if Chroma still cannot give them the records come
        without them."""
        include = ["metadatas", "documents"]
        if with_vectors:
            for attempt in range(2):
                try:
                    return read([*include, "embeddings"]), True
                except ChromaError as exc:
                    if attempt == 0 and self._embedded:
                        self._follow(*self._stamp())
                        continue
                    log.warning("Chroma gave no vectors for these records (%s): read without", exc)
        return read(include), False

    def paper_ids(self) -> set[str]:
        return {str(meta["paper_id"]) for _, _, meta in self.iter_chunks()}

    @_guarded
    def count(self) -> int:
        return int(self._collection.count())

    def paper_count(self) -> int:
        return sum(1 for _ in self.iter_chunks(heads_only=True))

    @_guarded
    def papers(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """A page of papers (the metadata of their first chunk), in store order."""
        res = self._collection.get(
            where={"chunk_index": 0},
            include=["metadatas"],  # type: ignore[list-item]
            limit=limit,
            offset=offset,
        )
        return [dict(m) for m in res["metadatas"] or [] if m]

    @_guarded
    def paper(self, paper_id: str) -> dict[str, Any] | None:
        """The stored metadata of one paper (with its abstract), or None."""
        res = self._collection.get(
            where={"$and": [{"paper_id": paper_id}, {"chunk_index": 0}]},
            include=["metadatas"],  # type: ignore[list-item]
        )
        metas = res["metadatas"] or []
        return dict(metas[0]) if metas else None

    @_guarded
    def nearest(
        self,
        vector: Sequence[float],
        n: int,
        filters: Filters | None = None,
        *,
        with_vectors: bool = False,
    ) -> list[tuple[str, float, list[float] | None]]:
        """Ids of the nearest chunks with their cosine similarity (1 - distance), and
        their vectors when asked. No documents or metadata: reading those costs more
        than the search itself, and the retriever keeps them in a cache."""
        if n <= 0:
            return []
        include = ["distances", "embeddings"] if with_vectors else ["distances"]
        res = self._collection.query(
            query_embeddings=[list(map(float, vector))],
            n_results=n,
            where=to_where(filters),
            include=include,  # type: ignore[arg-type]
        )
        vectors = res.get("embeddings")
        hits = []
        for i, (cid, dist) in enumerate(
            zip(res["ids"][0], (res["distances"] or [[]])[0], strict=True)
        ):
            if dist is None:
                continue
            vec = list(vectors[0][i]) if with_vectors and vectors is not None else None
            hits.append((cid, 1.0 - float(dist), vec))
        return hits

    @_guarded
    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[ChunkHit]:
        """Chunks by id (score nan; their vectors when asked), in the order asked;
        unknown ids are left out."""
        if not ids:
            return []
        res, got = self._records(
            lambda include: self._collection.get(ids=list(ids), include=include),  # type: ignore[arg-type]
            with_vectors,
        )
        found = {hit.id: hit for hit in _hits(res, got)}
        return [found[i] for i in ids if i in found]

    @_guarded
    def version(self) -> str | None:
        """The collection's change marker: differs after every ingest that wrote."""
        value, writer = self._stamp()
        self._follow(value, writer)
        return value

    def _stamp(self) -> tuple[str | None, str | None]:
        """The version stamp and the process that wrote it."""
        meta = self._client.get_collection(self.name, embedding_function=None).metadata or {}
        value, writer = meta.get(VERSION_KEY), meta.get(WRITER_KEY)
        return (
            str(value) if value is not None else None,
            str(writer) if writer is not None else None,
        )

    def _follow(self, value: str | None, writer: str | None) -> None:
        """Open the collections afresh when another process stamped a version the
        shared System has not seen, and move to the System another store of this
        process opened afresh (embedded Chroma only: a server is one process)."""
        if not self._embedded:
            return
        if value == self._seen and _SHARED.get(self.location, (self._gen,))[0] == self._gen:
            return
        with _SHARED_LOCK:
            gen, seen = _SHARED.get(self.location, (self._gen, self._seen))
            client = None
            if value != seen and writer != _PROCESS:
                log.info("%s: another process wrote to the store; reopening it", self.location)
                gen += 1
                client = _embedded_client(self.location, fresh=True)
                self.reopened += 1
            elif gen != self._gen:
                client = _embedded_client(self.location)
            if client is not None:
                self._open(client)
            _SHARED[self.location] = (gen, value)
            self._gen, self._seen = gen, value

    def bump_version(self) -> str:
        """Mark the collection changed without naming papers: readers start over."""
        return self._append([None])

    def log_changes(self, paper_ids: Iterable[str]) -> str:
        """Log the papers being (or just) written and stamp a new version."""
        ids = sorted(set(map(str, paper_ids)))
        parts: list[list[str] | None] = [
            ids[lo : lo + _LOG_IDS] for lo in range(0, len(ids), _LOG_IDS)
        ]
        return self._append(parts) if parts else self.version() or ""

    @_guarded
    def changes_since(self, position: LogPosition | None) -> Changes:
        """The papers changed after `position`, or None for them when the log does
        not reach back to it (or is another log)."""
        epoch = self._epoch()
        if position is None or position.epoch != epoch:
            return Changes(LogPosition(epoch, self._log_head()), None)
        res = self._log.get(
            where={"seq": {"$gt": position.seq}},
            include=["metadatas", "documents"],  # type: ignore[list-item]
        )
        entries = sorted(
            (int(m["seq"]), doc)
            for m, doc in zip(res["metadatas"] or [], res["documents"] or [], strict=True)
        )
        head = entries[-1][0] if entries else position.seq
        if [seq for seq, _ in entries] != list(range(position.seq + 1, head + 1)):
            return Changes(LogPosition(epoch, head), None)  # trimmed past the position
        changed: set[str] = set()
        for _, doc in entries:
            ids = json.loads(doc) if doc else None
            if ids is None:
                return Changes(LogPosition(epoch, head), None)
            changed.update(map(str, ids))
        return Changes(LogPosition(epoch, head), frozenset(changed))

    def _epoch(self) -> str:
        return f"{self._collection.id}/{self._log.id}"

    def _log_head(self) -> int:
        """The newest entry's sequence number (0: an empty log)."""
        meta = self._client.get_collection(self.name, embedding_function=None).metadata or {}
        hint = int(meta.get(LOG_HEAD_KEY, 0))
        res = self._log.get(where={"seq": {"$gte": hint}}, include=["metadatas"])  # type: ignore[list-item]
        return max((int(m["seq"]) for m in res["metadatas"] or []), default=hint)

    @_writes
    def _append(self, parts: list[list[str] | None]) -> str:
        """One log entry per part (None: "anything"), then a new version stamp."""
        self._follow(*self._stamp())  # write to the files as they are
        seq = self._log_head()
        for part in parts:
            doc = json.dumps(part)
            for _ in range(100):  # each lost race means another writer's entry went in
                seq += 1
                key, token = f"{seq:012d}", uuid.uuid4().hex
                self._log.add(
                    ids=[key],
                    embeddings=[[0.0]],
                    documents=[doc],
                    metadatas=[{"seq": seq, "token": token}],
                )
                got = self._log.get(ids=[key], include=["metadatas"])  # type: ignore[list-item]
                if got["metadatas"] and got["metadatas"][0].get("token") == token:
                    break
            else:
                raise StoreUnavailable(f"could not append to the change log of {self.name}")
            if seq % min(_TRIM_EVERY, self.log_keep) == 0 and seq > self.log_keep:
                self._log.delete(where={"seq": {"$lte": seq - self.log_keep}})
        value = uuid.uuid4().hex
        self._collection.modify(
            metadata={VERSION_KEY: value, LOG_HEAD_KEY: seq, WRITER_KEY: _PROCESS}
        )
        if self._embedded:
            with _SHARED_LOCK:
                if _SHARED.get(self.location, (self._gen,))[0] == self._gen:
                    _SHARED[self.location] = (self._gen, value)
        self._seen = value
        return value

    def _check_files(self) -> None:
        if self._files is not None and _file_id(self.location) != self._files:
            raise StoreUnavailable(
                f"the embedded store's files at {self.location} were removed or replaced "
                "while this process ran (writes would fail); restart the server"
            )

    def heartbeat(self) -> None:
        self._check_files()
        try:
            self._client.heartbeat()
        except Exception as exc:  # any client error means the same thing to callers
            raise StoreUnavailable(f"Chroma at {self.location} is not answering: {exc}") from exc


def _as_unavailable(exc: Exception, location: str) -> Exception:
    """Connection-level failures become StoreUnavailable; anything else stays as it is."""
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return StoreUnavailable(f"Chroma at {location} did not answer: {exc}")
    if "readonly database" in str(exc):  # sqlite's files went away or lost write access
        return StoreUnavailable(f"Chroma at {location} cannot be written: {exc}")
    return exc


def _http_client(url: str, timeout: float) -> Any:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        raise StoreConfigError(f"CITEQA_CHROMA_URL '{url}' has no host")
    ssl = parsed.scheme == "https"
    client = chromadb.HttpClient(
        host=parsed.hostname,
        port=parsed.port or (443 if ssl else 8000),
        ssl=ssl,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    # chromadb's HTTP client waits forever by default; bound every request.
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)
    return client


def _embedded_client(path: str, *, fresh: bool = False) -> Any:
    """Chroma on disk at `path`. Chroma shares one in-process System per path;
    `fresh` forgets it first, so the new client loads the files as they are now
    (other stores of this process on the path keep the System they have)."""
    if fresh:  # chromadb has no public call for one path (1.5.9; tests/test_embedded_processes)
        from chromadb.api.shared_system_client import SharedSystemClient

        with SharedSystemClient._refcount_lock:
            SharedSystemClient._identifier_to_system.pop(path, None)
            SharedSystemClient._identifier_to_refcount.pop(path, None)
    return chromadb.PersistentClient(path=path, settings=ChromaSettings(anonymized_telemetry=False))


def open_chroma(settings: Settings) -> ChromaStore:
    """A `chroma run` server when `chroma_url` is set, else Chroma embedded on disk."""
    try:
        if settings.chroma_url:
            client = _http_client(settings.chroma_url, settings.request_timeout)
            location = settings.chroma_url
        else:
            path = settings.data_dir / "chroma"
            path.mkdir(parents=True, exist_ok=True)
            location = str(path)
            return ChromaStore(
                _embedded_client(location),
                settings.collection_name,
                location=location,
                embedded=True,
            )
        return ChromaStore(client, settings.collection_name, location=location)
    except StoreConfigError:
        raise
    except (httpx.HTTPError, ConnectionError, ValueError) as exc:
        raise StoreUnavailable(
            f"cannot open Chroma ({settings.chroma_url or 'embedded'}): {exc}"
        ) from exc


def _hits(res: Any, with_vectors: bool) -> Iterator[ChunkHit]:
    """A `get` result as records (a record deleted mid-read, without metadata, left out)."""
    n = len(res["ids"])
    docs = res["documents"] or [None] * n
    vectors = res.get("embeddings") if with_vectors else None
    for i, (cid, doc, meta) in enumerate(
        zip(res["ids"], docs, res["metadatas"] or [], strict=True)
    ):
        if not meta:
            continue
        vec = vectors[i] if vectors is not None else None  # a numpy row: no float objects
        yield ChunkHit(cid, str(meta["paper_id"]), doc or "", float("nan"), dict(meta), vec)
