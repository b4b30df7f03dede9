"""The FastAPI application factory.

`create_app(settings, store=..., embeddings=...)` takes its collaborators or
builds them from settings; the lifespan opens the store and loads the
embedding model once, before the first request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from langchain_core.embeddings import Embeddings

from api.errors import install_error_handlers
from api.routes import health, search
from rag.embeddings import make_embeddings
from rag.settings import Settings, get_settings
from rag.store import Store, open_store


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    embeddings: Embeddings | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.store = store or open_store(settings)
        app.state.embeddings = embeddings or make_embeddings(settings)
        # Load the model before the first request, not during it.
        load = getattr(app.state.embeddings, "load", None)
        if callable(load):
            load()
        yield

    app = FastAPI(
        title="citeqa",
        summary="Question answering over research-paper abstracts, with citations.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(search.router)
    return app
