"""Rerankers: the `rerank` stage of retrieval (rag/retrieval/retrieve.py) looks one up here
by `CITEQA_RETRIEVAL__RERANKER`.

A reranker takes the question and the candidate papers (sources, with their
abstracts and matched passages, more than will be shown) and returns them in a
new order; retrieval then keeps the first k. A new one (a cross-encoder, an
LLM judge) is one function and one line in `RERANKERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from rag.types import Source

Reranker = Callable[[str, list[Source]], list[Source]]


def keep_order(question: str, sources: list[Source]) -> list[Source]:
    """The fused order, as is."""
    return sources


RERANKERS: dict[str, Reranker] = {
    "none": keep_order,
}
