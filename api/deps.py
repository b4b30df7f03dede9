"""Collaborators the routes receive: opened once by the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from langchain_core.embeddings import Embeddings

from api.middleware import Metrics
from api.security import Guard
from rag.chain import QAChain
from rag.index.store import Store
from rag.retrieval.retrieve import Retriever
from rag.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_embeddings(request: Request) -> Embeddings:
    return request.app.state.embeddings  # type: ignore[no-any-return]


def get_chain(request: Request) -> QAChain:
    return request.app.state.chain  # type: ignore[no-any-return]


def get_retriever(request: Request) -> Retriever:
    return get_chain(request).retriever


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
EmbeddingsDep = Annotated[Embeddings, Depends(get_embeddings)]
ChainDep = Annotated[QAChain, Depends(get_chain)]
RetrieverDep = Annotated[Retriever, Depends(get_retriever)]


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def require_reader(request: Request) -> None:
    """(When CITEQA_API_KEYS is set) a reader or admin key, then the rate limit of
    that key, or of the client's address when reads are open."""
    guard: Guard = request.app.state.guard
    guard.throttle(guard.read(request))


def require_admin(request: Request) -> None:
    """The admin key, then its rate limit."""
    guard: Guard = request.app.state.guard
    guard.throttle(guard.write(request))


MetricsDep = Annotated[Metrics, Depends(get_metrics)]
Reader = Depends(require_reader)
Admin = Depends(require_admin)


class AdminFirst(APIRoute):
    """A write route whose body is read only once the admin key has passed.

    FastAPI reads (and spools to disk) a request's form body before it runs any
    dependency, so `dependencies=[Admin]` alone would take in a whole upload from a
    client without the key before answering 401. This route checks the key first;
    routes that use it do not also list `Admin` (the rate limit would count twice)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def admin_first(request: Request) -> Response:
            require_admin(request)
            return await handler(request)

        return admin_first
