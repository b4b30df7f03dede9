"""`make bench`: every benchmark, each against its baseline in the same run, into
reports/bench.json and reports/bench.md (medians; the machine's core count).

    python -m evals.bench [--quick]
        [--only embed,contention,ingest,query,scale,scale-server,ray]
        [--out reports]

--quick runs smaller sizes (10k and 30k chunks, fewer requests) for a fast look.
`scale-server` puts 1M synthetic chunks (30k with --quick) in a `chroma run`
server, built once into /tmp/citeqa-scale-<chunks> and reused, with reader,
writer and replica each in a process of its own (evals/bench/scale_server.py).
`ray` compares `--engine ray` (one and two workers, and an OpenAI-compatible
embedding server) with the single-process ingest; it is skipped with a message
when Ray is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

PARTS = ("embed", "contention", "ingest", "query", "scale", "scale-server", "ray")


def _ingest(quick: bool, out: Path) -> tuple[dict[str, Any], list[str], list[tuple]]:
    from evals.bench.ingest import SAMPLE, run

    result = run(1 if quick else 5, out, [str(SAMPLE)])
    ours, base = result["ours"], result["baseline_langchain_from_documents"]
    rows = [
        ("ingest, ours", f"{ours['papers_per_s']} papers/s, {ours['chunks_per_s']} chunks/s"),
        (
            "ingest, LangChain HuggingFaceEmbeddings + Chroma.from_documents",
            f"{base['papers_per_s']} papers/s, {base['chunks_per_s']} chunks/s",
        ),
        ("ratio ours / baseline", f"{result['speedup_vs_baseline']}x"),
        (
            "ingest, ours with precision=int8 (opt-in; moves the refusal gate on 2 of 88 "
            "dev questions)",
            f"{result['int8_opt_in']['papers_per_s']} papers/s "
            f"({result['int8_opt_in']['speedup_vs_baseline']}x)",
        ),
        (
            "re-ingest of unchanged input",
            f"{result['reingest_unchanged']['seconds_median']} s "
            f"({100 * result['reingest_unchanged']['fraction_of_first_run']:.1f}% "
            "of the first run)",
        ),
    ]
    return result, ["measure", "median"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(PARTS))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
    }
    sections: list[str] = [
        "# citeqa benchmarks",
        "",
        f"{os.cpu_count()} cores, Python {platform.python_version()}; medians; "
        "each figure beside its baseline from the same run.",
    ]

    def table(title: str, header: list[str], rows: list[tuple]) -> None:
        sections.extend(["", f"## {title}", "", "| " + " | ".join(header) + " |"])
        sections.append("|" + "---|" * len(header))
        sections.extend("| " + " | ".join(str(c) for c in r) + " |" for r in rows)
        print("\n".join(sections[-(len(rows) + 4) :]), flush=True)

    if "embed" in parts:
        from evals.bench import embed

        result, rows = embed.run(1 if args.quick else 3)
        report["embed"] = result
        table("Embedding", embed.HEADER, rows)
    if "contention" in parts:
        from evals.bench import contention

        result, rows = contention.run(1 if args.quick else 3)
        report["contention"] = result
        table("The encoder beside other jobs", contention.HEADER, rows)
    if "ingest" in parts:
        result, header, rows = _ingest(args.quick, args.out)
        report["ingest"] = result
        table("Ingest (sample corpus)", header, rows)
    if "query" in parts:
        from evals.bench import query

        result, rows = query.run(60 if args.quick else 200)
        report["query"] = result
        table(
            "Query latency through uvicorn on loopback",
            ["endpoint, clients", "p50 / p95 / p99", "throughput", "errors"],
            rows,
        )
    if "scale" in parts:
        from evals.bench import scale

        sizes = [10_000, 30_000] if args.quick else [10_000, 100_000, 300_000]
        result, rows = scale.run(sizes, 30 if args.quick else 60)
        report["scale"] = result
        table("Scale (synthetic corpus, precomputed vectors)", scale.HEADER, rows)

    if "scale-server" in parts:
        from evals.bench import scale_server

        n = 30_000 if args.quick else 1_000_000
        # A second round of papers with paper search's dense deadline at 50 ms (the
        # figure the README gives for 1M chunks).
        result = scale_server.run(
            Path(f"/tmp/citeqa-scale-{n}"), n, 60, 1000, 3600, dense_deadline_ms=50
        )
        report["scale_server"] = result
        table(
            f"Scale, one process per role ({n:,} chunks in a `chroma run` server)",
            scale_server.HEADER,
            scale_server.rows(result),
        )

    if "ray" in parts:
        from evals.bench import ray_ingest

        result = ray_ingest.run(100 if args.quick else 300, 1 if args.quick else 3, args.out)
        report["ray"] = result
        if "rows" in result:
            table(
                f"Ingest on Ray ({result['papers']} papers of {result['corpus']}, "
                f"{result['texts']} texts)",
                ray_ingest.HEADER,
                result.pop("rows"),
            )
        else:
            sections.extend(["", "## Ingest on Ray", "", result["skipped"]])

    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "bench.md").write_text("\n".join(sections) + "\n")
    print(f"\nwrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")


if __name__ == "__main__":
    main()
