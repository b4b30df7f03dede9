"""Ingest benchmark: our job against a plain LangChain `Chroma.from_documents`.

Both sides get the same papers, the same chunk texts and the same embedding
model (all-MiniLM-L6-v2, loaded once, outside the timings): ours through its
own embedding path (onnxruntime, or bf16 where the CPU has it), the baseline
through LangChain's `HuggingFaceEmbeddings` with its defaults (sentence-transformers
fp32, batches of 32), the way a LangChain user embeds; each into a
fresh embedded Chroma; runs alternate so drift on the machine hits both alike. Reported:
medians of papers/s and chunks/s, their ratio, and the re-ingest of unchanged
input against the first run.

    python -m evals.bench.ingest [--repeats 3] [--out reports]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from evals.bench.report import write_report
from ingest.chunk import chunk_paper, embed_text
from ingest.job import IngestJob
from ingest.loaders import Skipped, load
from rag.encode.embeddings import local_model_path, make_embeddings
from rag.index.store import open_store
from rag.settings import SAMPLE_CORPUS as SAMPLE
from rag.settings import Settings


def _ours(settings: Settings, embeddings: Any, sources: list[str]) -> tuple[float, int, float]:
    store = open_store(settings)
    job = IngestJob(store, embeddings, settings, progress=False)
    t0 = time.perf_counter()
    summary = job.run(sources)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = job.run(sources)
    reingest = time.perf_counter() - t0
    assert again.chunks_written == 0, "re-ingest of unchanged input wrote chunks"
    return first, summary.chunks_written, reingest


def _baseline(
    data_dir: Path, embeddings: Any, papers: list, settings: Settings
) -> tuple[float, int]:
    import chromadb
    from langchain_chroma import Chroma
    from langchain_core.documents import Document

    docs = [
        Document(page_content=embed_text(p, c), metadata={"paper_id": p.paper_id, "title": p.title})
        for p in papers
        for c in chunk_paper(p, settings.chunking.size, settings.chunking.overlap)
    ]
    client = chromadb.PersistentClient(path=str(data_dir / "baseline"))
    t0 = time.perf_counter()
    Chroma.from_documents(docs, embedding=embeddings, client=client, collection_name="baseline")
    return time.perf_counter() - t0, len(docs)


def run(repeats: int, out: Path, sources: list[str]) -> dict[str, Any]:
    papers = [p for src in sources for _, p in load(src) if not isinstance(p, Skipped)]
    embeddings = make_embeddings(Settings())
    getattr(embeddings, "load", lambda: None)()
    embeddings.embed_documents(["warm-up"])
    # The opt-in int8 bulk path (precision=int8), for the record: faster, not the default.
    int8 = make_embeddings(Settings(embedding={"precision": "int8"}))
    int8.embed_documents([f"warm-up {i}" for i in range(40)])
    # The baseline embeds the way a LangChain user does, with the library's defaults.
    from langchain_huggingface import HuggingFaceEmbeddings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    plain = HuggingFaceEmbeddings(model_name=local_model_path())
    plain.embed_documents(["warm-up"])
    ours_s, base_s, reingest_s, int8_s = [], [], [], []
    chunks = base_chunks = 0
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp) / "ours")
            order = ["ours", "baseline", "int8"]
            for side in order if i % 2 == 0 else order[::-1]:
                if side == "ours":
                    seconds, chunks, again = _ours(settings, embeddings, sources)
                    ours_s.append(seconds)
                    reingest_s.append(again)
                elif side == "int8":
                    s8 = Settings(data_dir=Path(tmp) / "int8")
                    int8_s.append(_ours(s8, int8, sources)[0])
                else:
                    seconds, base_chunks = _baseline(Path(tmp), plain, papers, settings)
                    base_s.append(seconds)
    n = len(papers)
    ours_med, base_med, re_med, int8_med = (
        statistics.median(x) for x in (ours_s, base_s, reingest_s, int8_s)
    )
    result = {
        "benchmark": "ingest",
        "cores": os.cpu_count(),
        "repeats": repeats,
        "papers": n,
        "chunks": chunks,
        "ours": {
            "seconds_median": round(ours_med, 3),
            "papers_per_s": round(n / ours_med, 2),
            "chunks_per_s": round(chunks / ours_med, 2),
            "runs": [round(x, 3) for x in ours_s],
        },
        "baseline_langchain_from_documents": {
            "seconds_median": round(base_med, 3),
            "papers_per_s": round(n / base_med, 2),
            "chunks_per_s": round(base_chunks / base_med, 2),
            "runs": [round(x, 3) for x in base_s],
        },
        "speedup_vs_baseline": round(base_med / ours_med, 2),
        "int8_opt_in": {
            "seconds_median": round(int8_med, 3),
            "papers_per_s": round(n / int8_med, 2),
            "speedup_vs_baseline": round(base_med / int8_med, 2),
            "runs": [round(x, 3) for x in int8_s],
        },
        "reingest_unchanged": {
            "seconds_median": round(re_med, 4),
            "fraction_of_first_run": round(re_med / ours_med, 4),
        },
    }
    rows = [
        (
            "ingest, ours",
            f"{n / ours_med:.1f} papers/s",
            f"{chunks / ours_med:.1f} chunks/s",
            f"{ours_med:.2f} s",
        ),
        (
            "ingest, LangChain HuggingFaceEmbeddings + Chroma.from_documents",
            f"{n / base_med:.1f} papers/s",
            f"{base_chunks / base_med:.1f} chunks/s",
            f"{base_med:.2f} s",
        ),
        ("ratio ours / baseline (papers/s)", f"{base_med / ours_med:.2f}x", "", ""),
        (
            "ingest, ours with precision=int8 (opt-in)",
            f"{n / int8_med:.1f} papers/s ({base_med / int8_med:.2f}x)",
            f"{chunks / int8_med:.1f} chunks/s",
            f"{int8_med:.2f} s",
        ),
        (
            "re-ingest unchanged",
            "",
            "",
            f"{re_med:.3f} s ({100 * re_med / ours_med:.1f}% of first)",
        ),
    ]
    write_report(out, "ingest", result, ["measure", "papers", "chunks", "time (median)"], rows)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("sources", nargs="*", default=[str(SAMPLE)])
    args = parser.parse_args()
    result = run(args.repeats, args.out, args.sources)
    print((args.out / "bench-ingest.md").read_text())
    print(f"speedup vs baseline: {result['speedup_vs_baseline']}x")


if __name__ == "__main__":
    main()
