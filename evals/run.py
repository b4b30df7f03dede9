"""`citeqa eval`: retrieval and answer quality of citeqa against a baseline, in one run.

Two configurations answer every dev question over the sample corpus:

* `citeqa`: the default settings (800/200 chunks, hybrid retrieval, relevance
  gate, citation verification);
* `baseline`: what a LangChain tutorial builds: 1000/200 character chunks in
  `langchain_chroma.Chroma`, dense top-4, every chunk stuffed into the prompt
  as a numbered source, no gate, no verification.

Both use the same embedding model and the same generator (`--llm`), so the
difference is the pipeline. Retrieval is measured for BM25 only, dense only
and hybrid (citeqa) and for the baseline's dense chunks. Results go to
`reports/eval.json`, `reports/eval.md` and `reports/eval.png`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from evals import metrics as M
from evals.dataset import DEV_SET, load_dataset
from rag.settings import SAMPLE_CORPUS as SAMPLE
from rag.types import Paper, Source

ROOT = Path(__file__).resolve().parents[1]

RETRIEVAL_KS = (1, 5, 10)
BASELINE_K = 4


@dataclass
class Outcome:
    """One configuration's answer to one question, reduced to what the metrics need."""

    text: str
    cited: dict[int, str]  # marker n -> paper id
    retrieved: list[str]  # paper ids the generator saw, in rank order
    refused: bool
    timings: dict[str, float]
    degraded: bool = False
    quotes: list[str] = field(default_factory=list)  # what the citations point at


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def corpus(path: Path) -> dict[str, Paper]:
    from ingest.loaders import load

    return {p.paper_id: p for _, p in load(str(path)) if isinstance(p, Paper)}


# -- configurations ------------------------------------------------------------------


class CiteQA:
    name = "citeqa"

    def __init__(self, settings: Any, embeddings: Embeddings, sample: Path) -> None:
        from ingest.job import IngestJob
        from rag.chain import build_chain

        self.settings = settings
        self.chain = build_chain(settings, embeddings=embeddings)
        IngestJob(self.chain.retriever.store, embeddings, settings, progress=False).run(
            [str(sample)]
        )

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "chunking": s.chunking.model_dump(),
            "retrieval": s.retrieval.model_dump(),
            "llm": s.llm,
            "gate": s.retrieval.gate,
            "verification": True,
        }

    def ranked(self, question: str, mode: str, k: int) -> list[str]:
        r = self.chain.retriever.retrieve(question, k=k, mode=mode, mmr=False)  # type: ignore[arg-type]
        return [s.paper_id for s in r.sources]

    def answer(self, question: str, llm: str) -> Outcome:
        from rag.chain import Question

        a = self.chain.invoke(Question(question, llm=llm))
        by_n = {c.n: c.paper_id for c in a.citations}
        return Outcome(
            text=a.answer,
            cited=by_n,
            retrieved=[s["paper_id"] for s in a.sources],
            refused=a.refused,
            timings=dict(a.timings),
            degraded=a.degraded,
            quotes=[c.quote for c in a.citations],
        )


class Baseline:
    name = "baseline"

    def __init__(
        self, settings: Any, embeddings: Embeddings, sample: Path, papers: dict[str, Paper]
    ) -> None:
        import chromadb
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from rag.generate import make_generator
        from rag.support import SentenceEncoder

        self.settings = settings
        self.embeddings = embeddings
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        docs = splitter.split_documents(
            [
                Document(f"{p.title}\n{p.abstract}", metadata={"paper_id": pid, "title": p.title})
                for pid, p in papers.items()
            ]
        )
        self.store = Chroma.from_documents(
            docs,
            embeddings,
            client=chromadb.EphemeralClient(),
            collection_name="eval-baseline",
            collection_metadata={"hnsw:space": "cosine"},
        )
        self.retriever = self.store.as_retriever(search_kwargs={"k": BASELINE_K})
        self.encoder = SentenceEncoder(embeddings)
        self._generators: dict[str, Any] = {}
        self._make = lambda name: make_generator(name, settings, self.encoder)

    def describe(self) -> dict[str, Any]:
        return {
            "chunking": {"size": 1000, "overlap": 200},
            "retrieval": {"mode": "dense", "k": BASELINE_K, "store": "langchain_chroma"},
            "llm": self.settings.llm,
            "gate": False,
            "verification": False,
        }

    def _docs(self, question: str, k: int) -> list[Any]:
        return self.store.similarity_search(question, k=k)

    def ranked(self, question: str, mode: str, k: int) -> list[str]:
        # The tutorial retrieves chunks; its paper ranking is their papers in order.
        return list(dict.fromkeys(d.metadata["paper_id"] for d in self._docs(question, k * 3)))[:k]

    def answer(self, question: str, llm: str) -> Outcome:
        t0 = time.perf_counter()
        docs = self.retriever.invoke(question)
        t_retrieve = time.perf_counter() - t0
        sources = [
            Source(
                n=i,
                paper_id=d.metadata["paper_id"],
                title=d.metadata["title"],
                abstract=d.page_content,
                url=None,
                score=0.0,
                dense=float("nan"),
            )
            for i, d in enumerate(docs, 1)
        ]
        if llm not in self._generators:
            self._generators[llm] = self._make(llm)
        t0 = time.perf_counter()
        try:
            text = "".join(self._generators[llm].stream(question, sources))
            degraded = False
        except Exception as exc:  # the tutorial has no fallback: the answer is the error
            text, degraded = f"error: {type(exc).__name__}", True
        t_generate = time.perf_counter() - t0
        return Outcome(
            text=text,
            cited={s.n: s.paper_id for s in sources},
            retrieved=[s.paper_id for s in sources],
            refused=False,
            timings={
                "retrieve": t_retrieve,
                "generate": t_generate,
                "total": t_retrieve + t_generate,
            },
            degraded=degraded,
        )


# -- scoring ---------------------------------------------------------------------


def supported_share(outcome: Outcome, papers: dict[str, Paper], encoder: Any) -> float | None:
    """Share of (sentence, marker) pairs whose cited paper's abstract supports the
    sentence (the verifier's own threshold, applied to every configuration)."""
    from rag.support import best_support
    from rag.text import sentence_spans
    from rag.verify import SUPPORTED, strip_markers

    checks = []
    for line in outcome.text.split("\n"):
        for a, b in sentence_spans(line):
            sentence = line[a:b]
            ns = M.markers(sentence)
            if not ns:
                continue
            claim = strip_markers(sentence)
            for n in dict.fromkeys(ns):
                pid = outcome.cited.get(n)
                paper = papers.get(pid or "")
                if paper is None:
                    checks.append(False)
                    continue
                source = Source(1, pid or "", paper.title, paper.abstract, None, 0.0, 0.0)
                checks.append(best_support(claim, source, encoder).score >= SUPPORTED)
    return sum(checks) / len(checks) if checks else None


def score_answers(
    rows: list[dict],
    outcomes: list[Outcome],
    papers: dict[str, Paper],
    encoder: Any,
    judge: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    per_q = []
    for row, o in zip(rows, outcomes, strict=True):
        gold = set(row["gold_paper_ids"])
        cited_papers = [o.cited[n] for n in M.markers(o.text) if n in o.cited]
        answerable = row["kind"] != "unanswerable"
        per_q.append(
            {
                "id": row["id"],
                "kind": row["kind"],
                "refused": o.refused,
                "degraded": o.degraded,
                "validity": M.citation_validity(o.text, o.cited, o.retrieved),
                "precision": M.citation_precision(cited_papers, gold)
                if answerable and not o.refused
                else None,
                "recall": M.citation_recall(cited_papers, gold)
                if row["kind"] == "multi" and not o.refused
                else None,
                "support": supported_share(o, papers, encoder),
                "must_contain": M.contains(o.text, row.get("must_contain")),
                "words": M.words(o.text),
                "timings": {k: round(v, 5) for k, v in o.timings.items()},
                "answer": o.text,
            }
        )
        if judge is not None and not o.refused:
            per_q[-1]["judge"] = judge.score(row["question"], o.text, o.quotes)
    refusal = M.refusal_scores(
        [q["refused"] for q in per_q], [r["kind"] == "unanswerable" for r in rows]
    )
    answered = [q for q in per_q if not q["refused"]]
    summary = {
        "citation_validity": M.mean(q["validity"] for q in per_q),
        "citation_precision": M.mean(q["precision"] for q in per_q),
        "citation_recall_multi": M.mean(q["recall"] for q in per_q),
        "support_rate": M.mean(q["support"] for q in per_q),
        **refusal,
        "answered_uncovered": sum(
            1
            for q, r in zip(per_q, rows, strict=True)
            if not q["refused"] and r["kind"] == "unanswerable"
        ),
        "must_contain_hit_rate": M.mean(q["must_contain"] for q in per_q),
        "answer_words_median": M.percentile([q["words"] for q in answered], 50),
        "degraded": sum(q["degraded"] for q in per_q),
    }
    if judge is not None:
        for key in ("faithfulness", "answer_relevance"):
            summary[f"judge_{key}"] = M.mean(q.get("judge", {}).get(key) for q in per_q)
    return summary, per_q


def latency(outcomes: list[Outcome]) -> dict[str, dict[str, float | None]]:
    stages = ("embed", "retrieve", "generate", "verify", "total")
    out = {}
    for stage in stages:
        values = [o.timings[stage] * 1000 for o in outcomes if stage in o.timings]
        if values:
            out[stage] = {
                "p50_ms": M.percentile(values, 50),
                "p95_ms": M.percentile(values, 95),
            }
    return out


def score_retrieval(rows: list[dict], ranked: list[list[str]]) -> dict[str, float | None]:
    gold_rows = [(r, rk) for r, rk in zip(rows, ranked, strict=True) if r["gold_paper_ids"]]
    out: dict[str, float | None] = {}
    for k in RETRIEVAL_KS:
        out[f"recall@{k}"] = M.mean(
            M.recall_at_k(rk, r["gold_paper_ids"], k) for r, rk in gold_rows
        )
    out["mrr@10"] = M.mean(M.mrr_at_k(rk, r["gold_paper_ids"], 10) for r, rk in gold_rows)
    out["ndcg@10"] = M.mean(M.ndcg_at_k(rk, r["gold_paper_ids"], 10) for r, rk in gold_rows)
    return out


# -- the run ---------------------------------------------------------------------------


def evaluate(
    dataset: Path,
    llm: str,
    out: Path,
    sample: Path = SAMPLE,
    judge_url: str | None = None,
    judge_model: str | None = None,
) -> dict[str, Any]:
    """Both configurations on `dataset`; writes the reports to `out`. With
    `judge_url`, an OpenAI-compatible judge also scores faithfulness and relevance."""
    from rag.embeddings import make_embeddings
    from rag.settings import Settings
    from rag.support import SentenceEncoder

    rows = load_dataset(dataset)
    papers = corpus(sample)
    with tempfile.TemporaryDirectory(prefix="citeqa-eval-") as tmp:
        settings = Settings(data_dir=Path(tmp), llm=llm)  # type: ignore[arg-type]
        embeddings = make_embeddings(settings)
        load = getattr(embeddings, "load", None)
        if callable(load):
            load()
        encoder = SentenceEncoder(embeddings)
        judge = None
        if judge_url:
            from evals.judge import Judge  # only here: off and not imported by default

            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
            judge = Judge(judge_url, judge_model or settings.llm_model, key)
        configs = [
            CiteQA(settings, embeddings, sample),
            Baseline(settings, embeddings, sample, papers),
        ]
        report: dict[str, Any] = {
            "dataset": {
                "path": str(dataset),
                "sha256": file_hash(dataset),
                "questions": len(rows),
                "kinds": {
                    k: sum(r["kind"] == k for r in rows) for k in sorted({r["kind"] for r in rows})
                },
            },
            "corpus": {"path": str(sample), "sha256": file_hash(sample), "papers": len(papers)},
            "llm": llm,
            "judge": {"url": judge_url, "model": judge_model} if judge_url else None,
            "machine": {"python": platform.python_version(), "cpus": _cpus()},
            "configs": {},
        }
        for config in configs:
            retrieval: dict[str, Any] = {}
            modes = ("bm25", "dense", "hybrid") if config.name == "citeqa" else ("dense",)
            for mode in modes:
                ranked = [config.ranked(r["question"], mode, 10) for r in rows]
                retrieval[mode] = score_retrieval(rows, ranked)
            config.answer(rows[0]["question"], llm)  # warm caches: latency is steady state
            outcomes = [config.answer(r["question"], llm) for r in rows]
            answers, per_q = score_answers(rows, outcomes, papers, encoder, judge)
            description = config.describe()
            report["configs"][config.name] = {
                "settings": description,
                "settings_hash": hashlib.sha256(
                    json.dumps(description, sort_keys=True).encode()
                ).hexdigest()[:12],
                "retrieval": retrieval,
                "answers": answers,
                "latency": latency(outcomes),
                "questions": per_q,
            }
    write_reports(report, out)
    return report


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


ANSWER_ROWS = [
    ("citation_validity", "citation validity"),
    ("citation_precision", "citation precision"),
    ("citation_recall_multi", "citation recall (multi-paper)"),
    ("support_rate", "support rate"),
    ("refusal_precision", "refusal precision"),
    ("refusal_recall", "refusal recall"),
    ("wrong_refusals", "wrong refusals (answerable refused)"),
    ("answered_uncovered", "uncovered questions answered"),
    ("must_contain_hit_rate", "must-contain hit rate"),
    ("answer_words_median", "answer words (median)"),
    ("degraded", "degraded answers"),
    ("judge_faithfulness", "judge: faithfulness"),
    ("judge_answer_relevance", "judge: answer relevance"),
]


def markdown(report: dict[str, Any]) -> str:
    names = list(report["configs"])
    d = report["dataset"]
    lines = [
        "# citeqa eval",
        "",
        f"Dataset `{d['path']}` (sha256 {d['sha256']}): {d['questions']} questions "
        + ", ".join(f"{n} {k}" for k, n in d["kinds"].items())
        + f". Generator: `{report['llm']}`. Machine: {report['machine']['cpus']} cores.",
        "",
        "## Retrieval (paper level, questions with gold papers)",
        "",
    ]
    cols = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]
    lines += ["| configuration | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in names:
        for mode, vals in report["configs"][name]["retrieval"].items():
            lines.append(f"| {name} {mode} | " + " | ".join(_fmt(vals[c]) for c in cols) + " |")
    lines += ["", "## Answers", "", "| metric | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for key, label in ANSWER_ROWS:
        if all(key not in report["configs"][n]["answers"] for n in names):
            continue
        lines.append(
            f"| {label} | "
            + " | ".join(_fmt(report["configs"][n]["answers"].get(key)) for n in names)
            + " |"
        )
    lines += [
        "",
        "## Latency (ms)",
        "",
        "| stage | " + " | ".join(f"{n} p50 | {n} p95" for n in names) + " |",
    ]
    lines.append("|---" * (2 * len(names) + 1) + "|")
    for stage in ("embed", "retrieve", "generate", "verify", "total"):
        cells = []
        for n in names:
            lat = report["configs"][n]["latency"].get(stage)
            cells += [_fmt(lat["p50_ms"]) if lat else "n/a", _fmt(lat["p95_ms"]) if lat else "n/a"]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines += ["", "## Settings", ""]
    for n in names:
        c = report["configs"][n]
        lines.append(
            f"- `{n}` ({c['settings_hash']}): `{json.dumps(c['settings'], sort_keys=True)}`"
        )
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["configs"])
    metrics = [
        (
            "recall@5",
            lambda c: c["retrieval"].get("hybrid", c["retrieval"].get("dense"))["recall@5"],
        ),
        ("MRR@10", lambda c: c["retrieval"].get("hybrid", c["retrieval"].get("dense"))["mrr@10"]),
        ("citation\nvalidity", lambda c: c["answers"]["citation_validity"]),
        ("citation\nprecision", lambda c: c["answers"]["citation_precision"]),
        ("support\nrate", lambda c: c["answers"]["support_rate"]),
        ("refusal\nrecall", lambda c: c["answers"]["refusal_recall"]),
        ("must-contain\nhit rate", lambda c: c["answers"]["must_contain_hit_rate"]),
    ]
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=110)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [fn(report["configs"][name]) or 0.0 for _, fn in metrics]
        xs = [j + i * width for j in range(len(metrics))]
        bars = ax.bar(xs, vals, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(metrics))])
    ax.set_xticklabels([m for m, _ in metrics], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_title(
        f"citeqa vs baseline on {report['dataset']['questions']} dev questions ({report['llm']})"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_reports(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out / "eval.md").write_text(markdown(report))
    chart(report, out / "eval.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEV_SET)
    parser.add_argument("--llm", default="extractive", choices=["extractive", "openai", "llamacpp"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--judge", help="Base URL of an OpenAI-compatible judge model.")
    parser.add_argument("--judge-model", help="The judge's model name.")
    args = parser.parse_args(argv)
    report = evaluate(
        args.dataset, args.llm, args.out, judge_url=args.judge, judge_model=args.judge_model
    )
    print(markdown(report))


if __name__ == "__main__":
    main()
