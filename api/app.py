"""The FastAPI application factory.

`create_app(settings, store=..., embeddings=...)` takes its collaborators or
builds them from settings; the lifespan opens the store and loads the
embedding model once, before the first request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from langchain_core.embeddings import Embeddings

from api import mcp_server
from api.errors import install_error_handlers
from api.middleware import BodyLimit, HeaderLimit, Metrics, MetricsMiddleware, NoSniff, UnicodeCheck
from api.routes import chat, health, openai_compat, papers, search, web
from api.routes import claims as claim_routes
from api.security import Guard, redact_access_log
from rag.chain import QAChain, build_chain
from rag.encode.embeddings import make_embeddings
from rag.generate import GeneratorUnavailable
from rag.index.store import Store, open_store
from rag.settings import Settings, get_settings
from rag.text import specificity
from rag.warmup import settle_heap, warm_matcher, warm_sentences

log = logging.getLogger(__name__)

DESCRIPTION = """
Question answering over research-paper abstracts: every claim in an answer
carries a marker like [1] that maps to a paper and the passage supporting it,
and questions the corpus does not cover are refused rather than answered.

* `POST /v1/chat`: citeqa's own chat API (JSON or server-sent events).
* `POST /v1/chat/completions`, `GET /v1/models`: the OpenAI wire format, for any
  OpenAI client (`base_url="http://host:port/v1"`).
* Reads need `Authorization: Bearer <key>` when `CITEQA_API_KEYS` is set;
  writes always need the admin key (`CITEQA_ADMIN_KEY`).
"""


def _warm(chain: QAChain, limit: int, stop: threading.Event, state: dict) -> None:
    """Runs beside the server; /readyz shows `warmup.running` until it is done."""
    try:
        t0 = time.perf_counter()
        n = warm_sentences(chain.retriever.store, chain.encoder, limit, stop) if limit else 0
        state["sentences"] = n
        log.info("warm-up: %d abstract sentences embedded in %.1fs", n, time.perf_counter() - t0)
        if chain.retriever.settings.gate:
            t0 = time.perf_counter()
            state["papers"] = warm_matcher(chain.retriever.store, chain.retriever.matcher, stop)
            log.info(
                "warm-up: %d papers read for the gate in %.1fs",
                state["papers"],
                time.perf_counter() - t0,
            )
    except Exception as exc:  # a store outage at start: questions just pay as they come
        log.warning("warm-up stopped: %s", exc)
    finally:
        state["running"] = False


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    embeddings: Embeddings | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact_access_log()  # uvicorn's logging set-up ran after the factory
        app.state.store = store or open_store(settings)
        app.state.embeddings = embeddings or make_embeddings(settings)
        # Load the model before the first request, not during it.
        load = getattr(app.state.embeddings, "load", None)
        if callable(load):
            load()
        app.state.chain = build_chain(
            settings, store=app.state.store, embeddings=app.state.embeddings
        )
        app.state.chain.retriever.lexical.get()  # build or load BM25 before serving
        # Build the generator now: a model client's imports cost seconds that a first
        # question, racing the LLM timeout, should not pay.
        try:
            app.state.chain.generators.get(settings.llm)
        except GeneratorUnavailable as exc:  # reported by /readyz; answers fall back
            log.warning("generator '%s' not ready at start: %s", settings.llm, exc)
        specificity("start")  # English word frequencies (the gate's) load now, not in a question
        settle_heap()  # start-up's objects out of later collections
        stop = threading.Event()
        limit = settings.retrieval.warm_sentences
        app.state.warmup = {"running": bool(limit), "sentences": 0, "papers": 0}
        if limit:
            threading.Thread(
                target=_warm,
                args=(app.state.chain, limit, stop, app.state.warmup),
                name="warm-up",
                daemon=True,
            ).start()
        async with mcp_http():  # the MCP session manager (api/mcp_server.py)
            yield
        stop.set()

    app = FastAPI(
        title="citeqa",
        summary="Question answering over research-paper abstracts, with citations.",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.guard = Guard(settings)
    install_error_handlers(app)
    for module in (health, search, chat, claim_routes, openai_compat, papers, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.WEB_DIR), name="static")
    mcp_http = mcp_server.mount(app, settings)  # MCP over streamable HTTP at /mcp
    app.add_middleware(UnicodeCheck)  # inside BodyLimit: buffers only bodies within it
    app.add_middleware(
        BodyLimit,
        default=settings.api.max_body_bytes,
        per_path={"/v1/ingest": settings.api.max_upload_bytes},
    )
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(NoSniff)
    app.add_middleware(
        HeaderLimit,
        max_count=settings.api.max_header_count,
        max_bytes=settings.api.max_header_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every response
    return app
