"""Collaborators the routes receive: opened once by the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from langchain_core.embeddings import Embeddings

from rag.settings import Settings
from rag.store import Store


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_embeddings(request: Request) -> Embeddings:
    return request.app.state.embeddings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
EmbeddingsDep = Annotated[Embeddings, Depends(get_embeddings)]
