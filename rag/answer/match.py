"""How much of a question the best papers say, word by word, in meaning.

The gate (rag/retrieval/retrieve.py) asks whether the corpus covers a question. A near
miss looks like this: "How can video diffusion models keep objects consistent
across frames?" asked of a corpus with papers on diffusion models for images
and none on video. The best chunk is close to the question (the field
matches), and most question words appear somewhere; what is missing is one
paper that says all of it.

`Matcher.coverage` measures that the way BERTScore's recall does: each content
word of the question (stopwords aside), as the embedding model reads it in the
question, is matched to its closest token in a paper's sentences as the model
reads them there, and the question's coverage is the mean of those
similarities. Another form of a word or a close synonym still matches well, and
a word the paper uses in another sense matches less. For a question about one
paper or fact, the best of the top papers counts; for a set question ("which
papers ..."), whose parts the papers may share between them, each word counts
its best match in any of them, and the words that frame it as a set
(`rag.answer.answerable.topic`) are left out.

The tokens come from the same all-MiniLM-L6-v2 forward pass that embeds a
sentence (its states before pooling), so no second model is needed; a paper's
tokens are kept (float16, least recently used out) because the same papers come
back question after question. The same passes pool each sentence's vector, which
`LocalEmbeddings` keeps for the answerability step that reads those sentences
next (on PubMedQA's unread papers that step fell from 216 to 130 ms p50). The
rule's weight and threshold are fitted by `python -m evals.tune_gate` on both
dev corpora.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np
from cachetools import LRUCache

from rag.text import segment, terms
from rag.types import Source


@dataclass(frozen=True)
class Tokens:
    """One text's tokens in context."""

    vectors: np.ndarray
    """(tokens, dims), unit rows; [CLS], [SEP] and padding left out."""
    words: tuple[tuple[int, int], ...]
    """Per token, the character span of the word it is part of ("distillation" may
    be three word pieces of one word)."""

    @classmethod
    def of(cls, hidden: Any, word_ids: Sequence[int], offsets: Sequence[tuple[int, int]]) -> Tokens:
        vectors = np.asarray(hidden, dtype=np.float32)
        if not len(word_ids):
            return cls.empty()
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        spans: dict[int, tuple[int, int]] = {}
        for w, (a, b) in zip(word_ids, offsets, strict=True):
            lo, hi = spans.get(w, (a, b))
            spans[w] = (min(lo, a), max(hi, b))
        return cls(vectors, tuple(spans[w] for w in word_ids))

    @classmethod
    def empty(cls) -> Tokens:
        return cls(np.zeros((0, 0), dtype=np.float32), ())


@cache
def _blas() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """These products are small; a second BLAS thread buys nothing and keeps spinning
    after them on a core the embedding model's next forward pass needs (measured on 2
    cores: the gate 6.0 -> 1.5 ms p50 and the next query embedding 10.3 -> 4.6 ms)."""
    return _blas().limit(limits=1, user_api="blas")


class TokenEncoder(Protocol):
    def tokens(self, texts: list[str]) -> list[Tokens]: ...


class Matcher:
    """Soft coverage of a question by papers; see the module's docstring."""

    def __init__(self, encoder: TokenEncoder | None = None, papers: int = 256) -> None:
        self._encoder = encoder
        self.papers = papers
        """Papers whose tokens are kept (about 250 KB an abstract, in float16)."""
        self._cache: LRUCache[tuple[str, int], np.ndarray] = LRUCache(maxsize=max(1, papers))
        self._lock = threading.Lock()

    @classmethod
    def for_embeddings(cls, embeddings: Any, papers: int = 256) -> Matcher:
        """The matcher for a retriever: the embedder's own model when it is the
        local one; else (an embedding server) the local model, loaded on first use."""
        return cls(embeddings if hasattr(embeddings, "tokens") else None, papers)

    @property
    def encoder(self) -> TokenEncoder:
        if self._encoder is None:
            from rag.encode.embeddings import LocalEmbeddings, local_model_path

            self._encoder = LocalEmbeddings(local_model_path())
        return self._encoder

    def question(self, text: str) -> np.ndarray:
        """The question's content-word tokens (stopwords and punctuation aside)."""
        (toks,) = self.encoder.tokens([text])
        keep = [i for i, (a, b) in enumerate(toks.words) if terms(text[a:b])]
        return toks.vectors[keep]

    def paper_tokens(self, sources: Sequence[Source]) -> list[np.ndarray]:
        """Each source's tokens over its title and abstract, sentence by sentence."""
        keys = [(s.paper_id, hash((s.title, s.abstract))) for s in sources]
        with self._lock:
            have = {k: self._cache[k] for k in keys if k in self._cache}  # [k]: recently used
        missing = [(k, s) for k, s in zip(keys, sources, strict=True) if k not in have]
        if missing:
            texts, owner = [], []
            for i, (_, s) in enumerate(missing):
                text = f"{s.title} {s.abstract}".strip()
                sentences = [text[a:b] for a, b in segment(text)] or [text]
                texts += sentences
                owner += [i] * len(sentences)
            encoded = self.encoder.tokens(texts)
            for i, (k, _) in enumerate(missing):
                parts = [t.vectors for t, o in zip(encoded, owner, strict=True) if o == i]
                parts = [p for p in parts if p.size]
                have[k] = (
                    np.concatenate(parts).astype(np.float16)
                    if parts
                    else np.zeros((0, 1), dtype=np.float16)
                )
            with self._lock:
                for k, _ in missing:
                    self._cache[k] = have[k]
        return [have[k] for k in keys]

    def coverage(self, question: str, sources: Sequence[Source], *, union: bool = False) -> float:
        """The mean, over the question's content words, of each one's best match in
        a paper: the best paper's (`union` False) or any paper's (`union` True)."""
        q = self.question(question)
        if not len(q) or not sources:
            return 0.0
        papers = self.paper_tokens(sources)
        with _one_blas_thread():
            best = [
                (q @ p.astype(np.float32).T).max(axis=1) if p.shape[0] else np.zeros(len(q))
                for p in papers
            ]
        if union:
            return float(np.max(best, axis=0).mean())
        return max(float(b.mean()) for b in best)
