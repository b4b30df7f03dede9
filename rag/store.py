"""The Chroma store: the only module that imports chromadb.

One collection per index fingerprint (embedding model + chunking), cosine
space, vectors always computed by us: Chroma's default embedding function
would try to download a model, so the collection is created without one.
Each record is a chunk with id `paper_id#chunk_index`; its metadata carries
the paper's fields, the paper's content hash and its chunk count, which is
what lets ingestion tell a complete, unchanged paper from a stale or
half-written one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
from chromadb.config import Settings as ChromaSettings

from rag.settings import Settings
from rag.types import ChunkHit

log = logging.getLogger(__name__)

# Chroma answers `$in` filters and gets in pages; keep each request modest.
_PAGE = 1000


class StoreUnavailable(RuntimeError):
    """The vector store cannot be reached or failed to answer."""


@dataclass(frozen=True)
class StoredChunk:
    id: str
    metadata: dict[str, Any]


class Store:
    def __init__(self, client: Any, collection_name: str, *, location: str) -> None:
        self._client = client
        self.name = collection_name
        self.location = location
        self.collection = client.get_or_create_collection(
            collection_name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        self.max_batch_size = int(client.get_max_batch_size())

    # -- writes -----------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        for lo in range(0, len(ids), self.max_batch_size):
            hi = lo + self.max_batch_size
            self.collection.upsert(
                ids=list(ids[lo:hi]),
                embeddings=[list(map(float, e)) for e in embeddings[lo:hi]],
                documents=list(documents[lo:hi]),
                metadatas=list(metadatas[lo:hi]),
            )

    def delete(self, ids: Sequence[str]) -> None:
        for lo in range(0, len(ids), self.max_batch_size):
            self.collection.delete(ids=list(ids[lo : lo + self.max_batch_size]))

    # -- reads ------------------------------------------------------------------

    def chunks_of(self, paper_ids: Iterable[str]) -> dict[str, list[StoredChunk]]:
        """Stored chunks (id and metadata) of the given papers, by paper id."""
        wanted = list(dict.fromkeys(paper_ids))
        found: dict[str, list[StoredChunk]] = {pid: [] for pid in wanted}
        for lo in range(0, len(wanted), _PAGE):
            page = wanted[lo : lo + _PAGE]
            where = {"paper_id": {"$in": page}} if len(page) > 1 else {"paper_id": page[0]}
            res = self.collection.get(where=where, include=["metadatas"])  # type: ignore[list-item]
            for cid, meta in zip(res["ids"], res["metadatas"] or [], strict=True):
                found[str(meta["paper_id"])].append(StoredChunk(cid, dict(meta)))
        return found

    def iter_chunks(
        self, *, include_documents: bool = False, where: dict[str, Any] | None = None
    ) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """Every chunk as (id, document, metadata), page by page."""
        include = ["metadatas", "documents"] if include_documents else ["metadatas"]
        offset = 0
        while True:
            res = self.collection.get(
                where=where,
                include=include,
                limit=_PAGE,
                offset=offset,  # type: ignore[arg-type]
            )
            ids = res["ids"]
            if not ids:
                return
            docs = res["documents"] if include_documents else [None] * len(ids)
            yield from zip(ids, docs or [], res["metadatas"] or [], strict=True)
            offset += len(ids)

    def paper_ids(self) -> set[str]:
        return {str(meta["paper_id"]) for _, _, meta in self.iter_chunks()}

    def count(self) -> int:
        return int(self.collection.count())

    def paper_count(self) -> int:
        return sum(1 for _ in self.iter_chunks(where={"chunk_index": 0}))

    def query(
        self, vector: Sequence[float], n: int, where: dict[str, Any] | None = None
    ) -> list[ChunkHit]:
        total = self.count()
        if total == 0 or n <= 0:
            return []
        res = self.collection.query(
            query_embeddings=[list(map(float, vector))],
            n_results=min(n, total),
            where=where,
            include=["metadatas", "documents", "distances"],  # type: ignore[list-item]
        )
        hits = []
        for cid, doc, meta, dist in zip(
            res["ids"][0],
            (res["documents"] or [[]])[0],
            (res["metadatas"] or [[]])[0],
            (res["distances"] or [[]])[0],
            strict=True,
        ):
            # Cosine distance is 1 - cosine similarity.
            hits.append(
                ChunkHit(cid, str(meta["paper_id"]), doc or "", 1.0 - float(dist), dict(meta))
            )
        return hits

    def heartbeat(self) -> None:
        try:
            self._client.heartbeat()
        except Exception as exc:  # any client error means the same thing to callers
            raise StoreUnavailable(f"Chroma at {self.location} is not answering: {exc}") from exc


def _http_client(url: str, timeout: float) -> Any:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        raise ValueError(f"CITEQA_CHROMA_URL '{url}' has no host")
    ssl = parsed.scheme == "https"
    client = chromadb.HttpClient(
        host=parsed.hostname,
        port=parsed.port or (443 if ssl else 8000),
        ssl=ssl,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    # chromadb's HTTP client waits forever by default; bound every request.
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)
    return client


def open_store(settings: Settings) -> Store:
    """The store the settings point at: a `chroma run` server, or embedded on disk."""
    try:
        if settings.chroma_url:
            client = _http_client(settings.chroma_url, settings.request_timeout)
            location = settings.chroma_url
        else:
            path = settings.data_dir / "chroma"
            path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(
                path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
            )
            location = str(path)
        return Store(client, settings.collection_name, location=location)
    except (httpx.HTTPError, ConnectionError, ValueError) as exc:
        if isinstance(exc, ValueError) and "CITEQA_CHROMA_URL" in str(exc):
            raise
        raise StoreUnavailable(
            f"cannot open Chroma ({settings.chroma_url or 'embedded'}): {exc}"
        ) from exc
