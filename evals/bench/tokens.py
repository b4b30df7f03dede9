"""Embedded tokens and chunks per paper: what ingestion feeds the embedder for a
corpus under the current chunking settings, against the old default (800/200,
title in every chunk).

    python -m evals.bench.tokens [--dataset sample|pubmedqa] [--corpus FILE]

Tokens are counted with the embedding model's own tokenizer, [CLS] and [SEP]
included, cut at the model's window (256 word pieces for all-MiniLM-L6-v2):
what the model actually sees. Settings come from the environment as usual
(`CITEQA_CHUNKING__SIZE`, `__OVERLAP`, `__TITLE`).
"""

from __future__ import annotations

import argparse
import statistics
from functools import lru_cache
from pathlib import Path
from typing import Any

from ingest.chunk import chunk_paper, embed_text
from rag.settings import ChunkingSettings, Settings

OLD_DEFAULT = ChunkingSettings(size=800, overlap=200, title="every")
"""The chunking before issue 16."""


@lru_cache(maxsize=1)
def _tokenizer() -> tuple[Any, int]:
    import json

    from transformers import AutoTokenizer

    from rag.encode.embeddings import local_model_path

    path = Path(local_model_path())
    window = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]
    return AutoTokenizer.from_pretrained(str(path)), int(window)


def seen_tokens(texts: list[str]) -> list[int]:
    """Word pieces the model sees of each text (special tokens in, cut at its window)."""
    tok, window = _tokenizer()
    return [min(len(ids), window) for ids in tok(texts, truncation=False)["input_ids"]]


def abstract_tokens(papers: list[Any]) -> float:
    """Mean word pieces of the abstracts alone (no title, no special tokens, uncut)."""
    tok, _ = _tokenizer()
    ids = tok([p.abstract for p in papers], add_special_tokens=False)["input_ids"]
    return statistics.fmean(len(i) for i in ids)


def embed_texts(papers: list[Any], chunking: ChunkingSettings) -> list[str]:
    return [
        embed_text(p, c, chunking.title)
        for p in papers
        for c in chunk_paper(p, chunking.size, chunking.overlap)
    ]


def time_embedding(
    papers: list[Any], settings: dict[str, ChunkingSettings], rounds: int
) -> dict[str, float]:
    """Median papers/s of embedding each setting's texts with the configured model,
    the settings taking turns (ABAB...) so a busy machine slows each alike. Embedding
    is ~96% of ingest time (README, Performance), so this is the ingest rate's bound."""
    import time

    from rag.encode.embeddings import make_embeddings

    embeddings = make_embeddings(Settings())
    load = getattr(embeddings, "load", None)
    if callable(load):
        load()
    embeddings.embed_documents(["warm up the model"] * 8)
    texts = {name: embed_texts(papers, c) for name, c in settings.items()}
    spent: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(rounds):
        for name, batch in texts.items():
            t0 = time.perf_counter()
            embeddings.embed_documents(batch)
            spent[name].append(time.perf_counter() - t0)
    return {name: len(papers) / statistics.median(s) for name, s in spent.items()}


def measure(papers: list[Any], chunking: ChunkingSettings) -> dict[str, Any]:
    """Chunks and embedded tokens per paper under `chunking`."""
    texts = embed_texts(papers, chunking)
    tokens = seen_tokens(texts)
    _, window = _tokenizer()
    n = len(papers)
    return {
        "size": chunking.size,
        "overlap": chunking.overlap,
        "title": chunking.title,
        "papers": n,
        "chunks": len(texts),
        "chunks_per_paper": round(len(texts) / n, 3),
        "tokens_per_paper": round(sum(tokens) / n, 1),
        "truncated_chunks": sum(t >= window for t in tokens),
    }


def main(argv: list[str] | None = None) -> None:
    from evals.dataset import DATASETS
    from evals.run import corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sample", choices=sorted(DATASETS))
    parser.add_argument("--corpus", type=Path, help="Corpus file (default: the dataset's).")
    parser.add_argument(
        "--time",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="Also embed both settings' texts ROUNDS times each, alternating, and print "
        "the median papers/s (slow: the model runs on every chunk).",
    )
    args = parser.parse_args(argv)
    path = args.corpus or DATASETS[args.dataset].corpus
    papers = list(corpus(path).values())
    current = Settings().chunking
    print(f"corpus {path}: {len(papers)} papers, {abstract_tokens(papers):.1f} abstract tokens")
    cols = ["size", "overlap", "title", "chunks_per_paper", "tokens_per_paper", "truncated_chunks"]
    print("| setting | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    base = None
    for label, chunking in (("old default", OLD_DEFAULT), ("current", current)):
        row = measure(papers, chunking)
        base = base or row
        print(f"| {label} | " + " | ".join(str(row[c]) for c in cols) + " |")
    assert base is not None
    ratio = row["tokens_per_paper"] / base["tokens_per_paper"]
    print(f"current / old default tokens per paper: {ratio:.2f}")
    if args.time:
        rates = time_embedding(papers, {"old": OLD_DEFAULT, "current": current}, args.time)
        print(
            f"embedding, median of {args.time}: old default {rates['old']:.2f} papers/s, "
            f"current {rates['current']:.2f} papers/s ({rates['current'] / rates['old']:.2f}x)"
        )


if __name__ == "__main__":
    main()
