"""The ingestion job: read, diff against the store, chunk, embed, upsert, prune.

Re-runnable by construction. Every chunk record carries its paper's content
hash and chunk count, so a paper is "unchanged" only when the store holds
exactly its chunks `0..n-1`, all written from the same content. Anything
else (new, changed, or half-written by a killed run) is re-embedded and
upserted, then the paper's stale chunk ids are deleted. Writes are
idempotent upserts keyed by `paper_id#chunk_index`, so a run killed at any
point and run again ends in the state of one clean run.

Readers follow the store through its change log (rag/index/store.py): before the
first write of a batch of papers the job logs their ids, and again once the
batch is written. The first entry makes a run killed mid-batch still name what
it touched; the second tells readers the batch is complete. A reader that only
looks after the run re-reads each changed paper once (it applies the union).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings
from tqdm import tqdm

from ingest.chunk import chunk_paper, embed_text
from ingest.loaders import Skipped, check_readable, load
from rag.index.store import Store, StoredChunk
from rag.settings import Settings
from rag.types import Chunk, Paper, chunk_id

PAPERS_PER_BATCH = 256
MAX_REPORTED = 100
"""Skipped records listed in a summary; the rest are only counted (`errors_total`),
so a file of garbage cannot grow the report (or the memory holding it) without bound."""

log = logging.getLogger(__name__)


class PruneRefused(Exception):
    """An unconfirmed prune whose input yields no papers, or far fewer than the prune
    would delete (a file of junk, the wrong format, a truncated export). Raised before
    anything is deleted."""


def prune_refusal(read: int, gone: int, stored: int, ratio: float | None) -> str | None:
    """Why a prune that keeps `read` papers and deletes `gone` of the `stored` ones is
    refused without confirmation, or None when it may go ahead."""
    if gone == 0:
        return None
    if read == 0:
        why = "the input yields no papers"
    elif ratio is not None and gone > ratio * read:
        why = f"the input yields only {read} paper(s)"
    else:
        return None
    return (
        f"prune refused: {why} and pruning would delete {gone} of the {stored} stored "
        "papers; nothing was written or deleted. Check the input (its format, whether it is "
        "whole), or confirm the prune (citeqa ingest --confirm-prune, confirm_prune=true)"
    )


@dataclass
class IngestSummary:
    papers_read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    pruned: int = 0
    seconds: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    """The first `max_reported` skipped records: file, line and reason."""
    errors_total: int = 0
    """Every skipped record, listed or not."""
    errors_truncated: bool = False
    """True when `errors` lists fewer than `errors_total`."""
    warnings: list[dict[str, Any]] = field(default_factory=list)
    """The first `max_reported` records stored with a change (a link dropped)."""
    warnings_total: int = 0
    prune_note: str | None = None
    max_reported: int = field(default=MAX_REPORTED, repr=False, compare=False)

    def add_error(self, file: str, line: int, reason: str) -> None:
        self.errors_total += 1
        if len(self.errors) < self.max_reported:
            self.errors.append({"file": file, "line": line, "reason": reason})
        else:
            self.errors_truncated = True

    def add_warning(self, file: str, line: int, reason: str) -> None:
        self.warnings_total += 1
        if len(self.warnings) < self.max_reported:
            self.warnings.append({"file": file, "line": line, "reason": reason})

    @property
    def papers_per_second(self) -> float:
        return self.papers_read / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["max_reported"]
        data["seconds"] = round(self.seconds, 3)
        data["papers_per_second"] = round(self.papers_per_second, 2)
        return data

    def to_text(self) -> str:
        lines = [f"skipped {e['file']}:{e['line']}: {e['reason']}" for e in self.errors]
        if self.errors_truncated:
            lines.append(
                f"... and {self.errors_total - len(self.errors)} more skipped records "
                f"(only the first {len(self.errors)} are listed)"
            )
        lines += [f"warning {w['file']}:{w['line']}: {w['reason']}" for w in self.warnings]
        if self.warnings_total > len(self.warnings):
            lines.append(f"... and {self.warnings_total - len(self.warnings)} more warnings")
        lines.append(
            f"{self.papers_read} papers read: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped"
            + (f", {self.pruned} pruned" if self.pruned else "")
        )
        lines.append(
            f"{self.chunks_written} chunks written, {self.chunks_deleted} deleted in "
            f"{self.seconds:.2f}s ({self.papers_per_second:.1f} papers/s)"
        )
        if self.prune_note:
            lines.append(self.prune_note)
        return "\n".join(lines)


def chunk_metadata(paper: Paper, chunk: Chunk, n_chunks: int, paper_hash: str) -> dict[str, Any]:
    """What each chunk record carries (see rag/index/store.py); None means absent."""
    meta: dict[str, Any] = {
        "paper_id": paper.paper_id,
        "title": paper.title,
        "chunk_index": chunk.chunk_index,
        "start": chunk.start,
        "end": chunk.end,
        "n_chunks": n_chunks,
        "paper_hash": paper_hash,
        "url": paper.url or None,
        "year": paper.year,
        "authors": list(paper.authors),
        "categories": list(paper.categories),
        "code_links": list(paper.code_links),
    }
    if chunk.chunk_index == 0:
        # The whole abstract rides on chunk 0, so papers can be shown without a second store.
        meta["abstract"] = paper.abstract
        if paper.extra:
            meta["extra"] = json.dumps(paper.extra, ensure_ascii=False, sort_keys=True)
    return meta


def is_current(stored: list[StoredChunk], paper_id: str, paper_hash: str) -> bool:
    """True when the store holds exactly this content's chunks, all of them."""
    if not stored:
        return False
    n = stored[0].metadata.get("n_chunks")
    if not isinstance(n, int) or len(stored) != n:
        return False
    if any(s.metadata.get("paper_hash") != paper_hash for s in stored):
        return False
    return {s.id for s in stored} == {chunk_id(paper_id, i) for i in range(n)}


@dataclass
class Pending:
    """A paper to write: its chunks, and the stored chunk ids its new version lacks."""

    paper: Paper
    paper_hash: str
    chunks: list[Chunk]
    stale_ids: list[str]
    vectors: list[list[float]] | None = None
    """One per chunk when embedded elsewhere (Ray's embedding actors); None: embed here."""


def plan_papers(
    papers: Sequence[Paper],
    stored: Mapping[str, list[StoredChunk]],
    settings: Settings,
) -> list[tuple[str, Pending | None]]:
    """Per paper, in order: ("unchanged", None) when the store holds exactly this
    content, else ("added" or "updated", what to write). The one diff against the
    store, for the local job and for Ray's ingestion alike."""
    plans: list[tuple[str, Pending | None]] = []
    for paper in papers:
        paper_hash = paper.content_hash()
        existing = stored.get(paper.paper_id, [])
        if is_current(existing, paper.paper_id, paper_hash):
            plans.append(("unchanged", None))
            continue
        chunks = chunk_paper(paper, settings.chunking.size, settings.chunking.overlap)
        new_ids = {c.id for c in chunks}
        stale = [s.id for s in existing if s.id not in new_ids]
        status = "updated" if existing else "added"
        plans.append((status, Pending(paper, paper_hash, chunks, stale)))
    return plans


class IngestJob:
    def __init__(
        self,
        store: Store,
        embeddings: Embeddings | None,
        settings: Settings,
        *,
        progress: bool | None = None,
        papers_per_batch: int = PAPERS_PER_BATCH,
        max_reported: int = MAX_REPORTED,
        confirm_prune: bool = False,
    ) -> None:
        """`confirm_prune`: prune even when the input holds far fewer papers than the
        prune deletes (see `prune_refusal`)."""
        self.confirm_prune = confirm_prune
        self.papers_per_batch = papers_per_batch
        self.max_reported = max_reported
        self._names: dict[str, str] = {}
        self.store = store
        self._open: set[str] = set()
        """Papers logged as being written whose completion is not logged yet."""
        self.embeddings = embeddings
        self.settings = settings
        self.progress = sys.stderr.isatty() if progress is None else progress

    def run(
        self,
        paths: Sequence[str],
        *,
        fmt: str | None = None,
        prune: bool = False,
        names: Sequence[str] | None = None,
    ) -> IngestSummary:
        """`names`, one per path, are what the report calls the files (default: the
        paths); the API passes the uploaded file's name, never its temporary path."""
        for path in paths:
            check_readable(path)  # fail before touching the store
        if names is not None and len(names) != len(paths):
            raise ValueError("one name per path")
        if prune and not self.confirm_prune:
            self.check_prune(paths, fmt)  # before the first write, not after the last
        started = time.perf_counter()
        summary = IngestSummary(max_reported=self.max_reported)
        self._names = dict(zip(paths, names or paths, strict=True))
        seen: dict[str, str] = {}
        bar = tqdm(
            desc="ingest", unit="paper", disable=not self.progress, file=sys.stderr, leave=False
        )
        with self.writing():
            papers = self._papers(paths, fmt, summary, seen, bar)
            for number, batch in enumerate(_batched(papers, self.papers_per_batch), 1):
                self._write_batch(batch, summary)
                log.info(
                    "batch %d done: %d papers read, %d chunks written",
                    number,
                    summary.papers_read,
                    summary.chunks_written,
                )
                bar.set_postfix(
                    added=summary.added, updated=summary.updated, chunks=summary.chunks_written
                )
            bar.close()
            if prune:
                self.prune(seen, summary)
        bar.close()
        summary.seconds = time.perf_counter() - started
        return summary

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around a run's writes: each write logs its papers before it starts
        (`_begin`) and when it is done (`_done`); whatever is still open when the
        run ends, however it ends, is logged then."""
        self._open = set()
        try:
            yield
        finally:
            self._publish()

    def delete_papers(self, paper_ids: Sequence[str]) -> int:
        """Remove papers and all their chunks; returns how many chunks went."""
        stored = self.store.chunks_of(paper_ids)
        ids = [c.id for chunks in stored.values() for c in chunks]
        if not ids:
            return 0
        self._open = set()
        try:
            self._begin(stored)
            self.store.delete(ids)
        finally:
            self._publish()
        return len(ids)

    def _begin(self, paper_ids: Iterable[str]) -> None:
        """Log papers as being changed before the first write touches them, so a run
        killed part-way still names them and no reader trusts its copy of them."""
        new = set(paper_ids) - self._open
        if new:
            self.store.log_changes(new)
            self._open |= new

    def _done(self) -> None:
        """Log the papers written since `_begin` as complete: readers re-read them.
        Only the log: each reader's own policy decides when it catches up, so a
        write never stalls a reader."""
        if self._open:
            self.store.log_changes(self._open)
            self._open = set()

    def _publish(self) -> None:
        """At the end of a run, ended well or not: log what is still open."""
        try:
            self._done()
        except Exception as exc:  # never hide the error that ended the run
            log.warning("could not log the change to the store: %s", exc)

    def _papers(
        self,
        paths: Sequence[str],
        fmt: str | None,
        summary: IngestSummary,
        seen: dict[str, str],
        bar: tqdm,
    ) -> Iterator[Paper]:
        for path in paths:
            for line, item in load(path, fmt):
                paper = self.accept(path, line, item, summary, seen)
                if paper is not None:
                    bar.update(1)
                    yield paper

    def accept(
        self,
        path: str,
        line: int,
        item: Paper | Skipped,
        summary: IngestSummary,
        seen: dict[str, str],
    ) -> Paper | None:
        """Count one record read from `path` at `line`: the paper to ingest, or None
        when it is skipped (a bad record, or a paper id already seen in this run:
        the first in input order wins)."""
        name = self._names.get(path, path)
        if isinstance(item, Skipped):
            summary.skipped += 1
            summary.add_error(name, line, item.reason.replace(path, name))
            return None
        if item.paper_id in seen:
            summary.skipped += 1
            reason = f"duplicate paper id {item.paper_id} (first at {seen[item.paper_id]})"
            summary.add_error(name, line, reason)
            return None
        summary.papers_read += 1
        seen[item.paper_id] = f"{name}:{line}"
        for note in item.notes:
            summary.add_warning(name, line, note)
        return item

    def _write_batch(self, papers: list[Paper], summary: IngestSummary) -> None:
        stored = self.store.chunks_of(p.paper_id for p in papers)
        pending = []
        for status, plan in plan_papers(papers, stored, self.settings):
            self.count(status, summary)
            if plan is not None:
                pending.append(plan)
        self.write_pending(pending, summary)

    @staticmethod
    def count(status: str, summary: IngestSummary) -> None:
        """One paper's outcome ("added", "updated" or "unchanged") in the summary."""
        setattr(summary, status, getattr(summary, status) + 1)

    def write_pending(self, pending: list[Pending], summary: IngestSummary) -> None:
        """Embed (unless already embedded) and upsert in paper-aligned slices, then
        drop the papers' stale chunk ids."""
        rows = [(p, c) for p in pending for c in p.chunks]
        self._begin(p.paper.paper_id for p in pending if p.chunks or p.stale_ids)
        step = max(1, min(self.store.max_batch_size, self.settings.write_batch))
        for part in _paper_aligned(rows, step, self.store.max_batch_size):
            self.store.upsert(
                ids=[c.id for _, c in part],
                embeddings=self._vectors(part),
                documents=[c.text for _, c in part],
                metadatas=[
                    chunk_metadata(p.paper, c, len(p.chunks), p.paper_hash) for p, c in part
                ],
            )
            summary.chunks_written += len(part)
        # Only after every new chunk of a paper is in: drop chunk ids the new version lacks.
        stale = [sid for p in pending for sid in p.stale_ids]
        if stale:
            self.store.delete(stale)
            summary.chunks_deleted += len(stale)
        self._done()

    def _vectors(self, part: list[tuple[Pending, Chunk]]) -> list[list[float]]:
        if all(p.vectors is not None for p, _ in part):
            return [p.vectors[c.chunk_index] for p, c in part]  # type: ignore[index]
        if self.embeddings is None:
            raise ValueError("papers without vectors, and no embedder to embed them")
        return self.embeddings.embed_documents(
            [embed_text(p.paper, c, self.settings.chunking.title) for p, c in part]
        )

    def check_prune(self, paths: Sequence[str], fmt: str | None) -> None:
        """Raise PruneRefused when pruning to what `paths` hold is refused: a first
        read of the input (ids only), so a refused run writes nothing either."""
        ids: set[str] = set()
        for path in paths:
            for _, item in load(path, fmt):
                if isinstance(item, Skipped) or item.paper_id in ids:
                    return  # a skipped record (or a duplicate) keeps the prune from running
                ids.add(item.paper_id)
        stored = {str(meta["paper_id"]) for _, _, meta in self.store.iter_chunks()}
        why = prune_refusal(
            len(ids), len(stored - ids), len(stored), self.settings.prune_guard_ratio
        )
        if why is not None:
            raise PruneRefused(why)

    def prune(self, seen: dict[str, str], summary: IngestSummary) -> None:
        if summary.skipped:
            # A record we could not read may be a paper we already hold: keep it.
            summary.prune_note = (
                f"prune not done: {summary.skipped} record(s) were skipped, and a skipped "
                "record may be a stored paper; fix them and run again"
            )
            return
        gone = [
            (cid, str(meta["paper_id"]))
            for cid, _, meta in self.store.iter_chunks()
            if str(meta["paper_id"]) not in seen
        ]
        gone_ids = [cid for cid, _ in gone]
        papers = {pid for _, pid in gone}
        if not self.confirm_prune:  # (Ray's runs check here: their input is read once)
            stored = len(papers) + len(seen)  # every paper read is stored by now
            why = prune_refusal(len(seen), len(papers), stored, self.settings.prune_guard_ratio)
            if why is not None:
                raise PruneRefused(why.replace("nothing was written or", "nothing was"))
        if gone_ids:
            self._begin(papers)
            self.store.delete(gone_ids)
            self._done()
        summary.pruned = len(papers)
        summary.chunks_deleted += len(gone_ids)


def _paper_aligned(
    rows: list[tuple[Pending, Chunk]], step: int, limit: int
) -> Iterator[list[tuple[Pending, Chunk]]]:
    """Slices of about `step` rows that never split a paper's chunks, so each paper
    lands in one upsert and a reader never sees half of it (unless one paper alone
    exceeds the store's batch limit)."""
    part: list[tuple[Pending, Chunk]] = []
    for i, row in enumerate(rows):
        part.append(row)
        last_of_paper = i + 1 == len(rows) or rows[i + 1][0] is not row[0]
        if last_of_paper and len(part) >= step or len(part) >= limit:
            yield part
            part = []
    if part:
        yield part


def _batched(items: Iterable[Paper], n: int) -> Iterator[list[Paper]]:
    batch: list[Paper] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch
