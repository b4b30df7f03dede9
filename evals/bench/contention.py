"""Busy machine benchmark: the local embedder when other jobs share the cores, with
its threads waiting passively (the default) against busy-waiting (`embedding.spin_wait`,
the libraries' own default and the baseline), in the same run.

Each round starts `jobs` worker processes at once (1: alone; 2 on a 2-core machine:
two jobs on the same cores). Each worker embeds the sample's chunks through the bulk
path (what ingest and the sentence warm-up do), then embeds 40 single queries and reads
their tokens (what each question costs the retriever and the gate), and prints its
timings. Figures are medians over rounds and workers.

    python -m evals.bench.contention [--rounds 3] [--jobs 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEADER = ["jobs at once", "threads", "embed sample chunks (s)", "query + tokens (ms)"]


def worker(spin_wait: bool) -> dict[str, float]:
    from evals.bench.embed import _chunk_texts
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    texts = _chunk_texts()
    queries = [t.split("\n", 1)[0][:120] for t in texts[:40]]
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="citeqa-contention-")),
        embedding={"spin_wait": spin_wait},  # type: ignore[arg-type]
    )
    emb = make_embeddings(settings)
    emb.load()  # type: ignore[attr-defined]
    emb.embed_documents(texts[:40])  # one-off set-up of both paths, outside the timing
    t0 = time.perf_counter()
    emb.embed_documents(texts)
    embed_s = time.perf_counter() - t0
    per_query = []
    for q in queries:
        t0 = time.perf_counter()
        emb.embed_query(q)
        emb.tokens([q + " ?"])  # type: ignore[attr-defined]
        per_query.append(1000 * (time.perf_counter() - t0))
    return {"embed_s": embed_s, "query_ms": statistics.median(per_query), "texts": len(texts)}


def _round(jobs: int, spin_wait: bool) -> list[dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    cmd = [sys.executable, "-m", "evals.bench.contention", "--worker"]
    cmd += ["--spin"] if spin_wait else []
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"contention worker exited {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run(rounds: int = 3, jobs: tuple[int, ...] = (1, 2)) -> tuple[dict[str, Any], list[tuple]]:
    result: dict[str, Any] = {"cores": os.cpu_count(), "rounds": rounds, "configs": {}}
    rows = []
    for n in jobs:
        medians = {}
        samples: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for _ in range(rounds):
            for spin in (True, False):  # alternating, so the machine's drift hits both alike
                samples[spin].extend(_round(n, spin))
        for spin in (True, False):
            name = "spinning (baseline)" if spin else "passive (default)"
            medians[spin] = {
                "embed_s": round(statistics.median(s["embed_s"] for s in samples[spin]), 2),
                "query_ms": round(statistics.median(s["query_ms"] for s in samples[spin]), 1),
            }
            result["configs"][f"{n} jobs, {name}"] = medians[spin]
            rows.append((n, name, medians[spin]["embed_s"], medians[spin]["query_ms"]))
        ratio = {k: round(medians[True][k] / medians[False][k], 2) for k in ("embed_s", "query_ms")}
        result["configs"][f"{n} jobs, spinning / passive"] = ratio
        rows.append(
            (n, "ratio spinning / passive", f"{ratio['embed_s']}x", f"{ratio['query_ms']}x")
        )
    return result, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", default="1,2", help="Jobs at once in each round, e.g. 1,2.")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spin", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.spin)))
        return
    result, rows = run(args.rounds, tuple(int(j) for j in args.jobs.split(",")))
    print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
    print("\n".join("| " + " | ".join(str(c) for c in r) + " |" for r in rows))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
