"""`citeqa`: the command line (ingest, search, ask, serve, mcp)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from rag.settings import Settings

app = typer.Typer(
    help="Question answering over research-paper abstracts, with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"citeqa: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"bad configuration: {problems}")


def _open_store(settings: Settings):  # type: ignore[no-untyped-def]
    from rag.index.store import StoreConfigError, StoreUnavailable, open_store

    try:
        return open_store(settings)
    except StoreConfigError as exc:
        _fail(f"bad configuration: {exc}")
    except StoreUnavailable as exc:
        _fail(str(exc), 3)


def _check_generator(name: str | None, option: str) -> None:
    from rag.generate import generator_names

    if name is not None and name not in generator_names():
        _fail(f"unknown {option} '{name}' ({', '.join(generator_names())})")


@app.command()
def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(help="Files to ingest (listing .txt, .jsonl, .csv, .bib, .ris, CSL .json)."),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="listing, jsonl, csv, bibtex, ris or csljson; default: from the extension "
            "(a .json file by its first character: '[' CSL-JSON, '{' JSON Lines).",
        ),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Remove stored papers that are not in the input.")
    ] = False,
    confirm_prune: Annotated[
        bool,
        typer.Option(
            "--confirm-prune",
            help="With --prune: prune even when the input yields no papers, or far fewer "
            "than the prune deletes (refused otherwise; CITEQA_PRUNE_GUARD_RATIO).",
        ),
    ] = False,
    if_empty: Annotated[
        bool,
        typer.Option(
            "--if-empty",
            help="Do nothing if the store already holds papers (unless an earlier "
            "--if-empty run was stopped before it finished).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="Papers per write batch.")] = 256,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log each batch to stderr.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process) or ray (a Ray cluster; needs the ray extra and "
            "CITEQA_CHROMA_URL)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: the cluster (host:port, or 'auto'); default "
            "RAY_ADDRESS, else a Ray started for this run on this machine."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --engine ray: most embedding workers (default: one per GPU, else "
            "as many as the cluster's CPUs allow).",
        ),
    ] = None,
    stall_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="With --engine ray: fail when the pipeline makes no progress for this "
            "many seconds (a cluster without room for the job).",
        ),
    ] = 600.0,
    split_bytes: Annotated[
        int,
        typer.Option(min=1, help="With --engine ray: bytes of a JSONL file per read task (8 MiB)."),
    ] = 8 << 20,
) -> None:
    """Chunk, embed and upsert abstracts into the store. Unchanged papers cost nothing."""
    from ingest.job import IngestJob, PruneRefused
    from ingest.loaders import SourceError, check_readable, detect_format
    from rag.encode.embeddings import make_embeddings
    from rag.index.store import StoreUnavailable

    if engine not in ("local", "ray"):
        _fail(f"unknown --engine '{engine}' (local, ray)")

    try:
        for path in paths:
            check_readable(path)
            if fmt is None:
                detect_format(path)
    except SourceError as exc:
        _fail(str(exc))
    settings = _settings()
    if engine == "ray":
        from ingest.ray_job import RayIngestError, check_ready

        try:
            check_ready(settings)  # before the store is opened or anything written
        except RayIngestError as exc:
            _fail(str(exc))
    store = _open_store(settings)
    # A seed (`--if-empty`, as `make serve` runs) is marked while it runs, so one
    # killed half-way is taken up by the next run, not taken for a store filled on purpose.
    seeding = settings.data_dir / ".seeding"
    if if_empty:
        if store.count() > 0 and not seeding.exists():
            typer.echo(f"store already holds {store.paper_count()} papers; nothing to do", err=True)
            return
        seeding.parent.mkdir(parents=True, exist_ok=True)
        seeding.touch()
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if engine == "ray":
            summary = _ingest_ray(
                paths,
                store,
                settings,
                address=address,
                fmt=fmt,
                prune=prune,
                confirm_prune=confirm_prune,
                workers=workers,
                papers_per_batch=batch,
                stall_timeout=stall_timeout,
                split_bytes=split_bytes,
            )
        else:
            job = IngestJob(
                store,
                make_embeddings(settings),
                settings,
                papers_per_batch=batch,
                confirm_prune=confirm_prune,
            )
            summary = job.run(paths, fmt=fmt, prune=prune)
    except (SourceError, PruneRefused) as exc:
        _fail(str(exc))
    except StoreUnavailable as exc:
        _fail(str(exc), 3)
    if if_empty:
        seeding.unlink(missing_ok=True)  # only once the seed is whole
    if as_json:
        typer.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        typer.echo(summary.to_text())


def _ingest_ray(paths, store, settings, **options):  # type: ignore[no-untyped-def]
    from ingest.ray_job import RayIngestError, run_ray

    try:
        return run_ray(paths, store, settings, progress=sys.stderr.isatty(), **options)
    except RayIngestError as exc:
        _fail(str(exc))


def _chain(settings: Settings):  # type: ignore[no-untyped-def]
    from rag.chain import build_chain

    return build_chain(settings, store=_open_store(settings))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("--k", min=1, max=50, help="How many papers.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Papers for QUERY (hybrid dense + BM25), with score and best passage."""
    from rag.retrieval.retrieve import paper_search

    if not query.strip():
        _fail("the query is empty")
    if mode not in ("hybrid", "dense", "bm25"):
        _fail(f"unknown mode '{mode}' (hybrid, dense, bm25)")
    settings = _settings()
    found = paper_search(query, _chain(settings).retriever, k, mode=mode)  # type: ignore[arg-type]
    hits = found.hits
    if as_json:
        keys = ("paper_id", "title", "score", "snippet")
        out: dict[str, object] = {
            "results": [{key: h.to_json()[key] for key in keys} for h in hits]
        }
        if found.partial:
            out["partial"] = found.partial
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    if found.partial:
        typer.echo(f"(partial: {found.partial})", err=True)
    if not hits:
        typer.echo("no results (is the store empty? run `citeqa ingest`)")
    for i, h in enumerate(hits, 1):
        typer.echo(f"{i}. [{h.score:.3f}] {h.title}  ({h.paper_id})")
        typer.echo(f"   {h.snippet[:240]}{'…' if len(h.snippet) > 240 else ''}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question in natural language.")],
    k: Annotated[int | None, typer.Option("--k", min=1, max=50, help="Papers to consider.")] = None,
    llm: Annotated[
        str | None, typer.Option(help="A generator: extractive, openai, ... (default CITEQA_LLM).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    cite_format: Annotated[
        str | None,
        typer.Option(
            "--cite-format",
            help="bibtex, ris or csljson: print the cited papers in that format on stdout "
            "(the answer goes to stderr), to import into a reference manager.",
        ),
    ] = None,
) -> None:
    """Answer QUESTION with a cited summary of the papers in the store."""
    from rag.chain import Question
    from rag.cite import FORMATS as CITE_FORMATS

    if not question.strip():
        _fail("the question is empty")
    _check_generator(llm, "--llm")
    if cite_format is not None and cite_format not in CITE_FORMATS:
        _fail(f"unknown --cite-format '{cite_format}' ({', '.join(CITE_FORMATS)})")
    settings = _settings()
    chain = _chain(settings)
    t0 = time.perf_counter()
    getattr(chain.retriever.embeddings, "load", lambda: None)()  # once per process
    loaded = time.perf_counter() - t0
    answer = chain.invoke(Question(question, k=k, llm=llm))
    answer.timings["model_load"] = loaded  # not part of "total": that is the question's
    if cite_format is not None:
        _print_cited(chain.retriever.store, answer, cite_format, as_json)
        return
    if as_json:
        typer.echo(json.dumps(answer.to_json(), ensure_ascii=False))
        return
    typer.echo(answer.answer)
    if answer.citations:
        typer.echo("\nReferences")
        for c in answer.citations:
            typer.echo(f"[{c.n}] {c.title}" + (f" <{c.url}>" if c.url else f" ({c.paper_id})"))
            typer.echo(f"    “{c.quote}”")
    if answer.degraded:
        typer.echo(f"\n(degraded: {answer.degraded_reason})", err=True)


def _print_cited(store, answer, fmt: str, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """The answer to stderr, its cited papers (in citation order, once each) to stdout."""
    from rag.cite import export, record_of

    ids = list(dict.fromkeys(c.paper_id for c in answer.citations))
    metas = [m for m in (store.paper(pid) for pid in ids) if m is not None]
    shown = json.dumps(answer.to_json(), ensure_ascii=False) if as_json else answer.answer
    typer.echo(shown, err=True)
    if not metas:
        typer.echo("(no papers cited: nothing to export)", err=True)
        return
    typer.echo(export([record_of(m) for m in metas], fmt), nl=False)


@app.command("verify")
def verify_claim(
    claim: Annotated[str, typer.Argument(help="A claim to check against the corpus.")],
    k: Annotated[int | None, typer.Option("--k", min=1, max=50, help="Papers to judge.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the check as JSON.")] = False,
) -> None:
    """Which papers in the store support CLAIM and which contradict it, with the
    sentences that say so."""
    from rag.claims import check_claim

    if not claim.strip():
        _fail("the claim is empty")
    settings = _settings()
    chain = _chain(settings)
    check = check_claim(claim.strip(), chain.retriever, chain.encoder, k=k)
    if as_json:
        typer.echo(json.dumps(check.to_json(), ensure_ascii=False))
        return
    typer.echo(check.verdict)
    for i, p in enumerate(check.papers, 1):
        where = f" <{p.url}>" if p.url else f" ({p.paper_id})"
        typer.echo(f"\n[{i}] {p.label}: {p.title}{where}")
        for c in p.citations:
            typer.echo(f"    “{c.quote}”")


@app.command("eval")
def evaluate(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="sample (default: the sample corpus, evals/data/dev.jsonl) or pubmedqa "
            "(../shared/corpus/pubmedqa beside the repo); a questions file is still taken "
            "as questions over the sample corpus."
        ),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="Corpus file to ingest (default: the dataset's).")
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            help="Questions (JSONL: gold_paper_ids + kind, or gold_paper + conclusion); "
            "default: the dataset's."
        ),
    ] = None,
    foreign: Annotated[
        Path | None,
        typer.Option(
            help="Questions this corpus does not cover, which should be refused "
            "(default: the other known dataset's)."
        ),
    ] = None,
    no_foreign: Annotated[
        bool, typer.Option("--no-foreign", help="Ask no foreign questions.")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="Report name: eval-<name>.* (default: the dataset's).")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="A seeded sample of N questions (and foreign questions)."),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(help="Keep the ingested stores in <out>/.cache, keyed by the corpus hash."),
    ] = True,
    llm: Annotated[
        str, typer.Option(help="Generator for both configurations: extractive, openai, ...")
    ] = "extractive",
    out: Annotated[Path, typer.Option(help="Where the eval .json, .md and .png go.")] = Path(
        "reports"
    ),
    judge: Annotated[
        str | None,
        typer.Option(help="Base URL of an OpenAI-compatible judge (faithfulness, relevance)."),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option(help="The judge's model name (default CITEQA_LLM_MODEL).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="scifact: the data dir of its store, ingested once and reused "
            "(default <out>/.cache/corpus-<hash of the corpus>)."
        ),
    ] = None,
    fit: Annotated[
        bool, typer.Option("--fit", help="scifact: also refit rag/claims.json on every claim.")
    ] = False,
) -> None:
    """Measure retrieval and answers of citeqa and a LangChain-tutorial baseline
    (for scifact: claim verification, `evals/claims.py`)."""
    if dataset == "scifact":
        from evals import claims as claim_eval

        corpus_path = corpus or claim_eval.SCIFACT / "corpus.jsonl"
        try:
            claim_eval.run(
                data_dir or claim_eval.default_data_dir(out, corpus_path),
                questions or claim_eval.SCIFACT / "claims_train.jsonl",
                corpus_path,
                out,
                fit=fit,
            )
        except (ValueError, OSError) as exc:
            _fail(str(exc))
        return
    from evals.dataset import resolve
    from evals.run import evaluate as run_eval
    from evals.run import markdown

    _check_generator(llm, "--llm")
    try:
        spec = resolve(dataset, corpus, questions, foreign, no_foreign, name)
        report = run_eval(
            spec, llm, out, limit=limit, cache=cache, judge_url=judge, judge_model=judge_model
        )
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(markdown(report))
    stem = report["stem"]
    typer.echo(f"wrote {out}/{stem}.json, {stem}.md, {stem}.png", err=True)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default CITEQA_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CITEQA_PORT or 8000).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP API under uvicorn."""
    import uvicorn

    from api.app import create_app
    from api.server import uvicorn_options

    settings = _settings()
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level,
        **uvicorn_options(settings),  # header size and time limits, proxy headers
    )


@app.command("mcp")
def mcp_command(
    writes: Annotated[
        bool,
        typer.Option(
            "--writes",
            help="Offer the write tools (ingest_papers, delete_paper); needs "
            "CITEQA_ADMIN_KEY set.",
        ),
    ] = False,
) -> None:
    """Serve the MCP tools over stdio, for a local MCP client (Claude Desktop, an IDE)."""
    from api.mcp_server import Backend, run_stdio
    from rag.encode.embeddings import make_embeddings

    settings = _settings()
    if writes and not settings.admin_key:
        _fail("--writes needs CITEQA_ADMIN_KEY: writes are for the admin only")
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    store = _open_store(settings)
    embeddings = make_embeddings(settings)
    getattr(embeddings, "load", lambda: None)()
    from rag.chain import build_chain

    chain = build_chain(settings, store=store, embeddings=embeddings)
    chain.retriever.lexical.get()  # BM25 ready before the first call
    run_stdio(Backend(settings, store, embeddings, chain), writes=writes)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
