"""Chunking sweep (issue 16): retrieval, embedded tokens and ingest rate per setting.

    python -m evals.bench.chunking --dataset sample --set 800/200/every --set 800/0/first

Each `--set SIZE/OVERLAP/TITLE` is ingested into a fresh store (timed: papers/s,
with the embedding model already loaded) and asked the dataset's questions for
BM25, dense and hybrid paper rankings (retrieval only: no answers are generated),
scored as `citeqa eval` scores them. One JSON line per setting is appended to
`--out` (default reports/chunking.jsonl).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from evals.bench.tokens import measure
from evals.dataset import DATASETS, load_dataset
from evals.run import ROOT, corpus, score_retrieval
from rag.settings import ChunkingSettings, Settings


class CachedEmbeddings:
    """Embeds each distinct text once across settings and runs (most chunks recur
    between neighbouring settings), keeping vectors in a SQLite file. Ingest rates
    measured through it are not embedding rates: use it for retrieval figures only."""

    def __init__(self, inner: Any, path: Path) -> None:
        import sqlite3

        self.inner = inner
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, vec TEXT)")

    def _get(self, keys: list[str]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            q = f"SELECT k, vec FROM v WHERE k IN ({','.join('?' * len(part))})"
            out.update((k, json.loads(v)) for k, v in self.db.execute(q, part))
        return out

    def _embed(self, keys: list[str], texts: list[str], fn: Any) -> list[list[float]]:
        have = self._get(list(dict.fromkeys(keys)))
        todo = list(
            dict.fromkeys((k, t) for k, t in zip(keys, texts, strict=True) if k not in have)
        )
        if todo:
            vecs = fn([t for _, t in todo])
            rows = [(k, json.dumps(v)) for (k, _), v in zip(todo, vecs, strict=True)]
            self.db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)", rows)
            self.db.commit()
            have.update((k, v) for (k, _), v in zip(todo, vecs, strict=True))
        return [have[k] for k in keys]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(["d:" + t for t in texts], texts, self.inner.embed_documents)

    def embed_query(self, text: str) -> list[float]:
        return self._embed(["q:" + text], [text], lambda ts: [self.inner.embed_query(ts[0])])[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def parse(spec: str) -> ChunkingSettings:
    size, overlap, title = spec.split("/")
    return ChunkingSettings(size=int(size), overlap=int(overlap), title=title)  # type: ignore[arg-type]


def run_one(dataset: str, chunking: ChunkingSettings, embeddings: Any) -> dict[str, Any]:
    from ingest.job import IngestJob
    from rag.chain import build_chain

    spec = DATASETS[dataset]
    rows = load_dataset(spec.questions)
    papers = list(corpus(spec.corpus).values())
    with tempfile.TemporaryDirectory(prefix="citeqa-chunking-") as tmp:
        settings = Settings(data_dir=Path(tmp), chunking=chunking.model_dump())  # type: ignore[arg-type]
        chain = build_chain(settings, embeddings=embeddings)
        t0 = time.perf_counter()
        summary = IngestJob(chain.retriever.store, embeddings, settings, progress=False).run(
            [str(spec.corpus)], prune=True
        )
        ingest_s = time.perf_counter() - t0
        retrieval = {}
        for mode in ("bm25", "dense", "hybrid"):
            ranked = [
                [
                    s.paper_id
                    for s in chain.retriever.retrieve(
                        r["question"], k=10, mode=mode, mmr=False
                    ).sources
                ]
                for r in rows
            ]
            retrieval[mode] = {k: round(v, 4) for k, v in score_retrieval(rows, ranked).items()}
    return {
        "dataset": dataset,
        **measure(papers, chunking),
        "questions": sum(bool(r["gold_paper_ids"]) for r in rows),
        "chunks_written": summary.chunks_written,
        "ingest_s": round(ingest_s, 1),
        "papers_per_s": round(len(papers) / ingest_s, 1),
        "retrieval": retrieval,
    }


def main(argv: list[str] | None = None) -> None:
    from rag.encode.embeddings import make_embeddings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sample", choices=sorted(DATASETS))
    parser.add_argument("--set", action="append", required=True, help="SIZE/OVERLAP/TITLE")
    parser.add_argument(
        "--cache-embeddings",
        action="store_true",
        help="Embed each distinct text once across the settings (retrieval figures only: "
        "papers/s is then not an ingest rate).",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "chunking.jsonl")
    args = parser.parse_args(argv)
    embeddings = make_embeddings(Settings())
    load = getattr(embeddings, "load", None)
    if callable(load):
        load()
    embeddings.embed_documents(["warm up the model"] * 8)
    if args.cache_embeddings:
        embeddings = CachedEmbeddings(embeddings, args.out.with_suffix(".vectors.sqlite"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for spec in args.set:
        row = run_one(args.dataset, parse(spec), embeddings)
        row["cached_embeddings"] = args.cache_embeddings
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        r = row["retrieval"]
        print(
            f"{args.dataset} {spec}: {row['chunks_per_paper']} chunks/paper, "
            f"{row['tokens_per_paper']} tokens/paper, {row['papers_per_s']} papers/s | "
            + " | ".join(
                f"{m} r@5 {r[m]['recall@5']:.3f} mrr {r[m]['mrr@10']:.3f}"
                for m in ("dense", "hybrid")
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
