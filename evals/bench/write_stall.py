"""Reader latency on /v1/search while an admin upload lands on a store above the
background-rebuild threshold (synthetic chunks with precomputed vectors, as the
scale bench makes them; the upload is embedded by the real model).

    python -m evals.bench.write_stall [--chunks 20000] [--papers 20]

Prints the upload's time and the reader's p50 / p95 / max over the upload and
the seconds after it. Run it on two checkouts to compare designs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from evals.bench.scale import Synthetic
from rag.index.store import open_store
from rag.settings import Settings


def run(chunks: int, papers: int, after_s: float = 8.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="citeqa-write-stall-") as tmp:
        return _run(Path(tmp), chunks, papers, after_s)


def _run(tmp: Path, chunks: int, papers: int, after_s: float) -> dict[str, Any]:
    settings = Settings(
        data_dir=tmp,
        admin_key=SecretStr("bench-admin"),
        retrieval={"warm_sentences": 0, "lexical_refresh_seconds": 0.2},
    )
    store = open_store(settings)
    syn = Synthetic()
    for lo in range(0, chunks, 5000):
        store.upsert(*syn.chunks(lo, min(chunks, lo + 5000)))
    store.bump_version()
    upload = "".join(
        json.dumps(
            {
                "id": f"2409.{i:05d}",
                "title": f"Quillwort lattice {i}",
                "abstract": f"We study quillwort lattices, case {i}, and find they tile the plane.",
            }
        )
        + "\n"
        for i in range(papers)
    ).encode()
    query = {"q": f"{syn.vocab[5]} {syn.vocab[50]}"}
    latencies: list[float] = []
    with TestClient(create_app(settings)) as client:
        for _ in range(5):
            client.get("/v1/search", params=query)
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                client.get("/v1/search", params=query)
                latencies.append((time.perf_counter() - t0) * 1000)

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(1.0)
        t0 = time.perf_counter()
        r = client.post(
            "/v1/ingest",
            headers={"Authorization": "Bearer bench-admin"},
            files={"file": ("new.jsonl", upload)},
        )
        upload_s = time.perf_counter() - t0
        time.sleep(after_s)
        done.set()
        thread.join()
    latencies.sort()
    return {
        "chunks": chunks,
        "upload_status": r.status_code,
        "upload_s": round(upload_s, 2),
        "reader_queries": len(latencies),
        "reader_p50_ms": round(statistics.median(latencies), 1),
        "reader_p95_ms": round(latencies[int(0.95 * len(latencies)) - 1], 1),
        "reader_max_ms": round(latencies[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--papers", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.chunks, args.papers)))


if __name__ == "__main__":
    main()
