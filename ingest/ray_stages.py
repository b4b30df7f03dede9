"""The stages of Ray ingestion that run on the cluster's workers (see ingest/ray_job.py).
Imports Ray: loaded only by `run_ray`, once Ray is known to be installed."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from ingest.chunk import embed_text
from ingest.job import plan_papers
from ingest.loaders import Skipped, load
from ingest.loaders.ranges import JsonlRange, ranges_of
from ingest.ray_job import paper_from_dict, paper_to_dict, plan_from_json, plan_to_json
from rag.settings import Settings

SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # "paper", "skipped" (data: the reason), "end" (line: count)
        ("file", pa.int32()),  # index of the input path
        ("part", pa.int32()),  # the byte range of the file (0 for a whole file)
        ("line", pa.int64()),  # line within the range, from 1
        ("status", pa.string()),  # after diff: "added", "updated" or "unchanged"
        ("data", pa.string()),  # the paper (JSON); after diff, a changed paper's plan
        ("vectors", pa.binary()),  # after embed: float32, one row per chunk
    ]
)
ROWS_PER_BLOCK = 256


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _row(kind: str, file: int, part: int, line: int, data: str = "") -> dict[str, Any]:
    return {
        "kind": kind,
        "file": file,
        "part": part,
        "line": line,
        "status": "",
        "data": data,
        "vectors": b"",
    }


def read_part(
    path: str, fmt: str, file: int, part: int, span: tuple[int, int] | None
) -> Iterator[pa.Table]:
    """One read task: the records of one byte range (JSONL) or one whole file."""
    reader = JsonlRange(path, *span) if span is not None else None
    items = iter(reader) if reader is not None else load(path, fmt)
    rows: list[dict[str, Any]] = []
    for line, item in items:
        if isinstance(item, Skipped):
            rows.append(_row("skipped", file, part, line, item.reason))
        else:
            rows.append(_row("paper", file, part, line, json.dumps(paper_to_dict(item))))
        if len(rows) >= ROWS_PER_BLOCK:
            yield _table(rows)
            rows = []
    # A whole file's lines are the file's own: nothing to add to later parts.
    rows.append(_row("end", file, part, reader.lines if reader is not None else 0))
    yield _table(rows)


class PaperSource(Datasource):
    """Papers from citeqa's input formats: JSONL files in byte ranges of about
    `split_bytes`, any other format one task per file."""

    def __init__(self, paths: list[str], formats: list[str], split_bytes: int) -> None:
        super().__init__()
        self.paths, self.formats, self.split_bytes = paths, formats, split_bytes

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(os.path.getsize(p) for p in self.paths)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        tasks = []
        for file, (path, fmt) in enumerate(zip(self.paths, self.formats, strict=True)):
            spans: list[tuple[int, int] | None]
            spans = list(ranges_of(path, self.split_bytes)) if fmt == "jsonl" else [None]
            for part, span in enumerate(spans):
                size = span[1] - span[0] if span else os.path.getsize(path)
                meta = BlockMetadata(
                    num_rows=None, size_bytes=size, input_files=[path], exec_stats=None
                )
                read = functools.partial(read_part, path, fmt, file, part, span)
                tasks.append(ReadTask(read, meta, schema=SCHEMA))
        return tasks


_STORES: dict[str, Any] = {}


def _store(settings: Settings) -> Any:
    """One store client per worker process and collection."""
    from rag.index.store import open_store

    key = f"{settings.chroma_url} {settings.collection_name}"
    if key not in _STORES:
        _STORES[key] = open_store(settings)
    return _STORES[key]


def diff_batch(batch: pa.Table, settings: Settings) -> pa.Table:
    """Mark each paper unchanged, added or updated against the store; a changed
    paper's row carries its plan (chunks, stale ids) instead of the paper."""
    rows = batch.to_pylist()
    at = [i for i, r in enumerate(rows) if r["kind"] == "paper"]
    if not at:
        return _table(rows)
    papers = [paper_from_dict(json.loads(rows[i]["data"])) for i in at]
    stored = _store(settings).chunks_of(p.paper_id for p in papers)
    for i, (status, plan) in zip(at, plan_papers(papers, stored, settings), strict=True):
        rows[i]["status"] = status
        if plan is not None:
            rows[i]["data"] = plan_to_json(plan)
    return _table(rows)


class EmbedActor:
    """Embeds the chunks of changed papers; one model (or endpoint client) per actor."""

    def __init__(self, settings: Settings, threads: int, gpu: bool) -> None:
        from rag.encode.embeddings import make_embeddings

        if gpu and settings.embedding.provider == "local":
            embedding = settings.embedding.model_copy(update={"device": "cuda"})
            settings = settings.model_copy(update={"embedding": embedding})
        self.embeddings = make_embeddings(settings, threads=threads)
        self.title = settings.chunking.title  # as IngestJob embeds: the same vectors
        getattr(self.embeddings, "load", lambda: None)()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        texts: list[str] = []
        spans: list[tuple[int, int, int]] = []
        for i, row in enumerate(rows):
            if row["kind"] == "paper" and row["status"] in ("added", "updated"):
                plan = plan_from_json(row["data"])
                spans.append((i, len(texts), len(plan.chunks)))
                texts.extend(embed_text(plan.paper, c, self.title) for c in plan.chunks)
        if texts:
            vectors = np.asarray(self.embeddings.embed_documents(texts), dtype=np.float32)
            for i, lo, n in spans:
                rows[i]["vectors"] = vectors[lo : lo + n].tobytes()
        return _table(rows)
