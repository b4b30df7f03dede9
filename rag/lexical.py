"""BM25 over the chunks (bm25s), following the Chroma collection by itself.

The index is always built from the documents in Chroma, never from the
ingest job's input, so a process that shares no disk with the ingest job
(the API against a `chroma run` server) still has it. Ingestion stamps the
collection with a new version marker before and after it writes; a reader
whose index carries another stamp rebuilds it, from a copy saved on local
disk when one with the right stamp is there, else from Chroma.

A small index is rebuilt in the query that notices the new stamp, so a reader
sees its own writes at once. A large one (300k chunks take minutes) is rebuilt
in the background while the old index keeps answering: new chunks are found
by dense search meanwhile, and chunks that are gone are dropped when their
records are read (the record cache is emptied at once, so no query shows old
text).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from rag.settings import Settings
from rag.store import RecordCache, Store
from rag.text import STOPWORDS, stemmer
from rag.types import indexed_text

log = logging.getLogger(__name__)
_STOPWORDS = sorted(STOPWORDS)


def _tokenize(texts: list[str], *, ids: bool) -> Any:
    return bm25s.tokenize(
        texts, stopwords=_STOPWORDS, stemmer=stemmer(), return_ids=ids, show_progress=False
    )


_JIT_READY = threading.Event()
_JIT_LOCK = threading.Lock()


def compile_jit() -> bool:
    """Compile bm25s' numba kernels, once per process (about 9 s on 2 cores), so
    every index searches through them from then on: at 300k chunks a query takes
    under 1 ms against about 15 ms in numpy, with the same scores. The API does
    this in the background at start; until it is done, and in one-shot commands
    that never do it, numpy serves. False when numba is not installed."""
    with _JIT_LOCK:
        if _JIT_READY.is_set():
            return True
        try:
            import numba  # noqa: F401
        except ImportError:
            return False
        toy = bm25s.BM25(backend="numba")
        toy.index(
            _tokenize(["compile the kernels", "sparse lexical kernels"], ids=True),
            show_progress=False,
        )
        query = _tokenize(["kernels"], ids=False)
        for mask in (None, np.ones(2, dtype=np.float32)):
            toy.retrieve(query, k=1, show_progress=False, n_threads=0, weight_mask=mask)
        _JIT_READY.set()
        return True


def jit_ready() -> bool:
    return _JIT_READY.is_set()


@dataclass(frozen=True)
class LexicalHit:
    id: str
    paper_id: str
    score: float


class LexicalIndex:
    """BM25 over chunk texts, with the metadata needed to filter results."""

    def __init__(
        self,
        retriever: bm25s.BM25 | None,
        ids: list[str],
        meta: list[dict[str, Any]],
        version: str | None,
    ) -> None:
        self.retriever = retriever
        self.ids = ids
        self.meta = meta
        self.version = version

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls, rows: Iterable[tuple[str, str, dict[str, Any]]], version: str | None
    ) -> LexicalIndex:
        ids: list[str] = []
        texts: list[str] = []
        meta: list[dict[str, Any]] = []
        for cid, text, m in rows:
            ids.append(cid)
            texts.append(indexed_text(str(m.get("title", "")), text))
            meta.append(
                {k: m[k] for k in ("paper_id", "year", "categories") if k in m and m[k] is not None}
            )
        if not ids:
            return cls(None, [], [], version)
        retriever = bm25s.BM25()
        try:
            retriever.index(_tokenize(texts, ids=True), show_progress=False)
        except ValueError:  # no indexable word in any chunk
            return cls(None, ids, meta, version)
        return cls(retriever, ids, meta, version)

    @classmethod
    def from_store(cls, store: Store) -> LexicalIndex:
        version = store.version()
        t0 = time.perf_counter()
        rows = (
            (cid, doc or "", meta) for cid, doc, meta in store.iter_chunks(include_documents=True)
        )
        index = cls.build(rows, version)
        log.info("BM25 index built from %d chunks in %.2fs", len(index), time.perf_counter() - t0)
        return index

    def search(self, query: str, n: int, allowed: np.ndarray | None = None) -> list[LexicalHit]:
        if self.retriever is None or n <= 0:
            return []
        tokens = _tokenize([query], ids=False)
        vocab = self.retriever.vocab_dict
        known = [t for t in tokens[0] if t in vocab] if tokens else []
        if not known:
            return []  # no query word is in the corpus: nothing can score
        if _JIT_READY.is_set() and self.retriever.backend != "numba":
            self.retriever.backend = "numba"
        k = min(n, len(self.ids))
        docs, scores = self.retriever.retrieve(
            [known], k=k, show_progress=False, weight_mask=allowed, n_threads=0
        )
        hits = []
        for idx, score in zip(docs[0], scores[0], strict=True):
            if score <= 0:
                continue
            hits.append(
                LexicalHit(self.ids[int(idx)], str(self.meta[int(idx)]["paper_id"]), float(score))
            )
        return hits

    def idf(self, term: str) -> float:
        """BM25's idf of a (stemmed) term; a term the corpus never holds gets the largest."""
        n_docs = max(len(self.ids), 1)
        if self.retriever is None:
            return 1.0
        tid = self.retriever.vocab_dict.get(term)
        indptr = self.retriever.scores["indptr"]
        df = 0 if tid is None else int(indptr[tid + 1] - indptr[tid])
        return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))

    def mask(self, keep: Any) -> np.ndarray:
        """1 where `keep(meta)` is true: how metadata filters reach BM25."""
        return np.array([1.0 if keep(m) else 0.0 for m in self.meta], dtype=np.float32)

    # -- persistence --------------------------------------------------------

    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.retriever is not None:
            self.retriever.save(str(tmp / "bm25"), show_progress=False)
        (tmp / "rows.json").write_text(json.dumps({"ids": self.ids, "meta": self.meta}))
        (tmp / "stamp.json").write_text(json.dumps({"version": self.version}))
        # Swap in whole, so a reader never loads a half-written index.
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        try:
            stamp = json.loads((directory / "stamp.json").read_text())
            rows = json.loads((directory / "rows.json").read_text())
            retriever = (
                bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
                if rows["ids"]
                else None
            )
        except (OSError, ValueError, KeyError):
            return None
        return cls(retriever, rows["ids"], rows["meta"], stamp.get("version"))


def lexical_dir(settings: Settings) -> Path | None:
    """Where the BM25 copy is kept: beside an embedded store; nowhere for a server,
    whose readers share no disk and rebuild from Chroma instead."""
    if settings.chroma_url:
        return None
    return settings.data_dir / "bm25" / settings.collection_name


def open_lexical(store: Store, settings: Settings) -> LexicalCache:
    cfg = settings.retrieval
    return LexicalCache(
        store,
        lexical_dir(settings),
        cfg.lexical_refresh_seconds,
        cfg.record_cache,
        cfg.lexical_sync_below,
    )


class LexicalCache:
    """The current BM25 index for one store, and the chunk records read since the
    collection last changed; rebuilt when the collection changes."""

    def __init__(
        self,
        store: Store,
        directory: Path | None,
        refresh_seconds: float = 2.0,
        record_cache: int = 0,
        sync_below: int = 10_000,
    ) -> None:
        self.store = store
        self.directory = directory
        self.refresh_seconds = refresh_seconds
        self.record_cache = record_cache
        self.sync_below = sync_below
        self.records = RecordCache(record_cache)
        self._records_version: str | None = None
        self._index: LexicalIndex | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._building: threading.Thread | None = None
        self._generation = 0  # bumped on every swap, so a late build never undoes a newer one

    def get(self) -> LexicalIndex:
        now = time.monotonic()
        index = self._index
        if index is not None and now - self._checked < self.refresh_seconds:
            return index
        with self._lock:
            version = self.store.version()
            self._checked = time.monotonic()
            if version != self._records_version:
                self.clear_records(version)
            current = self._index
            if current is not None and current.version == version:
                return current
            if current is None or len(current) < self.sync_below:
                self._swap(self._load_or_build(version))
            elif self._building is None:
                self._building = threading.Thread(
                    target=self._build_in_background,
                    args=(version, self._generation),
                    name="bm25-rebuild",
                    daemon=True,
                )
                self._building.start()
            assert self._index is not None
            return self._index

    def invalidate(self) -> None:
        """Look at the store's version stamp on the next query (this process just
        wrote). No rebuild here: the next query's policy decides how to catch up."""
        self._checked = 0.0

    def clear_records(self, version: str | None = None) -> None:
        """Forget every chunk record read so far (they may belong to an older version)."""
        self.records = RecordCache(self.record_cache)
        self._records_version = version

    @property
    def current(self) -> LexicalIndex | None:
        """The index queries use now, without checking the store."""
        return self._index

    @property
    def rebuilding(self) -> bool:
        return self._building is not None

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background rebuild in progress (if any) has swapped in."""
        building = self._building
        if building is not None:
            building.join(timeout)

    def _swap(self, index: LexicalIndex) -> None:
        self._index = index
        self._generation += 1

    def _build_in_background(self, version: str | None, generation: int) -> None:
        t0 = time.perf_counter()
        try:
            index = self._load_or_build(version)
        except Exception as exc:  # the store went away: the old index keeps serving
            log.warning("BM25 rebuild failed, keeping the current index: %s", exc)
            with self._lock:
                self._building = None
                self._checked = 0.0  # try again on the next query
            return
        with self._lock:
            if self._generation == generation:
                self._swap(index)
            self._building = None
            self._checked = 0.0  # the store may have moved on meanwhile: look again
        log.info(
            "BM25 index for version %s swapped in after %.1fs", version, time.perf_counter() - t0
        )

    def _load_or_build(self, version: str | None) -> LexicalIndex:
        if self.directory is not None and version is not None:
            saved = LexicalIndex.load(self.directory)
            if saved is not None and saved.version == version:
                return saved
        index = LexicalIndex.from_store(self.store)
        self._save(index)
        return index

    def _save(self, index: LexicalIndex) -> None:
        if self.directory is None or index.version is None:
            return
        try:
            index.save(self.directory)
        except OSError as exc:  # a read-only disk costs a rebuild next start, nothing more
            log.warning("could not save the BM25 index to %s: %s", self.directory, exc)
