"""What Chroma's HNSW `sync_threshold` does to writes and to the reads beside them, on
a store `evals.bench.scale_server` built: a `chroma run` server on it, the collection's
threshold set (or kept), then rounds of a writer process adding `--papers` papers in
upserts of `--write-batch` chunks, as the ingest job writes them, while this process
sends dense queries (random unit vectors, 40 neighbours, distances only) one after
another. Per round: the writer's seconds, query latency p50 / p95 / max and how many
went over 100 ms, and how many changes the HNSW files are behind Chroma's log
(read from its SQLite file).

    python -m evals.bench.chroma_sync --store /tmp/citeqa-scale-1000000 \\
        --sync-threshold 1000 [--rounds 2] [--papers 1000] [--write-batch 32]

Each round's papers stay in the store. The threshold stays set afterwards.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from evals.bench.scale_server import _settings, start_writer
from evals.metrics import percentile
from evals.procs import free_port, start_chroma, stop


def behind(db: Path, collection: str) -> int:
    """Changes to `collection` in Chroma's log that its HNSW files do not hold yet."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)  # waits for a write
    try:
        cid, segment = con.execute(
            "SELECT c.id, s.id FROM collections c JOIN segments s ON s.collection = c.id "
            "WHERE c.name = ? AND s.scope = 'VECTOR'",
            (collection,),
        ).fetchone()
        head = con.execute(
            "SELECT max(seq_id) FROM embeddings_queue WHERE topic LIKE ?", (f"%/{cid}",)
        ).fetchone()[0]
        done = con.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,))
        row = done.fetchone()
        return max(0, int(head or 0) - int(row[0] if row else 0))
    finally:
        con.close()


def run(store: Path, threshold: int | None, rounds: int, papers: int, batch: int) -> dict[str, Any]:
    import chromadb

    port = free_port()
    t0 = time.perf_counter()
    server = start_chroma(store / "chroma", port)
    out: dict[str, Any] = {"server_start_s": round(time.perf_counter() - t0, 1), "rounds": []}
    url = f"http://127.0.0.1:{port}"
    try:
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        name = _settings(chroma_url=url).collection_name
        col = client.get_collection(name)
        if threshold is not None:
            col.modify(configuration={"hnsw": {"sync_threshold": threshold}})
        out["sync_threshold"] = (col.configuration.get("hnsw") or {}).get("sync_threshold")
        rng = np.random.default_rng(0)
        for _ in range(rounds):
            word = f"quillwort{secrets.token_hex(4)}"
            writer, result = start_writer(url, col.count(), papers, word, batch)
            ms: list[float] = []
            try:
                while writer.poll() is None:
                    v = rng.standard_normal(384)
                    t1 = time.perf_counter()
                    col.query(
                        query_embeddings=[(v / np.linalg.norm(v)).tolist()],
                        n_results=40,
                        include=["distances"],
                    )
                    ms.append((time.perf_counter() - t1) * 1000)
            finally:
                stop(writer)
            written = json.loads(result.read_text())
            result.unlink(missing_ok=True)
            out["rounds"].append(
                {
                    "writer_s": written["write_s"],
                    "queries": len(ms),
                    "p50_ms": round(statistics.median(ms), 1),
                    "p95_ms": round(percentile(ms, 95) or 0, 1),
                    "max_ms": round(max(ms), 1),
                    "over_100ms": sum(1 for m in ms if m > 100),
                    "hnsw_behind": behind(store / "chroma" / "chroma.sqlite3", name),
                }
            )
            print(json.dumps(out["rounds"][-1]), flush=True)
    finally:
        stop(server)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--sync-threshold", type=int, default=None, help="Default: keep.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--write-batch", type=int, default=32)
    a = parser.parse_args()
    print(json.dumps(run(a.store, a.sync_threshold, a.rounds, a.papers, a.write_batch)))


if __name__ == "__main__":
    main()
