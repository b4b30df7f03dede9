"""The papers in the store: list, show, delete; and uploads to ingest."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import Admin, AdminFirst, ChainDep, EmbeddingsDep, Reader, SettingsDep, StoreDep
from api.errors import ApiError, Conflict, NotFound
from rag.cite import FORMATS as CITE_FORMATS
from rag.cite import export, record_of
from rag.types import web_url

router = APIRouter(tags=["papers"])
_WRITE_LOCK = threading.Lock()  # one write at a time per process

# A path parameter that takes slashes: old-style arXiv ids (hep-th/9901001) and DOIs
# (10.1000/xyz) hold them. Raw or percent-encoded (%2F, as encodeURIComponent sends
# it), the server sees the decoded id.
PaperId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=300,
        description="The paper's id; it may hold '/' (raw or as %2F).",
        examples=["2401.00001", "hep-th/9901001"],
    ),
]


class PaperOut(BaseModel):
    paper_id: str
    title: str
    abstract: str | None = None
    url: str | None = None
    year: int | None = None
    authors: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    code_links: list[str] = Field(default_factory=list)
    n_chunks: int
    extra: dict[str, str] = Field(default_factory=dict)


class PaperPage(BaseModel):
    papers: list[PaperOut]
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


def paper_out(meta: dict[str, Any], *, with_abstract: bool = True) -> PaperOut:
    extra = meta.get("extra")
    return PaperOut(
        paper_id=str(meta["paper_id"]),
        title=str(meta["title"]),
        abstract=str(meta.get("abstract", "")) if with_abstract else None,
        url=web_url(meta.get("url")),
        year=meta.get("year"),
        authors=list(meta.get("authors") or []),
        categories=list(meta.get("categories") or []),
        code_links=list(meta.get("code_links") or []),
        n_chunks=int(meta.get("n_chunks", 1)),
        extra=json.loads(extra) if isinstance(extra, str) else {},
    )


@router.get(
    "/v1/papers",
    response_model=PaperPage,
    summary="Papers in the store, a page at a time",
    dependencies=[Reader],
)
def list_papers(
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    abstracts: Annotated[bool, Query(description="Include each abstract.")] = False,
) -> PaperPage:
    metas = store.papers(offset, limit + 1)
    more = len(metas) > limit
    return PaperPage(
        papers=[paper_out(m, with_abstract=abstracts) for m in metas[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if more else None,
    )


CiteFormatName = Literal["json", "bibtex", "ris", "csljson"]


def cite_response(metas: list[dict[str, Any]], fmt: str, name: str) -> Response:
    """Papers as a file a reference manager imports (rag/cite.py)."""
    spec = CITE_FORMATS[fmt]
    filename = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "citation"
    return Response(
        export([record_of(m) for m in metas], fmt),
        media_type=f"{spec.media_type}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}{spec.suffix}"'},
    )


@router.get(
    "/v1/cite",
    summary="Papers as one citation file (BibTeX, RIS, CSL-JSON), e.g. those an answer cites",
    response_class=Response,
    responses={
        200: {"content": {spec.media_type: {} for spec in CITE_FORMATS.values()}},
        404: {"description": "None of the papers exists"},
    },
    dependencies=[Reader],
)
def cite_papers(
    store: StoreDep,
    paper_id: Annotated[
        list[str],
        Query(min_length=1, max_length=200, description="Papers to export, in this order."),
    ],
    format: Annotated[
        Literal["bibtex", "ris", "csljson"], Query(description="The citation format.")
    ] = "bibtex",
) -> Response:
    ids = list(dict.fromkeys(paper_id))
    metas = [m for m in (store.paper(pid) for pid in ids) if m is not None]
    if not metas:
        raise NotFound(f"no paper with any of the ids {', '.join(ids)}", param="paper_id")
    return cite_response(metas, format, "citations")


@router.get(
    "/v1/papers/{paper_id:path}",
    response_model=PaperOut,
    summary="One paper with its abstract, or as a citation (BibTeX, RIS, CSL-JSON)",
    responses={
        200: {
            "description": "The paper as JSON, or with `format` as a file to import into a "
            "reference manager.",
            "content": {spec.media_type: {} for spec in CITE_FORMATS.values()},
        },
        404: {"description": "No such paper"},
    },
    dependencies=[Reader],
)
def get_paper(
    paper_id: PaperId,
    store: StoreDep,
    format: Annotated[
        CiteFormatName,
        Query(description="json (default), or bibtex, ris, csljson: the paper as a citation."),
    ] = "json",
) -> Any:
    meta = store.paper(paper_id)
    if meta is None:
        raise NotFound(f"no paper with id '{paper_id}'", param="paper_id")
    if format != "json":
        return cite_response([meta], format, paper_id)
    return paper_out(meta)


@router.delete(
    "/v1/papers/{paper_id:path}",
    summary="Remove a paper and its chunks (admin key)",
    responses={404: {"description": "No such paper"}},
    dependencies=[Admin],
)
def delete_paper(
    paper_id: PaperId,
    store: StoreDep,
    embeddings: EmbeddingsDep,
    settings: SettingsDep,
    chain: ChainDep,
) -> dict[str, Any]:
    from ingest.job import IngestJob

    if store.paper(paper_id) is None and not store.chunks_of([paper_id])[paper_id]:
        raise NotFound(f"no paper with id '{paper_id}'", param="paper_id")
    job = IngestJob(store, embeddings, settings, progress=False)
    with _WRITE_LOCK:
        chunks = job.delete_papers([paper_id])
    chain.retriever.lexical.invalidate()  # read our own write; the reader's policy rebuilds
    return {"deleted": paper_id, "chunks": chunks}


async def ingest_upload(
    store: StoreDep,
    embeddings: EmbeddingsDep,
    settings: SettingsDep,
    chain: ChainDep,
    file: Annotated[UploadFile, File(description="The file to ingest.")],
    format: Annotated[
        str | None,
        Form(
            description="listing, jsonl, csv, bibtex, ris or csljson; default: from the file name."
        ),
    ] = None,
    prune: Annotated[bool, Form(description="Remove papers not in this file.")] = False,
    confirm_prune: Annotated[
        bool,
        Form(
            description="Prune even when the file yields no papers, or far fewer than the "
            "prune would delete (otherwise refused with 409, nothing written or deleted)."
        ),
    ] = False,
) -> dict[str, Any]:
    from ingest.job import IngestJob, PruneRefused
    from ingest.loaders import FORMATS, SourceError, detect_format

    name = os.path.basename(file.filename or "upload")
    if format is not None and format not in FORMATS:
        raise ApiError(f"unknown format '{format}' ({', '.join(FORMATS)})", param="format")
    if format is None:
        try:
            format = detect_format(name)
        except SourceError as exc:
            raise ApiError(str(exc), param="format", code="unknown_format") from exc
    with tempfile.TemporaryDirectory(prefix="citeqa-upload-") as tmp:
        # Never the client's name: it may be longer than a file name may be, or anything.
        path = os.path.join(tmp, "upload")
        with open(path, "wb") as out:
            while chunk := await file.read(1 << 20):
                out.write(chunk)
        job = IngestJob(store, embeddings, settings, progress=False, confirm_prune=confirm_prune)

        def run() -> dict[str, Any]:
            with _WRITE_LOCK:
                # Reported under the client's file name, never our temporary path.
                return job.run([path], fmt=format, prune=prune, names=[name]).to_json()

        try:
            summary = await run_in_threadpool(run)
        except SourceError as exc:
            raise ApiError(str(exc).replace(path, name), param="file") from exc
        except PruneRefused as exc:
            raise Conflict(str(exc), param="prune", code="prune_refused") from exc
        finally:
            chain.retriever.lexical.invalidate()  # read our own write, without a stall
    return summary


# The admin key is checked before the upload is read (AdminFirst), not after.
router.add_api_route(
    "/v1/ingest",
    ingest_upload,
    methods=["POST"],
    summary="Ingest an uploaded file (admin key)",
    description="Upload JSONL (arXiv snapshot shape), CSV, BibTeX, RIS, CSL-JSON or listing "
    "text as multipart field `file`. Returns the ingest summary; malformed records are "
    "counted in `skipped`, the first 100 listed in `errors` with their line "
    "(`errors_total` counts them all), and the rest is stored. The admin key is checked "
    "before the body is read.",
    route_class_override=AdminFirst,
)
