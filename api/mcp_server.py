"""citeqa as an MCP server (the official `mcp` SDK's MCPServer): the same store,
chain and limits as the HTTP API, for agents (Claude Desktop, IDE agents, any
MCP client).

Two transports, one server definition (`build_server`):

* stdio, `citeqa mcp`: a local client starts the process; the collaborators are
  opened once at start. Write tools only with `--writes`, which needs
  CITEQA_ADMIN_KEY set: whoever launches the process holds that environment.
* streamable HTTP at `/mcp` in the API app (`mount`): every request passes the
  same key check and rate limit as `/v1` (api/security.py) and, being an HTTP
  request to the same app, the same body limit (api/middleware.py). Write tools
  check the request's bearer key is the admin key, as `/v1/ingest` does.

Tool results carry structured content (the citations with paper id, title,
url, quote and offsets), not only text; `verify_claim` returns what `POST
/v1/verify` does, under the same limits. Anticipated failures (no such paper, a
question or claim too long, a non-admin key) are tool errors the model can read; the
SDK answers an unknown tool or arguments that fail the schema the same way.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from langchain_core.embeddings import Embeddings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.conversation import to_question
from api.errors import ApiError
from api.routes.claims import ClaimRequest
from api.routes.claims import _check_limits as check_limits
from api.routes.papers import PaperOut, paper_out
from api.routes.search import SearchResponse, SearchResult
from ingest.loaders import FORMATS as LOADERS
from rag.chain import QAChain
from rag.cite import FORMATS as CITE_FORMATS
from rag.cite import export, record_of
from rag.claims import ClaimCheck, check_claim
from rag.index.store import Store, StoreUnavailable
from rag.retrieval.retrieve import paper_search
from rag.settings import Settings
from rag.types import Citation, Filters

MCP_PATH = "/mcp"
INSTRUCTIONS = (
    "citeqa answers questions from the abstracts of a corpus of research papers. "
    "`ask` returns an answer whose every claim carries a marker [n] with the paper and "
    "the quoted passage that supports it; when the corpus does not cover a question it "
    "refuses (refused=true) and lists the nearest papers instead of guessing. "
    "`search_papers` finds papers, `get_paper` and the resource paper://{paper_id} give "
    "one paper, `list_papers` pages through them, `export_citations` writes papers as "
    "BibTeX, RIS or CSL-JSON for a reference manager. `verify_claim` checks a claim: the "
    "papers that support or contradict it, each with the sentences that say so, and a "
    "verdict; it refuses when no paper bears on the claim."
)


@dataclass
class Backend:
    """What the tools work with; opened once (stdio) or by the app's lifespan (HTTP)."""

    settings: Settings
    store: Store
    embeddings: Embeddings
    chain: QAChain
    write_lock: threading.Lock = field(default_factory=threading.Lock)


class AskResult(BaseModel):
    question: str
    answer: str = Field(description="The cited answer; every [n] has an entry in citations.")
    refused: bool = Field(description="True when the corpus does not cover the question.")
    citations: list[Citation] = Field(
        description="Per marker [n]: paper_id, title, url, and the quote with its offsets "
        "in the paper's abstract (quote == abstract[start:end])."
    )
    nearest: list[dict[str, Any]] = Field(
        default_factory=list,
        description="On a refusal of a question near the corpus: the nearest papers, which "
        "may not answer it.",
    )
    degraded: bool = False
    degraded_reason: str | None = None
    generator: str


class PaperList(BaseModel):
    papers: list[PaperOut]
    next_offset: int | None = Field(
        description="Pass as `offset` for the next page; null when no papers are left."
    )


class CitationExport(BaseModel):
    format: str
    media_type: str
    text: str = Field(description="The file to import into a reference manager.")
    missing: list[str] = Field(default_factory=list, description="Ids with no such paper.")


class IngestResult(BaseModel):
    summary: dict[str, Any]


class DeleteResult(BaseModel):
    deleted: str
    chunks: int


CiteFormat = Literal["bibtex", "ris", "csljson"]
_LIST_SCAN = 2_000  # most papers one list_papers call reads while filtering


def _tool_errors(fn: Callable[[], Any]) -> Any:
    """Run a tool body; failures the client should read become tool errors."""
    try:
        return fn()
    except ApiError as exc:
        raise ToolError(exc.message) from exc
    except StoreUnavailable as exc:
        raise ToolError(f"the vector store is unavailable: {exc}") from exc


def build_server(
    get: Callable[[], Backend],
    *,
    writes: bool,
    authorize_write: Callable[[Context], None],
) -> MCPServer:
    """The MCP server over the collaborators `get()` returns. Write tools (ingest,
    delete) are registered when `writes`; each call passes `authorize_write` first."""
    server = MCPServer(
        name="citeqa",
        title="citeqa: cited answers from research-paper abstracts",
        instructions=INSTRUCTIONS,
        version="0.1.0",
    )

    @server.tool(
        description="Papers for a query (hybrid dense + BM25 search), best first, each "
        "with its best passage and that passage's offsets in the abstract."
    )
    def search_papers(
        query: Annotated[str, Field(min_length=1, max_length=2000)],
        k: Annotated[int, Field(ge=1, le=50, description="How many papers.")] = 5,
        mode: Literal["hybrid", "dense", "bm25"] = "hybrid",
    ) -> SearchResponse:
        def run() -> SearchResponse:
            found = paper_search(query, get().chain.retriever, k, mode=mode)
            hits = [SearchResult(**h.to_json()) for h in found.hits]
            return SearchResponse(results=hits, partial=found.partial)

        return _tool_errors(run)

    @server.tool(
        description="Answer a question from the papers' abstracts with a verified, cited "
        "summary; refuses (refused=true, with the nearest papers) when the corpus does not "
        "cover it."
    )
    def ask(
        question: Annotated[str, Field(min_length=1)],
        top_k: Annotated[int | None, Field(description="Papers to consider.")] = None,
        year_min: int | None = None,
        year_max: int | None = None,
        categories: Annotated[list[str] | None, Field(max_length=100)] = None,
    ) -> AskResult:
        def run() -> AskResult:
            backend = get()
            filters = Filters(
                year_min=year_min, year_max=year_max, categories=tuple(categories or ())
            )
            q = to_question(
                backend.settings,
                turns=[("user", question)],
                top_k=top_k,
                filters=None if filters.empty else filters,
                llm=None,
            )
            answer = backend.chain.invoke(q)
            return AskResult(
                question=answer.question,
                answer=answer.answer,
                refused=answer.refused,
                citations=answer.citations,
                nearest=answer.nearest,
                degraded=answer.degraded,
                degraded_reason=answer.degraded_reason,
                generator=answer.generator,
            )

        return _tool_errors(run)

    @server.tool(description="One paper: title, abstract, authors, year, url, identifiers.")
    def get_paper(paper_id: Annotated[str, Field(min_length=1, max_length=300)]) -> PaperOut:
        def run() -> PaperOut:
            meta = get().store.paper(paper_id)
            if meta is None:
                raise ToolError(f"no paper with id '{paper_id}'")
            return paper_out(meta)

        return _tool_errors(run)

    @server.tool(
        description="Papers in the store, a page at a time, optionally only those from a "
        "range of years or in any of some categories (keywords)."
    )
    def list_papers(
        offset: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
        year_min: int | None = None,
        year_max: int | None = None,
        categories: Annotated[list[str] | None, Field(max_length=100)] = None,
    ) -> PaperList:
        def run() -> PaperList:
            store = get().store
            filters = Filters(
                year_min=year_min, year_max=year_max, categories=tuple(categories or ())
            )
            found: list[PaperOut] = []
            position, scanned = offset, 0
            while len(found) < limit and scanned < _LIST_SCAN:
                page = store.papers(position, 200)
                if not page:
                    return PaperList(papers=found, next_offset=None)
                for meta in page:
                    position += 1
                    scanned += 1
                    if filters.matches(meta):
                        found.append(paper_out(meta, with_abstract=False))
                        if len(found) == limit:
                            break
            more = bool(store.papers(position, 1))
            return PaperList(papers=found, next_offset=position if more else None)

        return _tool_errors(run)

    @server.tool(
        description="Papers as a file to import into a reference manager (Zotero, Mendeley, "
        "EndNote): bibtex, ris or csljson. Pass the paper_ids an answer cites."
    )
    def export_citations(
        paper_ids: Annotated[list[str], Field(min_length=1, max_length=200)],
        format: CiteFormat = "bibtex",
    ) -> CitationExport:
        def run() -> CitationExport:
            store = get().store
            metas, missing = [], []
            for pid in dict.fromkeys(paper_ids):
                meta = store.paper(pid)
                (metas.append(meta) if meta is not None else missing.append(pid))
            if not metas:
                raise ToolError(f"no paper with any of these ids: {', '.join(missing)}")
            return CitationExport(
                format=format,
                media_type=CITE_FORMATS[format].media_type,
                text=export([record_of(m) for m in metas], format),
                missing=missing,
            )

        return _tool_errors(run)

    @server.tool(
        description="Check a claim against the papers' abstracts: which papers support it, "
        "which contradict it, each with the sentences that say so (quoted with their "
        "offsets) and a verdict; refuses (refused=true, no papers) when no paper bears on it."
    )
    def verify_claim(
        claim: Annotated[str, Field(min_length=1, description="One statement to check.")],
        top_k: Annotated[int | None, Field(description="Papers to judge.")] = None,
        year_min: int | None = None,
        year_max: int | None = None,
        categories: Annotated[list[str] | None, Field(max_length=100)] = None,
    ) -> ClaimCheck:
        def run() -> ClaimCheck:
            backend = get()
            body = ClaimRequest(claim=claim, top_k=top_k)  # strips the claim
            check_limits(body, backend.settings)  # the limits of POST /v1/verify
            filters = Filters(
                year_min=year_min, year_max=year_max, categories=tuple(categories or ())
            )
            return check_claim(
                body.claim,
                backend.chain.retriever,
                backend.chain.encoder,
                k=body.top_k,
                filters=None if filters.empty else filters,
            )

        return _tool_errors(run)

    @server.resource(
        "paper://{+paper_id}",
        name="paper",
        description="A paper as JSON (its id may hold '/', as DOIs do).",
        mime_type="application/json",
    )
    def paper_resource(paper_id: str) -> str:
        try:
            meta = get().store.paper(paper_id)
        except StoreUnavailable as exc:
            raise ResourceError(f"the vector store is unavailable: {exc}") from exc
        if meta is None:
            raise ResourceNotFoundError(f"no paper with id '{paper_id}'")
        return paper_out(meta).model_dump_json()

    if writes:
        _add_write_tools(server, get, authorize_write)
    return server


def _add_write_tools(
    server: MCPServer, get: Callable[[], Backend], authorize_write: Callable[[Context], None]
) -> None:
    @server.tool(
        description="(admin key) Ingest papers from the text of a file: RIS, CSL-JSON, "
        "BibTeX, JSON Lines, CSV or listing text; the format from `filename`'s extension "
        "unless given. Returns the ingest summary; bad records are listed with their line."
    )
    def ingest_papers(
        content: str,
        filename: Annotated[str, Field(min_length=1, max_length=200)],
        ctx: Context,
        format: Annotated[str | None, Field(description=", ".join(LOADERS))] = None,
        prune: bool = False,
    ) -> IngestResult:
        authorize_write(ctx)

        def run() -> IngestResult:
            from ingest.job import IngestJob
            from ingest.loaders import SourceError

            backend = get()
            name = os.path.basename(filename) or "upload"
            if format is not None and format not in LOADERS:
                raise ToolError(f"unknown format '{format}' ({', '.join(LOADERS)})")
            with tempfile.TemporaryDirectory(prefix="citeqa-mcp-") as tmp:
                path = os.path.join(tmp, "upload" + os.path.splitext(name)[1])
                with open(path, "w", encoding="utf-8", errors="surrogateescape") as out:
                    out.write(content)
                job = IngestJob(backend.store, backend.embeddings, backend.settings, progress=False)
                try:
                    with backend.write_lock:
                        summary = job.run([path], fmt=format, prune=prune, names=[name])
                except SourceError as exc:
                    raise ToolError(str(exc).replace(path, name)) from exc
                finally:
                    backend.chain.retriever.lexical.invalidate()
            return IngestResult(summary=summary.to_json())

        return _tool_errors(run)

    @server.tool(description="(admin key) Remove a paper and its chunks from the store.")
    def delete_paper(
        paper_id: Annotated[str, Field(min_length=1, max_length=300)], ctx: Context
    ) -> DeleteResult:
        authorize_write(ctx)

        def run() -> DeleteResult:
            from ingest.job import IngestJob

            backend = get()
            store = backend.store
            if store.paper(paper_id) is None and not store.chunks_of([paper_id])[paper_id]:
                raise ToolError(f"no paper with id '{paper_id}'")
            job = IngestJob(store, backend.embeddings, backend.settings, progress=False)
            with backend.write_lock:
                chunks = job.delete_papers([paper_id])
            backend.chain.retriever.lexical.invalidate()
            return DeleteResult(deleted=paper_id, chunks=chunks)

        return _tool_errors(run)


# -- streamable HTTP, inside the API app ----------------------------------------------


def _http_request(ctx: Context) -> Request | None:
    request = ctx.request_context.request
    return request if isinstance(request, Request) else None


def _authorize_http_write(ctx: Context) -> None:
    """The admin key on this very request, as /v1/ingest asks (api/security.py)."""
    request = _http_request(ctx)
    if request is None:
        raise ToolError("writes need the admin key on an HTTP request")
    guard = request.app.state.guard
    try:
        guard.throttle(guard.write(request))
    except ApiError as exc:
        raise ToolError(exc.message) from exc


class _Endpoint:
    """ASGI endpoint at /mcp: the reader key and rate limit of /v1, then the SDK's
    session manager. A refusal raises the API's own errors, so the client gets the
    same 401/429 JSON body as from /v1."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        guard = self.app.state.guard
        guard.throttle(guard.read(request))
        await self.app.state.mcp.session_manager.handle_request(scope, receive, send)


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    # The SDK's own default: on a loopback bind, Host and Origin must be loopback too
    # (DNS rebinding); on any other bind the keys and the CORS list decide.
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=loopback,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def mount(app: FastAPI, settings: Settings) -> Callable[[], Any]:
    """Serve MCP at /mcp in `app`; returns the async context manager its lifespan
    enters once the collaborators are open (the SDK's session manager runs there)."""

    def get() -> Backend:
        state = app.state
        backend = getattr(state, "mcp_backend", None)
        if backend is None:
            from api.routes.papers import _WRITE_LOCK

            backend = Backend(
                settings, state.store, state.embeddings, state.chain, write_lock=_WRITE_LOCK
            )
            state.mcp_backend = backend
        return backend

    app.state.mcp = build_server(get, writes=True, authorize_write=_authorize_http_write)
    app.router.routes.append(Route(MCP_PATH, endpoint=_Endpoint(app), include_in_schema=False))

    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        app.state.mcp_backend = None  # this lifespan's store and chain
        # A new session manager per lifespan: the SDK runs each one once. Stateless
        # with JSON answers: every request stands alone, checked on its own key.
        app.state.mcp.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            max_request_body_size=settings.api.max_body_bytes,
            transport_security=_transport_security(settings),
        )
        async with app.state.mcp.session_manager.run():
            yield

    return running


# -- stdio -----------------------------------------------------------------------------


def _authorize_stdio_write(ctx: Context) -> None:
    """Write tools exist over stdio only when started with --writes (and the admin key
    configured); the process's launcher is the one who holds that key."""


def run_stdio(backend: Backend, *, writes: bool) -> None:
    server = build_server(lambda: backend, writes=writes, authorize_write=_authorize_stdio_write)
    server.run("stdio")
