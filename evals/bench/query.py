"""Query benchmark: `/v1/search` and `/v1/chat` (extractive) through a real uvicorn
on loopback, at 1, 8 and 32 concurrent clients.

A bounded load generator: each level sends a fixed number of requests (the dev
set's questions, cycled) from `clients` asyncio tasks and stops by itself;
loopback only. Reported per endpoint and level: latency p50/p95/p99,
throughput and errors. The baseline in the same run is the LangChain-tutorial
retriever (`langchain_chroma.Chroma.similarity_search`, top 4, over
1000/200-character chunks) timed in-process against our retriever in-process,
so the ratio compares retrieval work, not HTTP.

    python -m evals.bench.query [--requests 200] [--out reports]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from evals.dataset import load_dataset
from evals.metrics import percentile
from evals.procs import free_port, stop, wait_http
from rag.settings import SAMPLE_CORPUS as SAMPLE

ROOT = Path(__file__).resolve().parents[2]

DEV = ROOT / "evals" / "data" / "dev.jsonl"
LEVELS = (1, 8, 32)


async def _load(base: str, endpoint: str, questions: list[str], clients: int, n: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            q = questions[i % len(questions)]
            t0 = time.perf_counter()
            try:
                if endpoint == "search":
                    r = await client.get("/v1/search", params={"q": q, "k": 5})
                else:
                    r = await client.post("/v1/chat", json={"question": q})
                ok = r.status_code == 200
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                ok, key = False, type(exc).__name__
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "clients": clients,
        "requests": n,
        "ok": len(ms),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "p50_ms": round(percentile(ms, 50), 1) if ms else None,
        "p95_ms": round(percentile(ms, 95), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "throughput_rps": round(len(ms) / wall, 1),
    }


def _in_process(data_dir: Path, questions: list[str], repeats: int) -> dict[str, Any]:
    """Our retriever and the LangChain-tutorial retriever, same questions, same model."""
    import chromadb
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest.loaders import Skipped, load
    from rag.encode.embeddings import make_embeddings
    from rag.index.store import open_store
    from rag.retrieval.retrieve import make_retriever, search_papers
    from rag.settings import Settings

    settings = Settings(data_dir=data_dir)
    emb = make_embeddings(settings)
    retriever = make_retriever(settings, open_store(settings), emb)
    papers = [p for _, p in load(str(SAMPLE)) if not isinstance(p, Skipped)]
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    docs = splitter.split_documents(
        [Document(p.abstract, metadata={"paper_id": p.paper_id}) for p in papers]
    )
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(path=tmp)
        base = Chroma.from_documents(docs, embedding=emb, client=client, collection_name="base")
        ours_ms: list[float] = []
        base_ms: list[float] = []
        for q in questions[:5]:  # warm both
            search_papers(q, retriever, 5)
            base.similarity_search(q, k=4)
        for _ in range(repeats):
            for q in questions:
                t0 = time.perf_counter()
                search_papers(q, retriever, 5)
                ours_ms.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                base.similarity_search(q, k=4)
                base_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "ours_hybrid_p50_ms": round(statistics.median(ours_ms), 2),
        "ours_hybrid_p95_ms": round(percentile(ours_ms, 95), 2),
        "baseline_dense_top4_p50_ms": round(statistics.median(base_ms), 2),
        "baseline_dense_top4_p95_ms": round(percentile(base_ms, 95), 2),
        "ratio_p50_ours_over_baseline": round(
            statistics.median(ours_ms) / statistics.median(base_ms), 2
        ),
    }


def run(requests: int, out: Path | None = None) -> tuple[dict[str, Any], list[tuple]]:
    questions = [row["question"] for row in load_dataset(DEV)]
    citeqa = str(Path(sys.executable).with_name("citeqa"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
        env.update(
            CITEQA_DATA_DIR=tmp,
            CITEQA_API__RATE_LIMIT="",
            CITEQA_LLM="extractive",
            HF_HUB_OFFLINE="1",
        )
        subprocess.run([citeqa, "ingest", str(SAMPLE)], env=env, check=True, capture_output=True)
        port = free_port()
        proc = subprocess.Popen(
            [citeqa, "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/readyz", timeout=180, proc=proc)
            deadline = time.monotonic() + 300  # measure the service, not its warm-up
            while time.monotonic() < deadline:
                if not httpx.get(f"{base}/readyz", timeout=10).json()["warmup"]["running"]:
                    break
                time.sleep(0.5)
            for q in questions[:10]:  # warm caches the way a running service has them
                httpx.get(f"{base}/v1/search", params={"q": q}, timeout=60)
                httpx.post(f"{base}/v1/chat", json={"question": q}, timeout=60)
            levels: dict[str, list[dict]] = {"search": [], "chat": []}
            for endpoint in ("search", "chat"):
                for clients in LEVELS:
                    n = requests if clients == 1 else requests * 2
                    levels[endpoint].append(
                        asyncio.run(_load(base, endpoint, questions, clients, n))
                    )
        finally:
            stop(proc)
        inproc = _in_process(Path(tmp), questions, 2)
    result = {"http": levels, "in_process": inproc}
    rows: list[tuple] = []
    for endpoint, per in levels.items():
        for lv in per:
            rows.append(
                (
                    f"/v1/{endpoint}, {lv['clients']} client(s)",
                    f"{lv['p50_ms']} / {lv['p95_ms']} / {lv['p99_ms']} ms",
                    f"{lv['throughput_rps']} req/s",
                    f"{lv['errors']} of {lv['requests']}",
                )
            )
    rows.append(
        (
            "retrieval in-process: ours (hybrid, gate) vs LangChain similarity_search top-4",
            f"{inproc['ours_hybrid_p50_ms']} vs {inproc['baseline_dense_top4_p50_ms']} ms (p50)",
            f"ratio {inproc['ratio_p50_ours_over_baseline']}x",
            "",
        )
    )
    return result, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    result, rows = run(args.requests)
    for row in rows:
        print(" | ".join(str(c) for c in row))


if __name__ == "__main__":
    main()
