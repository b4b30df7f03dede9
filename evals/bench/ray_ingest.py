"""Ray ingestion benchmark: the same papers ingested, in the same run, by today's
single-process job (`citeqa ingest`), by `--engine ray` with one and with two
embedding workers, and by `--engine ray` whose workers call a real
OpenAI-compatible embedding server on loopback (infinity-emb serving the same
all-MiniLM-L6-v2 weights; skipped with a message when its venv is missing).

Each run is a `citeqa ingest --json` process into a fresh collection of one
`chroma run` server; its own `seconds` are timed (model load included, interpreter
start not). Ray runs go to a one-node Ray cluster started here with every core.
Runs alternate so drift on the machine hits all alike. Reported: medians of
papers/s and texts (chunks)/s, and each against the single-process job.

    python -m evals.bench.ray_ingest [--papers 300] [--repeats 3] [--out reports]

infinity-emb lives in its own venv (its torch and numpy pins clash with ours):
    python3 -m venv /work/infinity-venv
    /work/infinity-venv/bin/pip install 'infinity-emb[server,torch]==0.0.78' \\
        'torch==2.13.0+cpu' 'numpy<2'
(`--infinity-venv` or CITEQA_BENCH_INFINITY_VENV point elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from evals.bench.report import write_report
from evals.dataset import SHARED_CORPORA
from evals.procs import (
    free_port,
    ray_env,
    start_chroma,
    start_ray_node,
    stop,
    stop_ray_node,
    wait_http,
)
from rag.encode.embeddings import local_model_path
from rag.settings import SAMPLE_CORPUS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PUBMED = SHARED_CORPORA / "pubmedqa" / "corpus.jsonl"
DEFAULT_INFINITY = Path(os.environ.get("CITEQA_BENCH_INFINITY_VENV", "/work/infinity-venv"))
HEADER = ["engine", "papers/s", "texts/s", "seconds (median)", "vs single-process"]


def _corpus(papers: int, out: Path) -> Path:
    """The first `papers` PubMed abstracts (the sample corpus when shared/ is absent)."""
    if not PUBMED.exists():
        return SAMPLE_CORPUS
    with PUBMED.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= papers:
                break
            dst.write(line)
    return out


def _start_infinity(venv: Path, model_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    }
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "infinity_emb"),
            "v2",
            "--model-id",
            str(model_dir),
            "--served-model-name",
            "all-MiniLM-L6-v2",
            "--engine",
            "torch",
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],  # fmt: skip
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_http(f"http://127.0.0.1:{port}/models", timeout=300, proc=proc)
    return proc


def _ingest(source: Path, env: dict[str, str], extra: list[str], log: Path) -> dict[str, Any]:
    cmd = [str(BIN / "citeqa"), "ingest", str(source), "--json", *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{done.stderr[-5000:]}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}; see {log}")
    summary: dict[str, Any] = json.loads(done.stdout)
    if summary["chunks_written"] == 0 or summary["skipped"]:
        raise RuntimeError(f"unexpected summary {summary}")
    return summary


def run(
    papers: int, repeats: int, out: Path, infinity_venv: Path = DEFAULT_INFINITY
) -> dict[str, Any]:
    try:
        import ray  # noqa: F401
    except ImportError:
        msg = "ray bench skipped: ray is not installed (pip install -e '.[ray]')"
        print(msg, flush=True)
        return {"benchmark": "ray_ingest", "skipped": msg}
    work = Path(tempfile.mkdtemp(prefix="citeqa-bench-ray-", dir="/tmp"))
    logs = out / "bench-ray-logs"
    logs.mkdir(parents=True, exist_ok=True)
    source = _corpus(papers, work / "papers.jsonl")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    base.pop("OPENAI_API_KEY", None)
    base.pop("OPENAI_BASE_URL", None)
    base["CITEQA_RETRIEVAL__WARM_SENTENCES"] = "0"
    procs: list[tuple[str, subprocess.Popen]] = []
    sides = ["single-process", "ray, 1 worker", "ray, 2 workers"]
    infinity_note = None
    try:
        chroma_port = free_port()
        procs.append(("chroma", start_chroma(work / "chroma", chroma_port)))
        env = ray_env(base, str(ROOT))
        env["CITEQA_CHROMA_URL"] = f"http://127.0.0.1:{chroma_port}"
        head, address = start_ray_node(
            str(BIN / "ray"), str(work), "127.0.0.2", os.cpu_count() or 2, env, logs / "ray.log"
        )
        procs.append(("ray", head))
        ray_args = ["--engine", "ray", "--address", address]
        extra = {
            "single-process": [],
            "ray, 1 worker": [*ray_args, "--workers", "1"],
            "ray, 2 workers": [*ray_args, "--workers", "2"],
        }
        envs = dict.fromkeys(extra, env)
        if (infinity_venv / "bin" / "infinity_emb").exists():
            model_dir = work / "all-MiniLM-L6-v2"
            shutil.copytree(local_model_path(), model_dir)
            port = free_port()
            procs.append(
                ("infinity", _start_infinity(infinity_venv, model_dir, port, logs / "infinity.log"))
            )
            side = "ray, 2 workers, openai provider -> infinity-emb"
            sides.append(side)
            extra[side] = [*ray_args, "--workers", "2"]
            envs[side] = {
                **env,
                "CITEQA_EMBEDDING__PROVIDER": "openai",
                "CITEQA_EMBEDDING__MODEL": "all-MiniLM-L6-v2",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{port}",
                "OPENAI_API_KEY": "unused",
            }
        else:
            infinity_note = (
                f"infinity-emb part skipped: no venv at {infinity_venv} "
                "(see python -m evals.bench.ray_ingest --help)"
            )
            print(infinity_note, flush=True)
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for i in range(repeats):
            for n, side in enumerate(sides if i % 2 == 0 else sides[::-1]):
                prefix = f"bench{i}x{n}"
                summary = _ingest(
                    source,
                    {**envs[side], "CITEQA_COLLECTION_PREFIX": prefix},
                    extra[side],
                    logs / "ingest.log",
                )
                runs[side].append(summary)
                print(f"  {side}: {summary['seconds']:.1f} s", flush=True)
    finally:
        for name, proc in reversed(procs):
            (stop_ray_node if name in ("ray", "infinity") else stop)(proc)
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "ray_ingest",
        "cores": os.cpu_count(),
        "repeats": repeats,
        "corpus": "the sample corpus" if source == SAMPLE_CORPUS else "PubMedQA",
        "papers": runs[sides[0]][0]["papers_read"],
        "texts": runs[sides[0]][0]["chunks_written"],
        "engines": {},
        "infinity": infinity_note or "measured",
    }
    single = statistics.median(r["seconds"] for r in runs[sides[0]])
    rows = []
    for side in sides:
        secs = statistics.median(r["seconds"] for r in runs[side])
        n_papers, n_texts = runs[side][0]["papers_read"], runs[side][0]["chunks_written"]
        result["engines"][side] = {
            "seconds_median": round(secs, 2),
            "papers_per_s": round(n_papers / secs, 2),
            "texts_per_s": round(n_texts / secs, 2),
            "vs_single_process": round(single / secs, 2),
            "runs": [r["seconds"] for r in runs[side]],
        }
        rows.append(
            (
                side,
                f"{n_papers / secs:.1f}",
                f"{n_texts / secs:.1f}",
                f"{secs:.1f}",
                f"{single / secs:.2f}x",
            )
        )
    if infinity_note:
        rows.append((infinity_note, "", "", "", ""))
    write_report(out, "ray", result, HEADER, rows)
    result["rows"] = rows
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--papers", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--infinity-venv", type=Path, default=DEFAULT_INFINITY)
    args = parser.parse_args()
    run(args.papers, args.repeats, args.out, args.infinity_venv)
    print((args.out / "bench-ray.md").read_text())


if __name__ == "__main__":
    main()
