"""Ingestion on a Ray cluster: `citeqa ingest FILE... --engine ray [--address ADDR]`.

The same job as ingest/job.py, with reading, the diff against the store and
embedding spread over a cluster's processes and machines by Ray Data, streaming,
so no input ever sits whole in memory:

1. read (tasks, ingest/ray_stages.py `PaperSource`): a JSONL file is cut into
   byte ranges, one task each (ingest/loaders/ranges.py), so one big file is many
   tasks; the other formats are one task per file, through today's loaders. A row
   per record (a paper, or a skipped record with its reason) and a last row per
   range holding how many lines it had.
2. diff (tasks): per batch, the papers' stored chunks are read from the Chroma
   server and `plan_papers` (the local job's own diff) marks each paper unchanged,
   added or updated; changed papers are chunked and carry their stale chunk ids.
3. embed (an actor pool): the local model on the CPUs (or a GPU) each actor was
   given, or batched calls to the OpenAI-compatible endpoint
   (`CITEQA_EMBEDDING__PROVIDER=openai`), from the same actors.
4. write (this process, in input order): line numbers resolved, duplicate ids and
   bad records reported, paper-aligned upserts, stale chunks deleted after each
   paper's new ones, the store's version stamps and `--prune`, all by `IngestJob`'s
   own methods. One writer keeps "the first occurrence of an id wins" exact.

A run killed anywhere (a worker: Ray retries its task or restarts the actor; this
process: run it again) ends as one clean run would: nothing is written before the
write step, every write is an idempotent upsert of whole papers, and a paper is
skipped only when the store holds exactly its current chunks (`is_current`).

The store must be a Chroma server (`CITEQA_CHROMA_URL`) that every node reaches:
embedded Chroma belongs to the one process that opened its directory. Input paths
must be readable at the same path on every node (a shared filesystem), and every
node needs citeqa installed with the `ray` extra.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ingest.job import PAPERS_PER_BATCH, IngestJob, IngestSummary, Pending
from ingest.loaders import Skipped, SourceError, check_readable, detect_format
from ingest.loaders.ranges import LineNumbers
from rag.index.store import Store
from rag.settings import Settings
from rag.types import Chunk, Paper

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'citeqa[ray]'"
SPLIT_BYTES = 8 << 20
"""Bytes of a JSONL file per read task."""
EMBED_BATCH = 64
"""Papers per call of an embedding actor: small enough that a killed actor loses little."""
READ_CPUS = 0.25
"""CPUs a read or diff task asks for: fractional, so they still fit beside embedding
actors on a one-CPU node (else the pipeline waits forever for a free CPU)."""


class RayIngestError(RuntimeError):
    """Ray ingestion cannot start: ray missing, no Chroma server, no cluster."""


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayIngestError(
            f"--engine ray needs Ray Data, which is not installed: {EXTRA_HINT} "
            f"(the 'ray' extra) on this machine and every node ({exc})"
        ) from exc
    return ray


def check_ready(settings: Settings) -> Any:
    """Ray, once the settings allow a Ray run; else RayIngestError saying why not."""
    if not settings.chroma_url:
        raise RayIngestError(
            "--engine ray writes to a Chroma server that every Ray node reaches: set "
            "CITEQA_CHROMA_URL (embedded Chroma belongs to the one process that opened it; "
            "use the default --engine local for it)"
        )
    return import_ray()


# -- rows between the stages ------------------------------------------------------------


def paper_to_dict(paper: Paper) -> dict[str, Any]:
    return asdict(paper)


def paper_from_dict(data: dict[str, Any]) -> Paper:
    fields = dict(data)
    for key in ("authors", "categories", "code_links", "notes"):
        fields[key] = tuple(fields.get(key) or ())
    return Paper(**fields)


def plan_to_json(plan: Pending) -> str:
    return json.dumps(
        {
            "paper": paper_to_dict(plan.paper),
            "hash": plan.paper_hash,
            "chunks": [[c.text, c.start, c.end] for c in plan.chunks],
            "stale": plan.stale_ids,
        },
        ensure_ascii=False,
    )


def plan_from_json(text: str) -> Pending:
    data = json.loads(text)
    paper = paper_from_dict(data["paper"])
    chunks = [Chunk(paper.paper_id, i, t, s, e) for i, (t, s, e) in enumerate(data["chunks"])]
    return Pending(paper, data["hash"], chunks, list(data["stale"]))


# -- the driver -------------------------------------------------------------------------


def actor_resources(cluster: dict[str, float], workers: int | None) -> tuple[int, dict, int]:
    """(embedding actors, their Ray resources, compute threads each) for a cluster.

    With GPUs: one actor per GPU (or `workers`), each holding one GPU. Without: as
    many actors as leave half a CPU for the read and diff tasks, each holding at
    most one CPU and computing on as many threads as the CPUs it holds."""
    gpus = int(cluster.get("GPU", 0))
    if gpus >= 1:
        n = workers or gpus
        return n, {"num_gpus": 1, "num_cpus": 0}, 1
    cpus = float(cluster.get("CPU", 1))
    spare = max(cpus - 0.5, READ_CPUS)
    n = workers or max(1, int(spare))
    per_actor = round(min(1.0, spare / n), 2)
    if per_actor <= 0:
        raise RayIngestError(f"the cluster's {cpus:g} CPUs leave no room for {n} workers")
    return n, {"num_cpus": per_actor}, max(1, round(per_actor))


def run_ray(
    paths: Sequence[str],
    store: Store,
    settings: Settings,
    *,
    address: str | None = None,
    fmt: str | None = None,
    prune: bool = False,
    confirm_prune: bool = False,
    workers: int | None = None,
    papers_per_batch: int = PAPERS_PER_BATCH,
    split_bytes: int = SPLIT_BYTES,
    stall_timeout: float = 600.0,
    progress: bool = False,
) -> IngestSummary:
    """Ingest `paths` through a Ray cluster (`address`, else RAY_ADDRESS, else a
    Ray started here for this run) into `store`; the summary is the local job's."""
    formats = []
    for path in paths:
        check_readable(path)  # fail before touching the store or the cluster
        formats.append(fmt or detect_format(path))
    ray = check_ready(settings)
    started = time.perf_counter()
    # Ray prints worker and raylet notices ("task failed, retrying") to stdout from
    # its own threads; stdout is for the summary (`--json`), so they go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        summary = _run(
            ray,
            paths,
            formats,
            store,
            settings,
            address=address,
            prune=prune,
            confirm_prune=confirm_prune,
            workers=workers,
            papers_per_batch=papers_per_batch,
            split_bytes=split_bytes,
            stall_timeout=stall_timeout,
            progress=progress,
        )
    summary.seconds = time.perf_counter() - started
    return summary


def _run(
    ray: Any,
    paths: Sequence[str],
    formats: list[str],
    store: Store,
    settings: Settings,
    **opts: Any,
) -> IngestSummary:
    from ray.data import ActorPoolStrategy, DataContext

    from ingest import ray_stages

    own = not ray.is_initialized()
    if own:
        try:
            ray.init(
                address=opts["address"],
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=True,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise RayIngestError(
                f"cannot reach the Ray cluster at {opts['address']}: {exc}"
            ) from exc
    try:
        ctx = DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the write step needs input order
        ctx.enable_progress_bars = opts["progress"]
        ctx.execution_no_progress_timeout_s = opts["stall_timeout"]
        # An exception in our code (the store did not answer, a read failed) is retried
        # twice; a dead worker process is always retried by Ray itself.
        ctx.retried_map_errors = True
        ctx.max_map_retries = 2
        # An embedding actor killed while loading its model is replaced, a few times.
        ctx.max_consecutive_actor_init_deaths = 3
        n, resources, threads = actor_resources(ray.cluster_resources(), opts["workers"])
        log.info("ray: %d embedding workers, each %s, %d threads", n, resources, threads)
        source = ray_stages.PaperSource(list(paths), formats, opts["split_bytes"])
        ds = (
            ray.data.read_datasource(source, ray_remote_args={"num_cpus": READ_CPUS})
            .map_batches(
                ray_stages.diff_batch,
                batch_format="pyarrow",
                batch_size=opts["papers_per_batch"],
                fn_kwargs={"settings": settings},
                num_cpus=READ_CPUS,
            )
            .map_batches(
                ray_stages.EmbedActor,
                batch_format="pyarrow",
                batch_size=EMBED_BATCH,
                fn_constructor_kwargs={
                    "settings": settings,
                    "threads": threads,
                    "gpu": "num_gpus" in resources,
                },
                compute=ActorPoolStrategy(min_size=1, max_size=n),
                **resources,
            )
        )
        return _write(
            ds,
            paths,
            store,
            settings,
            opts["prune"],
            opts["papers_per_batch"],
            confirm_prune=opts.get("confirm_prune", False),
        )
    finally:
        if own:
            ray.shutdown()


def _write(
    ds: Any,
    paths: Sequence[str],
    store: Store,
    settings: Settings,
    prune: bool,
    papers_per_batch: int,
    *,
    confirm_prune: bool = False,
) -> IngestSummary:
    import numpy as np

    job = IngestJob(
        store,
        None,
        settings,
        progress=False,
        papers_per_batch=papers_per_batch,
        confirm_prune=confirm_prune,
    )
    summary = IngestSummary()
    numbers = LineNumbers()
    seen: dict[str, str] = {}
    pending: list[Pending] = []
    in_batch = batches = 0

    def flush() -> None:
        nonlocal pending, in_batch, batches
        job.write_pending(pending, summary)
        batches += 1
        log.info(
            "batch %d done: %d papers read, %d chunks written",
            batches,
            summary.papers_read,
            summary.chunks_written,
        )
        pending, in_batch = [], 0

    with job.writing():
        for block in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in block.to_pylist():
                file, part = row["file"], row["part"]
                if row["kind"] == "end":
                    numbers.end_of_part(file, part, row["line"])
                    continue
                path = paths[file]
                line = numbers.line(file, part, row["line"])
                plan = None
                if row["kind"] == "skipped":
                    item: Paper | Skipped = Skipped(path, line, row["data"])
                elif row["status"] == "unchanged":
                    item = paper_from_dict(json.loads(row["data"]))
                else:
                    plan = plan_from_json(row["data"])
                    item = plan.paper
                if job.accept(path, line, item, summary, seen) is None:
                    continue
                job.count(row["status"], summary)
                if plan is not None:
                    vectors = np.frombuffer(row["vectors"], dtype=np.float32)
                    plan.vectors = vectors.reshape(len(plan.chunks), -1).tolist()
                    pending.append(plan)
                in_batch += 1
                if in_batch >= papers_per_batch:
                    flush()
        if in_batch or pending:
            flush()
        if prune:
            job.prune(seen, summary)
    return summary


__all__ = [
    "RayIngestError",
    "SourceError",
    "actor_resources",
    "check_ready",
    "import_ray",
    "run_ray",
]
