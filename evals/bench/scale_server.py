"""Scale with every role in its own process, as deployed past one laptop: a `chroma
run` server holding `--chunks` synthetic chunks (precomputed vectors, made as
`evals.bench.scale` makes them), a reader process (this one: the API's retriever
with its BM25 index), a writer process that ingests `--new-papers` new papers into
the server as the ingest job writes them, and a new replica process.

Figures:
- the reader's first BM25 build (what a replica with no snapshot does once);
- dense, BM25 and hybrid p50/p95 through the `Retriever` (real query embedder,
  cold records);
- from the writer's start until the reader's BM25 finds every new chunk: the
  time, the reader's hybrid latency meanwhile (queries over 100 ms counted) and
  the chunks the reader re-added;
- RSS of the reader and of the Chroma server (anonymous and file-backed apart:
  memory-mapped index segments are file-backed and shared between processes);
- a new replica process started from a copy of the reader's index directory:
  the seconds from opening its index to its first hybrid answer (interpreter
  and model load not counted), whether it rebuilt, and its RSS.

The store is built once, embedded, into `--store` and then served by `chroma run`
from that directory; later runs reuse it (each run's new papers stay in it). The
file only uses what both BM25 designs share, so the same file run from an older
checkout measures that design against the same store:

    python -m evals.bench.scale_server --chunks 1000000 --store /tmp/citeqa-scale
        [--new-papers 1000] [--queries 60] [--write-batch N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.bench.scale import CHUNKS_PER_PAPER, Synthetic
from evals.metrics import percentile
from evals.procs import free_port, start_chroma, stop
from rag.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BUILD_STEP = 5000


def rss(pid: int | str = "self") -> dict[str, int]:
    """Resident memory in MB: all, anonymous (the process's own) and file-backed."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = round(int(value.split()[0]) / 1024)
    return {"rss_mb": out.get("VmRSS", 0), "anon_mb": out.get("RssAnon", 0),
            "file_mb": out.get("RssFile", 0)}  # fmt: skip


COLLECTION_ENV = "CITEQA_BENCH_COLLECTION"
"""Pins the collection's name: another checkout's settings may name the same store's
collection otherwise (its fingerprint covers chunking settings that changed)."""


class PinnedSettings(Settings):  # type: ignore[misc]
    """Settings whose collection is the one `CITEQA_BENCH_COLLECTION` names. A class of
    this module, not of a function, so a child process (the API's BM25 build) can
    unpickle it; the child inherits the variable."""

    @property
    def collection_name(self) -> str:
        return os.environ.get(COLLECTION_ENV) or super().collection_name


def _settings(**kw: Any) -> Any:
    return PinnedSettings(**kw) if os.environ.get(COLLECTION_ENV) else Settings(**kw)


def build(store_dir: Path, chunks: int) -> dict[str, Any]:
    """At least `chunks` chunks in the embedded store at `store_dir` (added to what
    an earlier run left there); the seconds spent adding are kept across runs."""
    from rag.index.store import open_store

    store = open_store(_settings(data_dir=store_dir))
    have = store.count()
    log = store_dir / "build.json"
    done = json.loads(log.read_text()) if log.exists() else {"seconds": 0.0, "chunks": 0}
    if have < chunks:
        syn = Synthetic(seed=have)  # content differs per resume; only its shape matters
        lo = -(-have // CHUNKS_PER_PAPER) * CHUNKS_PER_PAPER
        t0 = time.perf_counter()
        for a in range(lo, chunks, BUILD_STEP):
            store.upsert(*syn.chunks(a, min(chunks, a + BUILD_STEP)))
            if (a // BUILD_STEP) % 20 == 0:
                print(f"  built {a + BUILD_STEP:,} chunks", file=sys.stderr, flush=True)
        store.bump_version()
        done = {"seconds": done["seconds"] + time.perf_counter() - t0, "chunks": store.count()}
        log.write_text(json.dumps(done))
    del store
    return {"chunks": done["chunks"], "build_s": round(done["seconds"], 1)}


def _warm_lexical() -> None:
    """What an API process does for its BM25 at start, when the design does anything
    (the bm25s design before tantivy compiled its numba kernels)."""
    import rag.index.lexical

    warm = getattr(rag.index.lexical, "compile_jit", None)
    if warm is not None:
        warm()


def _settle_heap() -> None:
    """What an API process does once loaded, when the design does it (`gc.freeze()`)."""
    import rag.warmup

    settle = getattr(rag.warmup, "settle_heap", None)
    if settle is not None:
        settle()


def _child(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "evals.bench.scale_server", role, *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


# -- the writer and the replica: each a process of its own -------------------------------


def write(url: str, first_chunk: int, papers: int, word: str, step: int) -> dict[str, Any]:
    """`papers` new papers (every chunk holds `word`), logged and written as the
    ingest job does: the change log before and after, upserts of the job's size."""
    from rag.index.store import open_store

    store = open_store(_settings(chroma_url=url))
    syn = Synthetic(seed=first_chunk)
    ids, vecs, texts, metas = syn.chunks(first_chunk, first_chunk + papers * CHUNKS_PER_PAPER)
    texts = [f"{t} {word}" for t in texts]
    pids = sorted({m["paper_id"] for m in metas})
    log = getattr(store, "log_changes", None)  # a design without a change log stamps only
    t0 = time.perf_counter()
    if log:
        log(pids)
    for a in range(0, len(ids), step):
        b = a + step
        store.upsert(ids[a:b], vecs[a:b], texts[a:b], metas[a:b])
    if log:
        log(pids)
    else:
        store.bump_version()
    return {"write_s": round(time.perf_counter() - t0, 2), "chunks": len(ids)}


def replica(url: str, data_dir: Path, query: str) -> dict[str, Any]:
    """A new API process's retriever: open the index (a copy of a reader's directory,
    or nothing) and answer one hybrid query."""
    from rag.encode.embeddings import make_embeddings
    from rag.index.lexical import open_lexical
    from rag.index.store import open_store
    from rag.retrieval.retrieve import Retriever

    settings = _settings(chroma_url=url, data_dir=data_dir)
    store = open_store(settings)
    emb = make_embeddings(settings)
    emb.embed_query("warm up")
    _warm_lexical()
    t0 = time.perf_counter()
    lexical = open_lexical(store, settings)
    retriever = Retriever(store, emb, lexical, settings.retrieval)
    retriever.retrieve(query, k=5, mode="hybrid", mmr=False)
    start_s = time.perf_counter() - t0
    stats = getattr(lexical, "stats", None)
    return {
        "start_s": round(start_s, 2),
        "full_builds": getattr(stats, "full_builds", None),
        **rss(),
    }


# -- the reader (this process) ------------------------------------------------------------


def mode_latency(retriever: Any, lexical: Any, queries: list[str]) -> dict[str, dict[str, float]]:
    """Dense, BM25 and hybrid p50/p95 over `queries`, each new to the record cache."""
    out = {}
    for mode in ("dense", "bm25", "hybrid"):
        for q in queries[:5]:
            retriever.retrieve(q, k=5, mode=mode, mmr=False)
        lexical.clear_records(lexical.get().version)  # each query new: cold records
        ms = []
        for q in queries:
            t0 = time.perf_counter()
            retriever.retrieve(q, k=5, mode=mode, mmr=False)
            ms.append((time.perf_counter() - t0) * 1000)
        out[mode] = {
            "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(percentile(ms, 95) or 0, 1),
        }
    return out


def query_until_found(
    retriever: Any,
    lexical: Any,
    queries: list[str],
    written: Callable[[], bool],
    word: str,
    n_chunks: int,
    timeout: float | None = None,
    dense_deadline_ms: float | None = None,
) -> dict[str, Any]:
    """Hybrid queries, one after another, until `written()` and the reader's BM25
    finds all `n_chunks` chunks holding `word`: the seconds that took, the latency
    figures, and where the slowest query spent its time. With `dense_deadline_ms`,
    as paper search with `search_dense_timeout_ms` queries: the answers that were
    BM25's alone are counted."""
    ms: list[float] = []
    partial = 0
    deadline = {} if dense_deadline_ms is None else {"dense_deadline_ms": dense_deadline_ms}
    slowest: dict[str, float] = {}
    pauses = _GcPauses()
    gc.callbacks.append(pauses)
    t0 = time.perf_counter()
    i = 0
    try:
        while True:
            q = queries[i % len(queries)]
            i += 1
            t1, gc1 = time.perf_counter(), pauses.total_ms
            r = retriever.retrieve(q, k=5, mode="hybrid", mmr=False, **deadline)
            ms.append((time.perf_counter() - t1) * 1000)
            partial += getattr(r, "partial", None) is not None
            if ms[-1] >= max(ms):
                slowest = {k: round(v * 1000, 1) for k, v in r.timings.items() if v > 0.005}
                if pauses.total_ms > gc1:  # the interpreter's collector ran inside it
                    slowest["gc"] = round(pauses.total_ms - gc1, 1)
            if written() and len(lexical.current.search(word, n_chunks + 1)) == n_chunks:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"BM25 did not find the new papers within {timeout:.0f} s")
    finally:
        gc.callbacks.remove(pauses)
    return {
        "found_s": round(time.perf_counter() - t0, 2),
        "queries": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(percentile(ms, 95) or 0, 1),
        "max_ms": round(max(ms), 1),
        "over_100ms": sum(1 for m in ms if m > 100),
        "slowest_stages_ms": slowest,  # where the slowest query spent its time
        "gc_max_ms": round(pauses.max_ms, 1),  # the reader's longest garbage collection
        **({"dense_deadline_ms": dense_deadline_ms, "partial": partial} if deadline else {}),
    }


class _GcPauses:
    """A `gc.callbacks` hook: how long the reader's garbage collections take."""

    def __init__(self) -> None:
        self.total_ms = 0.0
        self.max_ms = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        took = (time.perf_counter() - self._start) * 1000
        self.total_ms += took
        self.max_ms = max(self.max_ms, took)


def start_writer(
    url: str, chunks_now: int, papers: int, word: str, step: int
) -> tuple[subprocess.Popen, Path]:
    """The writer process (`write` below) adding `papers` papers after the `chunks_now`
    the store holds, and the file it reports to."""
    first = -(-chunks_now // CHUNKS_PER_PAPER) * CHUNKS_PER_PAPER
    out_file = Path(tempfile.mkstemp(prefix="citeqa-writer-", suffix=".json")[1])
    args = [f"--url={url}", f"--first-chunk={first}", f"--papers={papers}",
            f"--word={word}", f"--step={step}", f"--out={out_file}"]  # fmt: skip
    return subprocess.Popen(_child("write", *args), env=_child_env(), cwd=ROOT), out_file


def _while_writer_runs(
    url: str, store: Any, lexical: Any, retriever: Any, queries: list[str], papers: int,
    step: int, timeout: float, dense_deadline_ms: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    word = "quillwort" + "".join(secrets.choice("bcdfghjklmnpqrstvwxz") for _ in range(8))
    n_chunks = papers * CHUNKS_PER_PAPER
    stats = getattr(lexical, "stats", None)
    added_before = getattr(stats, "docs_added", 0)
    writer, out_file = start_writer(url, store.count(), papers, word, step)
    try:
        figures = query_until_found(
            retriever, lexical, queries, lambda: writer.poll() is not None, word, n_chunks,
            timeout, dense_deadline_ms,
        )  # fmt: skip
    finally:
        stop(writer)
    if writer.returncode != 0:
        raise RuntimeError(f"the writer exited {writer.returncode}")
    written = json.loads(out_file.read_text())
    out_file.unlink()
    return {
        "papers": papers,
        "writer_s": written["write_s"],
        **figures,
        "chunks_readded": getattr(stats, "docs_added", 0) - added_before if stats else None,
    }


def run(
    store_dir: Path,
    chunks: int,
    n_queries: int,
    new_papers: int,
    timeout: float,
    write_batch: int | None = None,
    dense_deadline_ms: float | None = None,
) -> dict[str, Any]:
    """`write_batch`: chunks per upsert of the writer (default: the ingest job's,
    `CITEQA_WRITE_BATCH`; 256 in a checkout without that setting).
    `dense_deadline_ms`: then a second round of new papers, with the reader's
    queries as paper search makes them with `search_dense_timeout_ms` set."""
    from rag.encode.embeddings import make_embeddings
    from rag.index.lexical import open_lexical
    from rag.index.store import open_store
    from rag.retrieval.retrieve import Retriever

    store_dir.mkdir(parents=True, exist_ok=True)
    # Built in a process of its own: embedded Chroma keeps the collection in memory.
    built = subprocess.run(
        _child("build", f"--store={store_dir}", f"--chunks={chunks}"),
        env=_child_env(), cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = {
        "benchmark": "scale_server",
        **json.loads(built.stdout.strip().splitlines()[-1]),
    }
    print(f"store: {result}", flush=True)
    queries = Synthetic(seed=1).queries(n_queries)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    chroma = start_chroma(store_dir / "chroma", port)
    work = Path(tempfile.mkdtemp(prefix="citeqa-scale-server-"))
    try:
        settings = _settings(chroma_url=url, data_dir=work / "reader")
        store = open_store(settings)
        store.count()  # the server has loaded the collection
        result["server_start_s"] = round(time.perf_counter() - t0, 1)
        emb = make_embeddings(settings)
        emb.embed_query("warm up")
        _warm_lexical()
        rss_before = rss()["rss_mb"]
        lexical = open_lexical(store, settings)
        lexical.refresh_seconds = 3600
        t0 = time.perf_counter()
        lexical.get()
        result["bm25_first_build_s"] = round(time.perf_counter() - t0, 1)
        result["bm25_rss_mb"] = rss()["rss_mb"] - rss_before
        print(f"reader's first BM25 build: {result['bm25_first_build_s']} s", flush=True)
        retriever = Retriever(store, emb, lexical, settings.retrieval)
        _settle_heap()
        result["query"] = mode_latency(retriever, lexical, queries)
        print(f"query: {result['query']}", flush=True)
        lexical.refresh_seconds = settings.retrieval.lexical_refresh_seconds
        step = write_batch or min(store.max_batch_size, getattr(settings, "write_batch", 256))
        result["write_batch"] = step
        result["while_new_papers_land"] = _while_writer_runs(
            url, store, lexical, retriever, queries, new_papers, step, timeout
        )
        print(f"while new papers land: {result['while_new_papers_land']}", flush=True)
        if dense_deadline_ms is not None:
            result["with_dense_deadline"] = _while_writer_runs(
                url, store, lexical, retriever, queries, new_papers, step, timeout,
                dense_deadline_ms,
            )  # fmt: skip
            print(f"with a dense deadline: {result['with_dense_deadline']}", flush=True)
        result["reader"] = {**rss(), "index_mb": _dir_mb(work / "reader")}
        result["chroma_server"] = rss(chroma.pid)
        copy = work / "replica"
        if (work / "reader").exists():
            shutil.copytree(work / "reader", copy)
        out = subprocess.run(
            [*_child("replica", f"--url={url}", f"--data-dir={copy}", f"--query={queries[0]}")],
            env=_child_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"the replica failed: {out.stderr[-3000:]}")
        result["replica"] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        stop(chroma)
        shutil.rmtree(work, ignore_errors=True)
    return result


def _dir_mb(path: Path) -> int:
    """Bytes the files under `path` hold, in MB (the reader's BM25 index on disk)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1_000_000


HEADER = ["measure", "figure"]


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    w = r["while_new_papers_land"]
    q = r["query"]
    return [
        ("chunks in the `chroma run` server", f"{r['chunks']:,} (built in {r['build_s']} s)"),
        ("Chroma server RSS (anon / file-backed)", "{rss_mb} MB ({anon_mb} / {file_mb})".format(
            **r["chroma_server"])),
        ("reader's first BM25 build from the server", f"{r['bm25_first_build_s']} s"),
        ("dense / BM25 / hybrid p50 / p95", " · ".join(
            f"{m} {q[m]['p50_ms']} / {q[m]['p95_ms']} ms" for m in ("dense", "bm25", "hybrid"))),
        (f"{w['papers']:,} new papers from another process until the reader's BM25 finds them",
         f"{w['found_s']} s (the writer took {w['writer_s']} s; {w['chunks_readded']} chunks "
         "re-added)"),
        ("hybrid meanwhile p50 / p95 / max",
         f"{w['p50_ms']} / {w['p95_ms']} / {w['max_ms']} ms, {w['over_100ms']} of {w['queries']} "
         f"over 100 ms (slowest: {w['slowest_stages_ms']})"),
        *([(f"the same, searching with a {d['dense_deadline_ms']:g} ms dense deadline",
             f"{d['p50_ms']} / {d['p95_ms']} / {d['max_ms']} ms, {d['over_100ms']} of "
             f"{d['queries']} over 100 ms, {d['partial']} answered by BM25 alone "
             f"(new papers found in {d['found_s']} s)")]
          if (d := r.get("with_dense_deadline")) else []),
        ("reader (API) process RSS (anon / file-backed)",
         "{rss_mb} MB ({anon_mb} / {file_mb})".format(**r["reader"])),
        *([("the reader's BM25 index on disk (records included)",
            f"{r['reader']['index_mb']:,} MB")] if "index_mb" in r["reader"] else []),
        ("new replica: index open to first hybrid answer",
         "{start_s} s, full builds {full_builds}, RSS {rss_mb} MB".format(**r["replica"])),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    w = sub.add_parser("write")
    for name in ("url", "word", "out"):
        w.add_argument(f"--{name}", required=True)
    for name in ("first-chunk", "papers", "step"):
        w.add_argument(f"--{name}", type=int, required=True)
    b = sub.add_parser("build")
    b.add_argument("--store", type=Path, required=True)
    b.add_argument("--chunks", type=int, required=True)
    r = sub.add_parser("replica")
    r.add_argument("--url", required=True)
    r.add_argument("--data-dir", type=Path, required=True)
    r.add_argument("--query", required=True)
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, default=Path("/tmp/citeqa-scale"))
    parser.add_argument("--new-papers", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--write-batch", type=int, default=None)
    parser.add_argument(
        "--dense-deadline-ms",
        type=float,
        default=None,
        help="Then land as many papers again, the reader searching with this "
        "`search_dense_timeout_ms`.",
    )
    args = parser.parse_args()
    if args.role == "write":
        res = write(args.url, args.first_chunk, args.papers, args.word, args.step)
        Path(args.out).write_text(json.dumps(res))
    elif args.role == "build":
        print(json.dumps(build(args.store, args.chunks)))
    elif args.role == "replica":
        print(json.dumps(replica(args.url, args.data_dir, args.query)))
    else:
        result = run(
            args.store, args.chunks, args.queries, args.new_papers, args.timeout,
            args.write_batch, args.dense_deadline_ms,
        )  # fmt: skip
        print(json.dumps(result))
        for row in rows(result):
            print(" | ".join(row))


if __name__ == "__main__":
    main()
