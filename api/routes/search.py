"""Paper-level search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import EmbeddingsDep, StoreDep
from rag.retrieve import search_papers

router = APIRouter(tags=["search"])


class SearchResult(BaseModel):
    paper_id: str
    title: str
    score: float
    snippet: str
    url: str | None = None
    chunk_index: int
    start: int
    end: int


class SearchResponse(BaseModel):
    results: list[SearchResult]


@router.get("/v1/search", response_model=SearchResponse, summary="Papers closest to a query")
def search(
    store: StoreDep,
    embeddings: EmbeddingsDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=2000,
            description="The query text.",
            examples=["diffusion model generalization"],
        ),
    ],
    k: Annotated[int, Query(ge=1, le=50, description="How many papers to return.")] = 5,
) -> SearchResponse:
    hits = search_papers(q, store, embeddings, k)
    return SearchResponse(results=[SearchResult(**h.to_json()) for h in hits])
