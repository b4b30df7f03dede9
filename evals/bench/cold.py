"""Answers on papers not read yet: what a question costs when its papers are new
to the process (a corpus larger than the gate's paper cache, or just started),
with the gate's sentence vectors reused by the answerability step against the
same code without that reuse, in the same run.

    python -m evals.bench.cold [--dataset pubmedqa] [--questions 60] [--out reports]

Two extractive chains over one store, each with its own embedding model and
caches, answer the same dev questions in turn (which goes first alternates), so
each question's papers are unread for both. Reports p50 / p95 of the whole
answer and of the gate and answerability steps, and the ratios; writes
`<out>/bench-cold.json`. The store is the eval's cached one (`<out>/.cache`),
built on first use.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STEPS = ("total", "gate", "answerable")


def run(dataset: str, questions: int, out: Path) -> dict[str, Any]:
    from evals import metrics as M
    from evals.dataset import load_dataset, named
    from evals.run import CiteQA, _store_dir, file_hash
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    d = named(dataset)
    rows = [r for r in load_dataset(d.questions) if r["kind"] != "unanswerable"][:questions]
    ms: dict[str, dict[str, list[float]]] = {}
    with _store_dir(out, file_hash(d.corpus), True) as store_dir:
        settings = Settings(data_dir=Path(store_dir), llm="extractive")
        arms: dict[str, CiteQA] = {}
        for name, reuse in (("reuse", True), ("baseline_no_reuse", False)):
            embeddings = make_embeddings(settings)
            if not hasattr(embeddings, "reuse_sentences"):
                raise SystemExit("cold: needs the local embedding model (no embedding server)")
            embeddings.load()
            embeddings.reuse_sentences = reuse
            arms[name] = CiteQA(settings, embeddings, d.corpus)
            ms[name] = {s: [] for s in STEPS}
        for i, r in enumerate(rows):
            for name in list(arms) if i % 2 == 0 else list(arms)[::-1]:
                t0 = time.perf_counter()
                o = arms[name].answer(r["question"], "extractive")
                ms[name]["total"].append(1000 * (time.perf_counter() - t0))
                for s in STEPS[1:]:
                    ms[name][s].append(1000 * o.timings.get(s, 0.0))
    result: dict[str, Any] = {"dataset": dataset, "questions": len(rows)}
    for name, steps in ms.items():
        result[name] = {
            s: {
                "p50_ms": round(M.percentile(v, 50) or 0.0, 1),
                "p95_ms": round(M.percentile(v, 95) or 0.0, 1),
            }
            for s, v in steps.items()
        }
    result["ratio_p50_reuse_over_baseline"] = {
        s: round(
            result["reuse"][s]["p50_ms"] / max(result["baseline_no_reuse"][s]["p50_ms"], 1e-9), 3
        )
        for s in STEPS
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="pubmedqa")
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    result = run(args.dataset, args.questions, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-cold.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['questions']} {args.dataset} questions, papers not read yet, p50 / p95 ms:")
    for s in STEPS:
        a, b = result["reuse"][s], result["baseline_no_reuse"][s]
        print(
            f"  {s:<11} reuse {a['p50_ms']} / {a['p95_ms']}   "
            f"without {b['p50_ms']} / {b['p95_ms']}   "
            f"ratio {result['ratio_p50_reuse_over_baseline'][s]}"
        )


if __name__ == "__main__":
    main()
