"""Paper-level search."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import Reader, RetrieverDep
from rag.retrieval.retrieve import paper_search

router = APIRouter(tags=["search"], dependencies=[Reader])


class SearchResult(BaseModel):
    paper_id: str
    title: str
    score: float = Field(description="Fused reciprocal-rank score (higher is better).")
    snippet: str
    url: str | None = None
    chunk_index: int
    start: int
    end: int


class SearchResponse(BaseModel):
    results: list[SearchResult]
    partial: str | None = Field(
        None,
        description="Set (to the reason) when the ranking is BM25's alone: the dense search "
        "missed `retrieval.search_dense_timeout_ms`, when that is configured.",
    )


@router.get(
    "/v1/search", response_model=SearchResponse, summary="Papers for a query (hybrid dense + BM25)"
)
def search(
    retriever: RetrieverDep,
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
    mode: Annotated[
        Literal["hybrid", "dense", "bm25"], Query(description="Which rankings to use.")
    ] = "hybrid",
) -> SearchResponse:
    found = paper_search(q, retriever, k, mode=mode)
    return SearchResponse(
        results=[SearchResult(**h.to_json()) for h in found.hits], partial=found.partial
    )
