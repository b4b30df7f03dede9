"""BM25 over the chunks (tantivy), kept on local disk and following the store's
change log: upkeep proportional to the change, not to the corpus.

The index is always made from the documents in the store, never from the
ingest job's input, so a reader needs nothing but the store's address and its
own disk (the API against a `chroma run` server included). Writers log the ids
of the papers they change (rag/index/store.py, `log_changes`); a reader whose index
is at log entry s asks for the papers changed after s, deletes their documents
from its index (by the `paper_id` term), re-adds their current chunks read
from the store, commits, and notes the entry it reached in `applied-v3.json`
beside the index (written after the commit, atomically: tantivy has no commit
payload to hold it). It reads the whole store only when there is no index yet,
or the log no longer reaches back to its entry (trimmed, or another log), or a
writer logged a change without naming papers (`bump_version`).

Processes on one machine share one directory (`lexical_dir`, keyed by store
and collection). Tantivy lets one writer at a time hold a directory: whoever
gets the writer lock applies the log; the others only reload their searchers
on the committed segments, which the OS shares between them (memory-mapped).
A new replica opens what is on disk (a copy of another replica's directory
does as well: it is a snapshot at a log position) and applies the log from
there. A whole-store build of a large server store runs in a child process
(`lexical_build_apart_from`): the API process then only opens the segments, so
it does not keep the build's memory.

Scoring: tantivy's BM25 (k1 1.2, b 0.75, Lucene's idf) over the chunk's title
and text, analyzed like `rag.text.terms` (words of two or more letters or
digits, lower-cased, `STOPWORDS` dropped, Snowball English stems), so the stems
callers pass to `idf` are the index's terms. Metadata filters are query
clauses that add nothing to the score. A deleted document still counts in its
segment's term statistics until the segment is merged (the writer waits for
the merges each commit starts), so scores drift slightly between merges.

Each document stores its chunk's record (text and metadata) and vector, so a
query reads the records of the papers it shows from local disk, not from the
store: only the dense search goes to the store, and a store busy with an ingest
slows nothing else. When that search misses its deadline, BM25's candidates
are scored with the stored vectors instead (`local_vectors`). A paper whose
change the reader has seen in the log after the view's position is read from
the store instead, and not scored locally (`read_records`).

A small index catches up in the query that notices the new version, so a
reader sees its own writes at once; a large one catches up in the background
while the current searcher keeps answering (new chunks are found by dense
search meanwhile, and the changed papers' records come from the store: a chunk
that is gone is dropped, and no query shows old text once the reader has seen
the change).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import tantivy

from rag.index.store import Changes, LogPosition, RecordCache, Store, StoreUnavailable, open_store
from rag.settings import Settings
from rag.text import STOPWORDS, terms
from rag.types import ChunkHit, Filters, indexed_text, split_chunk_id

log = logging.getLogger(__name__)

ANALYZER = "citeqa_en"
# `rag.text`'s tokens are Python's `\b\w\w+\b`; Rust's `\w` leaves out other
# numerals (², ½) that Python's takes, hence \p{N}.
_TOKEN_PATTERN = r"[\w\p{N}]{2,}"
FORMAT = 3
"""Bumped when the schema or analyzer changes: the index and its marker live in
files named by it, so another format starts in a fresh directory (one full build
per reader). 2: each document stores its chunk's record (text and metadata);
3: and its vector (float16)."""
WRITER_HEAP = 64_000_000
"""Bytes the writer buffers before it writes a segment (tantivy's floor is 15 MB)."""
_PAGE = 1000  # chunks read from the store per request while applying changes


def analyzer() -> tantivy.TextAnalyzer:
    """The text analyzer, equal to `rag.text.terms` (tests/test_lexical.py checks)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(_TOKEN_PATTERN))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.custom_stopword(sorted(STOPWORDS)))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_text_field("id", stored=True, tokenizer_name="raw")
    b.add_text_field("paper_id", stored=True, tokenizer_name="raw", fast=True)
    b.add_text_field("text", tokenizer_name=ANALYZER, index_option="freq")
    b.add_integer_field("year", indexed=True, fast=True)
    b.add_text_field("categories", tokenizer_name="raw")
    b.add_bytes_field("record", stored=True)  # the chunk's text and metadata, as JSON
    b.add_bytes_field("vector", stored=True)  # its embedding, float16 (little-endian)
    return b.build()


def _document(hit: ChunkHit) -> tantivy.Document:
    meta = hit.metadata
    doc = tantivy.Document()
    doc.add_text("id", hit.id)
    doc.add_text("paper_id", hit.paper_id)
    doc.add_text("text", indexed_text(str(meta.get("title", "")), hit.text))
    year = meta.get("year")
    if isinstance(year, int) and not isinstance(year, bool):
        doc.add_integer("year", year)
    for category in meta.get("categories") or ():
        doc.add_text("categories", str(category))
    record = {"text": hit.text, "metadata": meta}
    doc.add_bytes("record", json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())
    if hit.vector is not None:
        doc.add_bytes("vector", np.asarray(hit.vector, dtype="<f2").tobytes())
    return doc


def filter_query(s: tantivy.Schema, filters: Filters) -> list[tantivy.Query]:
    """`Filters` as tantivy clauses (each must match; see `Filters.matches`)."""
    clauses = []
    if filters.year_min is not None or filters.year_max is not None:
        clauses.append(
            tantivy.Query.range_query(
                s, "year", tantivy.FieldType.Integer, filters.year_min, filters.year_max
            )
        )
    if filters.paper_ids:
        clauses.append(tantivy.Query.term_set_query(s, "paper_id", list(filters.paper_ids)))
    if filters.categories:
        clauses.append(tantivy.Query.term_set_query(s, "categories", list(filters.categories)))
    return clauses


@dataclass(frozen=True)
class LexicalHit:
    id: str
    paper_id: str
    score: float


class LexicalIndex:
    """One consistent view of the index (a tantivy searcher), as of store `version`."""

    def __init__(
        self, searcher: tantivy.Searcher, version: str | None, position: LogPosition | None
    ) -> None:
        self.searcher = searcher
        self.version = version
        self.position = position
        self._schema = schema()
        self._n = int(searcher.num_docs)

    def __len__(self) -> int:
        return self._n

    def search(self, query: str, n: int, filters: Filters | None = None) -> list[LexicalHit]:
        """The `n` best chunks by BM25 that pass `filters`. A repeated query word
        counts once per occurrence, as it did under bm25s."""
        words = terms(query)
        if n <= 0 or not words or not self._n:
            return []
        s = self._schema
        text = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(s, "text", w, "freq")) for w in words]
        )
        clauses = [(tantivy.Occur.Must, text)]
        if filters is not None and not filters.empty:
            clauses += [
                (tantivy.Occur.Must, tantivy.Query.const_score_query(q, 0.0))
                for q in filter_query(s, filters)
            ]
        result = self.searcher.search(tantivy.Query.boolean_query(clauses), n, count=False)
        hits = []
        for score, address in result.hits:
            doc = self.searcher.doc(address)
            hits.append(LexicalHit(doc["id"][0], doc["paper_id"][0], float(score)))
        return hits

    def _docs(self, ids: Sequence[str]) -> Iterable[tantivy.Document]:
        """The stored documents of the chunks of `ids` this view holds."""
        if not ids or not self._n:
            return
        query = tantivy.Query.term_set_query(self._schema, "id", list(ids))
        for _, address in self.searcher.search(query, len(ids), count=False).hits:
            yield self.searcher.doc(address)

    def records(self, ids: Sequence[str]) -> list[ChunkHit]:
        """The records (text and metadata, score nan) of the chunks of `ids` that this
        view holds, as they were in the store when their paper was last applied."""
        hits = []
        for doc in self._docs(ids):
            record = json.loads(doc.get_first("record"))
            hits.append(
                ChunkHit(
                    doc["id"][0], doc["paper_id"][0], record["text"], math.nan, record["metadata"]
                )
            )
        return hits

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors (float32) of the chunks of `ids` this view holds."""
        found = {}
        for doc in self._docs(ids):
            raw = doc.get_first("vector")
            if raw:
                found[doc["id"][0]] = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        return found

    def chunk_ids(self) -> list[str]:
        """Every chunk id in this view (for checks and tests; reads every document)."""
        if not self._n:
            return []
        result = self.searcher.search(tantivy.Query.all_query(), self._n, count=False)
        return [self.searcher.doc(address)["id"][0] for _, address in result.hits]

    def idf(self, term: str) -> float:
        """BM25's idf of a (stemmed) term; a term the corpus never holds gets the largest."""
        if not self._n:
            return 1.0
        df = int(self.searcher.doc_freq("text", term))
        return math.log(1 + (self._n - df + 0.5) / (df + 0.5))


@dataclass
class LexicalStats:
    """What this process did to the index: the tests' and the bench's counters."""

    docs_added: int = 0
    """Chunks (re-)added to the index."""
    papers_applied: int = 0
    """Papers re-read from the store because the log named them."""
    full_builds: int = 0
    """Times the whole store was read."""
    reloads: int = 0
    """Times the searcher was reopened on segments another process committed."""
    built_apart: int = 0
    """Full builds this process left to a child process (counted in `full_builds` too)."""
    applied: list[int] = field(default_factory=list)
    """Log positions this process brought the index to."""
    records_local: int = 0
    """Chunk records queries read from the index's stored documents."""
    records_fetched: int = 0
    """Chunk records queries asked the store for (papers changed since their view)."""


def lexical_dir(settings: Settings) -> Path:
    """Where a reader keeps its index: beside an embedded store; for a server, a
    directory of the data dir keyed by host, port and collection, shared by the
    processes of this machine."""
    root = settings.data_dir / "lexical"
    if settings.chroma_url:
        url = settings.chroma_url
        parsed = urlparse(url if "://" in url else f"http://{url}")
        host = re.sub(r"[^A-Za-z0-9._-]", "_", parsed.hostname or "server")
        root = root / f"{host}_{parsed.port or (443 if parsed.scheme == 'https' else 8000)}"
    return root / settings.collection_name


def open_lexical(store: Store, settings: Settings) -> LexicalCache:
    cfg = settings.retrieval
    return LexicalCache(
        store,
        lexical_dir(settings),
        cfg.lexical_refresh_seconds,
        cfg.record_cache,
        cfg.lexical_sync_below,
        # Another process can open a server's store; an embedded one stays in this one.
        apart=settings if settings.chroma_url else None,
        apart_from=cfg.lexical_build_apart_from,
    )


def _build_apart(settings: Settings, directory: str, version: str | None) -> dict[str, Any]:
    """Run in a child process: bring `directory` up to the store's log (a full build,
    as the parent found) and say what it did. The child's memory goes with it."""
    cache = LexicalCache(open_store(settings), Path(directory))
    cache._sync(version)
    s = cache.stats
    return {"full_builds": s.full_builds, "docs_added": s.docs_added, "pid": os.getpid()}


class LexicalCache:
    """The current BM25 view for one store, and the chunk records read since the
    store last changed; catches up with the store's change log when it changes."""

    def __init__(
        self,
        store: Store,
        directory: Path | None,
        refresh_seconds: float = 2.0,
        record_cache: int = 0,
        sync_below: int = 10_000,
        apart: Settings | None = None,
        apart_from: int = 100_000,
    ) -> None:
        self.store = store
        self.apart = apart  # settings a child process opens the same store with
        self.apart_from = apart_from
        if directory is None:  # a throwaway index (a one-off process, a test)
            self._tmp = tempfile.TemporaryDirectory(prefix="citeqa-lexical-")
            directory = Path(self._tmp.name)
        self.directory = Path(directory)
        self.refresh_seconds = refresh_seconds
        self.record_cache = record_cache
        self.sync_below = sync_below
        self.records = RecordCache(record_cache)
        self.stats = LexicalStats()
        self._records_version: str | None = None
        self._records_position: LogPosition | None = None
        # The papers changed in the store, as this reader has seen its log: where the
        # watch began, and paper id -> a log entry at or after its latest change. A
        # view serves a paper's records itself only when no change to the paper is
        # known past the view's position (`read_records`). Replaced whole, never
        # emptied in place: a query reads it without a lock.
        self._tracking: tuple[LogPosition | None, dict[str, int]] = (None, {})
        self._index: LexicalIndex | None = None
        self._tantivy: tantivy.Index | None = None
        self._checked = 0.0
        self._lock = threading.Lock()  # the current view and the catch-up thread
        self._sync_lock = threading.Lock()  # one catch-up at a time in this process
        self._building: threading.Thread | None = None
        self._checking: threading.Thread | None = None  # a store check beside the queries
        self._spawn_lock = threading.Lock()  # one such check at a time
        self._wrote = False  # this process wrote: its next query checks the store itself
        self._serial = 0  # views in the order they were made: a late one never wins
        self._shown = 0

    # -- the surface the retriever and the API use ------------------------------

    def get(self) -> LexicalIndex:
        """The view to search now. Every `refresh_seconds` the store's version is
        checked: in the query for an index below `sync_below` chunks (it catches up
        there too), beside the queries for a larger one, so that a query never waits
        on a store that is busy (an ingest at 1M chunks kept a version read waiting
        for 0.24 s) while the current view can answer; after this process wrote
        (`invalidate`), always in the query."""
        index = self._index
        if index is not None and time.monotonic() - self._checked < self.refresh_seconds:
            return index
        if index is not None and len(index) >= self.sync_below and not self._wrote:
            self._check_beside()
            return index
        with self._lock:
            return self._check()

    def _check_beside(self) -> None:
        with self._spawn_lock:
            if self._checking is not None:
                return
            self._checking = threading.Thread(
                target=self._check_in_background, name="bm25-check", daemon=True
            )
            self._checking.start()

    def _check_in_background(self) -> None:
        try:
            with self._lock:
                self._check()
        except Exception as exc:  # the current view keeps answering; try again later
            log.warning("store check failed, the current BM25 view keeps answering: %s", exc)
            self._checked = time.monotonic()
        finally:
            with self._spawn_lock:
                self._checking = None

    def _check(self) -> LexicalIndex:
        """Look at the store's version and act on a change (caller holds `_lock`)."""
        version = self.store.version()
        self._checked = time.monotonic()
        self._wrote = False
        if version != self._records_version:
            self._forget_changed_records(version)
        if self._index is None:
            self._show(*self._open_on_disk())  # a snapshot, if there is one
        current = self._index
        if current is not None and current.version == version:
            return current
        if current is None or len(current) < self.sync_below:
            self._show(*self._sync(version))
        elif self._building is None:
            self._building = threading.Thread(
                target=self._sync_in_background,
                args=(version,),
                name="bm25-catch-up",
                daemon=True,
            )
            self._building.start()
        assert self._index is not None
        return self._index

    def invalidate(self) -> None:
        """Look at the store's version on the next query (this process just wrote).
        No work here: the next query's policy decides how to catch up."""
        self._wrote = True
        self._checked = 0.0

    def clear_records(self, version: str | None = None) -> None:
        """Forget every chunk record read so far (they may belong to an older version)."""
        self.records = RecordCache(self.record_cache)
        self._records_version = version

    def _forget_changed_records(self, version: str | None) -> None:
        """The store is at a new version: forget the records of the papers its change
        log names since the records were last checked (an ingest of N papers costs
        the cache those N), or all of them when the log cannot tell."""
        try:
            changes = self.store.changes_since(self._records_position)
        except StoreUnavailable as exc:  # keep nothing that may be old
            log.warning("store change log unreadable, dropping cached records: %s", exc)
            self._records_position = None
            self._tracking = (None, {})
            self.clear_records(None)
            return
        if self._records_position is None or changes.paper_ids is None:
            self.clear_records(version)
            self._tracking = (changes.head, {})  # views older than this serve none
        else:
            self.records.forget_papers(changes.paper_ids)
            self._records_version = version
            self._track(changes.paper_ids, changes.head)
        self._records_position = changes.head

    TRACKED_MAX = RecordCache.FORGOTTEN_MAX
    """Changed papers remembered; past this, those the current view holds are dropped."""

    def _track(self, paper_ids: Iterable[str], head: LogPosition) -> None:
        since, changed = self._tracking
        for pid in paper_ids:
            changed[pid] = head.seq  # it changed after the last look, at or before head
        current = self._index
        if len(changed) > self.TRACKED_MAX and current is not None and current.position:
            # Views older than the current one stop serving records; for it and newer
            # ones, what it already holds needs no entry.
            seen = current.position.seq
            if since is not None and current.position.epoch == since.epoch and seen > since.seq:
                kept = {pid: seq for pid, seq in changed.items() if seq > seen}
                self._tracking = (current.position, kept)

    def _fresh(self, view: LexicalIndex | None, ids: Sequence[str]) -> list[str]:
        """The ids whose paper `view` holds as the store does, as far as this reader
        has seen the change log (none when it cannot tell)."""
        since, changed = self._tracking
        at = view.position if view is not None else None
        if at is None or since is None or at.epoch != since.epoch or at.seq < since.seq:
            return []
        return [cid for cid in ids if changed.get(split_chunk_id(cid)[0], -1) <= at.seq]

    def local_vectors(self, view: LexicalIndex | None, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of `ids` whose paper `view` holds as the store does: what
        a search scores BM25's candidates with when the store's dense search is late."""
        fresh = self._fresh(view, ids)
        return view.vectors(fresh) if fresh else {}  # type: ignore[union-attr]

    def read_records(self, view: LexicalIndex | None, ids: Sequence[str]) -> list[ChunkHit]:
        """The records of `ids` that exist, in the order asked: from `view`'s stored
        documents for the papers it holds as the store does (no change to them logged
        past the view's position, as far as this reader has seen the log), from the
        store for the rest. A search then reads the store only for papers that changed
        since its view, so a busy store does not slow the read of the others."""
        local: dict[str, ChunkHit] = {}
        fresh = self._fresh(view, ids)
        if fresh:
            local = {hit.id: hit for hit in view.records(fresh)}  # type: ignore[union-attr]
        rest = [cid for cid in ids if cid not in local]
        fetched = {hit.id: hit for hit in self.store.get(rest)} if rest else {}
        self.stats.records_local += len(local)
        self.stats.records_fetched += len(rest)
        return [local.get(cid) or fetched[cid] for cid in ids if cid in local or cid in fetched]

    @property
    def current(self) -> LexicalIndex | None:
        """The view queries use now, without checking the store."""
        return self._index

    @property
    def rebuilding(self) -> bool:
        """A catch-up runs in the background (the current view answers meanwhile)."""
        return self._building is not None

    def wait(self, timeout: float | None = None) -> None:
        """Block until a store check beside the queries and a background catch-up in
        progress (if any) are done, the new view swapped in."""
        for attr in ("_checking", "_building"):  # a check may start a catch-up
            thread = getattr(self, attr)
            if thread is not None:
                thread.join(timeout)

    # -- views --------------------------------------------------------------------

    def _show(self, serial: int, index: LexicalIndex | None) -> None:
        """Swap in a view unless a newer one already is (caller holds `_lock`)."""
        if index is not None and serial > self._shown:
            self._index, self._shown = index, serial

    def _view(self, version: str | None, position: LogPosition | None) -> tuple[int, LexicalIndex]:
        ix = self._open_tantivy()
        for attempt in range(3):
            try:
                ix.reload()
                break
            except Exception:  # a segment went between reading meta.json and opening it
                if attempt == 2:
                    raise
                time.sleep(0.05)
        self._serial += 1
        return self._serial, LexicalIndex(ix.searcher(), version, position)

    def _open_on_disk(self) -> tuple[int, LexicalIndex | None]:
        """The committed index as it is on disk, not yet checked against the store."""
        if self._read_marker() is None:
            return 0, None
        with self._sync_lock:
            self.stats.reloads += 1
            return self._view(None, self._read_marker())

    # -- catching up ----------------------------------------------------------------

    def _sync_in_background(self, version: str | None) -> None:
        t0 = time.perf_counter()
        try:
            view = self._sync(version)
        except Exception as exc:  # the store went away: the current view keeps serving
            log.warning("BM25 catch-up failed, keeping the current index: %s", exc)
            with self._lock:
                self._building = None
                self._checked = 0.0  # try again on the next query
            return
        with self._lock:
            self._show(*view)
            self._building = None
            self._checked = 0.0  # the store may have moved on meanwhile: look again
        log.info("BM25 index at version %s after %.2fs", version, time.perf_counter() - t0)

    def _sync(self, version: str | None) -> tuple[int, LexicalIndex]:
        """Bring the directory up to the store's log (or find that another process
        is doing so) and return a view on it. `version` is the store's version read
        before the log: a view labelled with it holds every change logged before it."""
        with self._sync_lock:
            marker = self._read_marker()
            changes = self.store.changes_since(marker)
            if (marker is None or changes.paper_ids is None) and self._builds_apart():
                self._build_apart(version)  # then apply what came after, as usual
                marker = self._read_marker()
                changes = self.store.changes_since(marker)
            if marker is not None and changes.paper_ids == frozenset():
                self.stats.reloads += 1
                return self._view(version, marker)  # on disk is current: reload only
            writer = self._try_writer()
            if writer is None:  # another process is applying: show what it committed
                self.stats.reloads += 1
                return self._view(None, marker)
            try:
                moved = self._read_marker()  # another process may have applied meanwhile
                if moved != marker:
                    changes = self.store.changes_since(moved)
                if moved is None or changes.paper_ids != frozenset():
                    self._apply(writer, changes)
                    self._write_marker(changes.head, version)
                    self.stats.applied.append(changes.head.seq)
            finally:
                # Let this commit's segment merges finish (so segments do not pile up
                # and deleted documents are purged), then free the directory's lock.
                try:
                    writer.wait_merging_threads()
                except Exception as exc:  # the writer is dropped either way
                    log.warning("BM25 segment merge did not finish: %s", exc)
                del writer
            return self._view(version, changes.head)

    def _builds_apart(self) -> bool:
        return self.apart is not None and self.store.count() >= self.apart_from

    def _build_apart(self, version: str | None) -> None:
        """A full build in a child process (spawned: no copy of this one's heap). The
        index lands on disk; this process only opens it, so it keeps none of the build's
        memory (a reader that built 1M chunks in process kept about 0.8 GB of it)."""
        assert self.apart is not None
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            done = pool.submit(_build_apart, self.apart, str(self.directory), version).result()
        self.stats.full_builds += done["full_builds"]
        self.stats.built_apart += done["full_builds"]
        self.stats.docs_added += done["docs_added"]
        log.info(
            "BM25 index built in process %s (%d chunks) in %.2fs",
            done["pid"],
            done["docs_added"],
            time.perf_counter() - t0,
        )

    def _apply(self, writer: Any, changes: Changes) -> None:
        t0 = time.perf_counter()
        if changes.paper_ids is None:
            writer.delete_all_documents()
            n = self._add(writer, self.store.iter_records(with_vectors=True))
            writer.commit()
            self.stats.full_builds += 1
            log.info("BM25 index built from %d chunks in %.2fs", n, time.perf_counter() - t0)
            return
        papers = sorted(changes.paper_ids)
        for pid in papers:
            writer.delete_documents_by_term("paper_id", pid)
        ids = [c.id for chunks in self.store.chunks_of(papers).values() for c in chunks]
        n = self._add(writer, self._read(ids))
        writer.commit()
        self.stats.papers_applied += len(papers)
        log.info(
            "BM25 index: %d changed papers (%d chunks) applied in %.2fs",
            len(papers),
            n,
            time.perf_counter() - t0,
        )

    def _read(self, ids: list[str]) -> Iterable[ChunkHit]:
        for lo in range(0, len(ids), _PAGE):
            yield from self.store.get(ids[lo : lo + _PAGE], with_vectors=True)

    def _add(self, writer: Any, rows: Iterable[ChunkHit]) -> int:
        n = 0
        for hit in rows:
            writer.add_document(_document(hit))
            n += 1
        self.stats.docs_added += n
        return n

    # -- the directory ----------------------------------------------------------------

    def _open_tantivy(self) -> tantivy.Index:
        if self._tantivy is None:
            path = self._index_path
            path.mkdir(parents=True, exist_ok=True)
            ix = tantivy.Index(schema(), path=str(path), reuse=True)
            ix.register_tokenizer(ANALYZER, analyzer())  # on every open: it is not saved
            ix.config_reader(reload_policy="Manual")  # views change only when we say
            self._tantivy = ix
        return self._tantivy

    def _try_writer(self) -> Any | None:
        try:
            return self._open_tantivy().writer(WRITER_HEAP, num_threads=1)
        except ValueError as exc:
            if "LockBusy" in str(exc):
                return None
            raise

    @property
    def _index_path(self) -> Path:
        return self.directory / f"index-v{FORMAT}"

    @property
    def _marker_path(self) -> Path:
        return self.directory / f"applied-v{FORMAT}.json"

    def _read_marker(self) -> LogPosition | None:
        """The log position the committed index holds (None: no usable index)."""
        try:
            data = json.loads(self._marker_path.read_text())
            if not (self._index_path / "meta.json").exists():
                # A marker outlives its index only in a damaged directory (the marker
                # is written after the commit): drop it, so an empty index made in its
                # place is never taken for one at that position.
                self._marker_path.unlink(missing_ok=True)
                return None
            if data.get("format") != FORMAT:
                return None
            return LogPosition(str(data["epoch"]), int(data["seq"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_marker(self, position: LogPosition, version: str | None) -> None:
        """After the commit, atomically: a crash between the two only costs
        applying the same entries again (deleting and re-adding is idempotent)."""
        data = {"format": FORMAT, "epoch": position.epoch, "seq": position.seq, "version": version}
        tmp = self._marker_path.with_name(f".applied.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._marker_path)
