"""`citeqa eval`: retrieval and answer quality of citeqa against a baseline, in one run.

Two configurations answer every question of a dev set (a corpus and questions
over it, `evals/dataset.py`: the sample by default, or `pubmedqa`):

* `citeqa`: the default settings (800/0 chunks, the title embedded once, hybrid
  retrieval, relevance gate, citation verification);
* `baseline`: what a LangChain tutorial builds: 1000/200 character chunks in
  `langchain_chroma.Chroma`, dense top-4, every chunk stuffed into the prompt
  as a numbered source, no gate, no verification.

Both use the same embedding model and the same generator (`--llm`), so the
difference is the pipeline. Retrieval is measured for BM25 only, dense only
and hybrid (citeqa) and for the baseline's dense chunks. Both also answer the
foreign questions (the other field's dev set), which the corpus does not cover
and should refuse. Results go to `reports/eval.{json,md,png}` for the sample
and `reports/eval-<name>.{json,md,png}` for another dataset (`-limit<N>` added
for a subset run). Both configurations' stores are kept under
`reports/.cache/corpus-<sha256 of the corpus file>/`, so a second run over the
same corpus ingests nothing and a changed corpus gets a new store.
"""

from __future__ import annotations

import argparse
import contextlib
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
from evals.dataset import (
    DatasetError,
    EvalSpec,
    Roles,
    corpus_roles,
    load_dataset,
    resolve,
    subset,
)
from rag.types import Paper, Source

ROOT = Path(__file__).resolve().parents[1]

RETRIEVAL_KS = (1, 5, 10)
BASELINE_SENTENCES = 4  # what the tutorial quotes offline
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
    nearest: list[str] = field(default_factory=list)  # papers a near refusal names
    reader: dict[str, Any] = field(default_factory=dict)  # Answer.reader (docs/reader.md)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def corpus(path: Path) -> dict[str, Paper]:
    from ingest.loaders import load

    return {p.paper_id: p for _, p in load(str(path)) if isinstance(p, Paper)}


# -- configurations ------------------------------------------------------------------


class CiteQA:
    name = "citeqa"

    def __init__(self, settings: Any, embeddings: Embeddings, corpus_path: Path) -> None:
        from ingest.job import IngestJob
        from rag.chain import build_chain

        self.settings = settings
        self.chain = build_chain(settings, embeddings=embeddings)
        # In a cached store, unchanged papers cost nothing; prune keeps it equal to the file.
        IngestJob(self.chain.retriever.store, embeddings, settings, progress=False).run(
            [str(corpus_path)], prune=True
        )

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "chunking": s.chunking.model_dump(),
            "retrieval": s.retrieval.model_dump(),
            "llm": s.llm,
            "gate": s.retrieval.gate,
            "verification": True,
            # Only when on, so the default path's settings hash stays what it was.
            **({"reader": s.reader.model_dump(mode="json")} if s.reader.enabled else {}),
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
            nearest=[p["paper_id"] for p in a.nearest],
            reader=dict(a.reader),
        )


class Baseline:
    name = "baseline"

    def __init__(
        self,
        settings: Any,
        embeddings: Embeddings,
        papers: dict[str, Paper],
        persist: Path | None = None,
    ) -> None:
        """`persist`: a directory for the tutorial's Chroma, reused when it holds a
        finished build of the same documents and model (else rebuilt); None: in memory."""
        import chromadb
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from rag.check.support import SentenceEncoder
        from rag.generate import make_generator

        self.settings = settings
        self.embeddings = embeddings
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        docs = splitter.split_documents(
            [
                Document(f"{p.title}\n{p.abstract}", metadata={"paper_id": pid, "title": p.title})
                for pid, p in papers.items()
            ]
        )
        key = hashlib.sha256(
            json.dumps(
                [settings.embedding.provider, settings.embedding.model]
                + [[d.metadata["paper_id"], d.page_content] for d in docs]
            ).encode()
        ).hexdigest()[:16]
        name = "eval-baseline"
        marker = persist / "built.json" if persist is not None else None
        if persist is None:
            client = chromadb.EphemeralClient()
        else:
            persist.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(
                path=str(persist), settings=chromadb.Settings(anonymized_telemetry=False)
            )
        kwargs: dict[str, Any] = {
            "client": client,
            "collection_name": name,
            "collection_metadata": {"hnsw:space": "cosine"},
        }
        reuse = False
        if marker is not None and marker.is_file():
            if json.loads(marker.read_text()) == {"key": key, "chunks": len(docs)}:
                self.store = Chroma(embedding_function=embeddings, **kwargs)
                reuse = self.store._collection.count() == len(docs)
        if not reuse:
            if marker is not None:
                marker.unlink(missing_ok=True)
            if name in [getattr(c, "name", c) for c in client.list_collections()]:
                client.delete_collection(name)
            self.store = Chroma.from_documents(
                docs,
                embeddings,
                ids=[f"{i}" for i in range(len(docs))],
                **kwargs,
            )
            if marker is not None:  # written last: a killed build is rebuilt next time
                marker.write_text(json.dumps({"key": key, "chunks": len(docs)}))
        self.retriever = self.store.as_retriever(search_kwargs={"k": BASELINE_K})
        self.encoder = SentenceEncoder(embeddings)
        self._generators: dict[str, Any] = {}
        self._make = lambda name: make_generator(name, settings, self.encoder)

    def describe(self) -> dict[str, Any]:
        return {
            "chunking": {"size": 1000, "overlap": 200},
            "retrieval": {"mode": "dense", "k": BASELINE_K, "store": "langchain_chroma"},
            "llm": self.settings.llm,
            "offline_answer": f"the {BASELINE_SENTENCES} retrieved sentences closest to it",
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
            if llm == "extractive":  # no model to read the chunks: the closest sentences
                text = self._closest_sentences(question, sources)
            else:
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

    def _closest_sentences(self, question: str, sources: list[Source]) -> str:
        """The tutorial offline: the retrieved chunks' `BASELINE_SENTENCES` sentences
        closest to the question, whichever papers they come from (citeqa's
        extractive generator assumes the chain already chose the papers that answer)."""
        from rag.answer.answerable import read_sentences

        read = read_sentences(question, sources, self.encoder)
        order = sorted(range(len(read.sentences)), key=lambda i: -read.topical[i])
        picked = [read.sentences[i] for i in order[:BASELINE_SENTENCES]]
        return str(self._generators["extractive"].compose(picked))


# -- scoring ---------------------------------------------------------------------


def supported_share(outcome: Outcome, papers: dict[str, Paper], encoder: Any) -> float | None:
    """Share of (sentence, marker) pairs whose cited paper's abstract supports the
    sentence (the verifier's own threshold, applied to every configuration)."""
    from rag.check.support import best_support
    from rag.check.verify import SUPPORTED, strip_markers
    from rag.text import sentence_spans

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


def answer_sentences(text: str) -> list[str]:
    """The answer's sentences, line by line (a paragraph break ends a sentence)."""
    from rag.text import sentence_spans

    return [line[a:b] for line in text.split("\n") for a, b in sentence_spans(line)]


def quoted(text: str, cited: dict[int, str], roles: Roles) -> list[tuple[str, int] | None]:
    """The labelled abstract sentence each answer sentence quotes, in answer order, as
    (paper id, index); None where the cited paper has no labels or the sentence quotes
    none of them."""
    out: list[tuple[str, int] | None] = []
    for sentence in answer_sentences(text):
        ns = M.markers(sentence)
        if not ns:
            continue
        pid = cited.get(ns[0], "")
        i = M.quoted_index(sentence, roles[pid]) if roles.get(pid) else None
        out.append(None if i is None else (pid, i))
    return out


def question_scores(row: dict[str, Any], o: Outcome, roles: Roles | None = None) -> dict[str, Any]:
    """One question's answer metrics, support aside (that needs the encoder).
    Answer metrics of a refused question are None: a refusal is counted by the
    refusal metrics, not as a wrong answer. With `roles` (the corpus's labelled
    sentence roles), also which roles the answer quotes."""
    gold = row["gold_paper_ids"]
    cited_papers = list(dict.fromkeys(o.cited[n] for n in M.markers(o.text) if n in o.cited))
    answered = not o.refused
    answerable = row["kind"] != "unanswerable"
    single = answered and row["kind"] == "single"
    multi = answered and row["kind"] == "multi"
    sentences = answer_sentences(o.text) if answered else []
    quotes = quoted(o.text, o.cited, roles) if answered and roles else []
    roles_quoted = [None if q is None else roles[q[0]][q[1]][1] for q in quotes] if roles else []
    return {
        "id": row["id"],
        "kind": row["kind"],
        "question": row["question"],
        "refused": o.refused,
        "degraded": o.degraded,
        "reader_reads": len(o.reader.get("reads", [])),
        "validity": M.citation_validity(o.text, o.cited, o.retrieved),
        "precision": M.citation_precision(cited_papers, gold) if answerable and answered else None,
        "single_precision": M.citation_precision(cited_papers, gold) if single else None,
        "gold_cited": M.gold_cited(cited_papers, gold) if single else None,
        # A set question's answer: a paper cited that does not answer is as bad as one missed.
        "multi_precision": M.citation_precision(cited_papers, gold) if multi else None,
        "recall": M.citation_recall(cited_papers, gold) if multi else None,
        "conclusion": M.conclusion_in_answer(sentences, row.get("conclusion"))
        if answered
        else None,
        # Does the answer open on the paper's conclusion (findings first)?
        "conclusion_first": M.conclusion_in_answer(sentences[:1], row.get("conclusion"))
        if answered
        else None,
        "must_contain": M.contains(o.text, row.get("must_contain")),
        "roles": roles_quoted,
        **M.role_scores(roles_quoted),
        # A quote that leans on a sentence the answer leaves out ("This decomposition ...").
        "dangling": M.dangling(quotes, roles) if roles else None,
        "words": M.words(o.text),
        "cited_papers": cited_papers,
        # A refusal near the corpus names the nearest papers: are the gold ones there?
        "nearest": o.nearest,
        "nearest_recall": M.citation_recall(o.nearest, gold) if o.refused and answerable else None,
        "timings": {k: round(v, 5) for k, v in o.timings.items()},
        "answer": o.text,
    }


def summarise(rows: list[dict[str, Any]], per_q: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer table's figures from the per-question scores."""
    refusal = M.refusal_scores(
        [q["refused"] for q in per_q], [r["kind"] == "unanswerable" for r in rows]
    )
    false_refusals = refusal.pop("wrong_refusals")
    answerable = sum(r["kind"] != "unanswerable" for r in rows)
    answered = [q for q in per_q if not q["refused"]]
    return {
        "citation_validity": M.mean(q["validity"] for q in per_q),
        "citation_precision": M.mean(q["precision"] for q in per_q),
        "single_cite_precision": M.mean(q["single_precision"] for q in per_q),
        "gold_cited_rate": M.mean(q["gold_cited"] for q in per_q),
        "multi_cite_precision": M.mean(q.get("multi_precision") for q in per_q),
        "citation_recall_multi": M.mean(q["recall"] for q in per_q),
        "support_rate": M.mean(q.get("support") for q in per_q),
        "conclusion_in_answer": M.mean(q["conclusion"] for q in per_q),
        "conclusion_first": M.mean(q.get("conclusion_first") for q in per_q),
        "answered": len(answered),
        **refusal,
        "false_refusals": false_refusals,
        "false_refusal_rate": false_refusals / answerable if answerable else None,
        "answered_uncovered": sum(
            1
            for q, r in zip(per_q, rows, strict=True)
            if not q["refused"] and r["kind"] == "unanswerable"
        ),
        "wrong_refusals_naming_gold": M.mean(q.get("nearest_recall") for q in per_q),
        "uncovered_refused_near": sum(
            1
            for q, r in zip(per_q, rows, strict=True)
            if q["refused"] and q.get("nearest") and r["kind"] == "unanswerable"
        ),
        "must_contain_hit_rate": M.mean(q["must_contain"] for q in per_q),
        "finding_share": M.mean(q.get("finding_share") for q in per_q),
        "background_share": M.mean(q.get("background_share") for q in per_q),
        "opens_with_finding": M.mean(q.get("opens_with_finding") for q in per_q),
        "answers_with_roles": sum(q.get("finding_share") is not None for q in per_q),
        "dangling": M.mean(q.get("dangling") for q in per_q),
        "answer_words_median": M.percentile([q["words"] for q in answered], 50),
        "degraded": sum(q["degraded"] for q in per_q),
        "reader_reads": sum(q.get("reader_reads", 0) for q in per_q),
        "reader_consulted": sum(bool(q.get("reader_reads")) for q in per_q),
    }


def foreign_scores(outcomes: list[Outcome]) -> dict[str, Any]:
    """Questions from another field, none of which this corpus covers: all should
    be refused. None without foreign questions."""
    refused = [o.refused for o in outcomes]
    return {
        "foreign_questions": len(refused),
        "foreign_refused": sum(refused),
        "foreign_refusal_rate": M.share(refused),
        "foreign_refused_near": sum(1 for o in outcomes if o.refused and o.nearest),
    }


def score_answers(
    rows: list[dict],
    outcomes: list[Outcome],
    papers: dict[str, Paper],
    encoder: Any,
    judge: Any = None,
    roles: Roles | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    per_q = []
    for row, o in zip(rows, outcomes, strict=True):
        q = question_scores(row, o, roles)
        q["support"] = supported_share(o, papers, encoder)
        if judge is not None and not o.refused:
            q["judge"] = judge.score(row["question"], o.text, o.quotes)
        per_q.append(q)
    summary = summarise(rows, per_q)
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


def report_stem(name: str, limit: int | None = None, total: int | None = None) -> str:
    """`eval` for the sample (as before datasets had names), `eval-<name>` for the
    others; a subset run adds `-limit<N>` so it never overwrites a full run."""
    stem = "eval" if name == "sample" else f"eval-{name}"
    if limit is not None and (total is None or limit < total):
        stem += f"-limit{limit}"
    return stem


def _store_dir(out: Path, corpus_hash: str, cache: bool) -> Any:
    """The cached store directory for this corpus file, or a temporary one."""
    if not cache:
        return tempfile.TemporaryDirectory(prefix="citeqa-eval-")
    path = out / ".cache" / f"corpus-{corpus_hash}"
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def evaluate(
    spec: EvalSpec,
    llm: str,
    out: Path,
    *,
    limit: int | None = None,
    cache: bool = True,
    judge_url: str | None = None,
    judge_model: str | None = None,
) -> dict[str, Any]:
    """Both configurations on `spec`; writes the reports to `out`. `limit`: a
    seeded sample of that many questions (and foreign questions), for quick
    checks. `cache`: keep the ingested stores under `out/.cache`, keyed by the
    corpus file's hash. With `judge_url`, an OpenAI-compatible judge also scores
    faithfulness and relevance."""
    from rag.check.support import SentenceEncoder
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    t_run = time.perf_counter()
    all_rows = load_dataset(spec.questions)
    if not all_rows:
        raise DatasetError(f"{spec.questions}: no questions")
    rows = subset(all_rows, limit)
    all_foreign = load_dataset(spec.foreign) if spec.foreign is not None else []
    foreign = subset(all_foreign, limit)
    papers = corpus(spec.corpus)
    roles = corpus_roles(spec.corpus)
    absent = [r["id"] for r in all_rows if set(r["gold_paper_ids"]) - papers.keys()]
    if absent:
        raise DatasetError(
            f"{len(absent)} questions of {spec.questions} name gold papers that "
            f"{spec.corpus} does not hold (first: {absent[0]}); wrong --corpus?"
        )
    corpus_hash = file_hash(spec.corpus)
    seconds: dict[str, Any] = {}
    with _store_dir(out, corpus_hash, cache) as store_dir:
        settings = Settings(data_dir=Path(store_dir), llm=llm)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        embeddings = make_embeddings(settings)
        load = getattr(embeddings, "load", None)
        if callable(load):
            load()
        encoder = SentenceEncoder(embeddings)
        seconds["model_load"] = time.perf_counter() - t0
        judge = None
        if judge_url:
            from evals.judge import Judge  # only here: off and not imported by default

            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
            judge = Judge(judge_url, judge_model or settings.llm_model, key)
        configs: list[Any] = []
        t0 = time.perf_counter()
        configs.append(CiteQA(settings, embeddings, spec.corpus))
        seconds["citeqa_ingest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        persist = Path(store_dir) / "baseline" if cache else None
        configs.append(Baseline(settings, embeddings, papers, persist))
        seconds["baseline_build"] = time.perf_counter() - t0
        report: dict[str, Any] = {
            "name": spec.name,
            "stem": report_stem(spec.name, limit, len(all_rows)),
            "dataset": {
                "path": str(spec.questions),
                "sha256": file_hash(spec.questions),
                "questions": len(rows),
                "questions_in_file": len(all_rows),
                "subset": {"limit": limit, "seed": 0} if len(rows) < len(all_rows) else None,
                "kinds": {
                    k: sum(r["kind"] == k for r in rows) for k in sorted({r["kind"] for r in rows})
                },
                "with_conclusion": sum(bool(r.get("conclusion")) for r in rows),
            },
            "corpus": {"path": str(spec.corpus), "sha256": corpus_hash, "papers": len(papers)},
            "foreign": {
                "path": str(spec.foreign),
                "sha256": file_hash(spec.foreign),
                "questions": len(foreign),
                "questions_in_file": len(all_foreign),
            }
            if spec.foreign is not None
            else None,
            "llm": llm,
            "judge": {"url": judge_url, "model": judge_model} if judge_url else None,
            "machine": {"python": platform.python_version(), "cpus": _cpus()},
            "cache": str(store_dir) if cache else None,
            "configs": {},
        }
        for config in configs:
            spent: dict[str, float] = {}
            t0 = time.perf_counter()
            retrieval: dict[str, Any] = {}
            modes = ("bm25", "dense", "hybrid") if config.name == "citeqa" else ("dense",)
            for mode in modes:
                ranked = [config.ranked(r["question"], mode, 10) for r in rows]
                retrieval[mode] = score_retrieval(rows, ranked)
            spent["retrieval"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            config.answer(rows[0]["question"], llm)  # warm caches: latency is steady state
            outcomes = [config.answer(r["question"], llm) for r in rows]
            spent["answers"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            foreign_outcomes = [config.answer(r["question"], llm) for r in foreign]
            spent["foreign"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            answers, per_q = score_answers(rows, outcomes, papers, encoder, judge, roles)
            if spec.foreign is not None:
                answers.update(foreign_scores(foreign_outcomes))
            spent["scoring"] = time.perf_counter() - t0
            seconds[config.name] = spent
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
                "foreign_questions": [
                    {"id": r["id"], "refused": o.refused}
                    | ({} if o.refused else {"question": r["question"], "answer": o.text})
                    for r, o in zip(foreign, foreign_outcomes, strict=True)
                ],
            }
    seconds["total"] = time.perf_counter() - t_run
    report["seconds"] = _round(seconds)
    write_reports(report, out)
    return report


def _round(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return round(value, 1) if isinstance(value, float) else value


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
    ("single_cite_precision", "cite precision (single-paper)"),
    ("gold_cited_rate", "gold paper cited (answered single-paper)"),
    ("multi_cite_precision", "cite precision (multi-paper)"),
    ("citation_recall_multi", "citation recall (multi-paper)"),
    ("support_rate", "support rate"),
    ("conclusion_in_answer", "conclusion in answer (answered, with conclusion)"),
    ("conclusion_first", "conclusion as the answer's first sentence"),
    ("answered", "questions answered"),
    ("refusal_precision", "refusal precision"),
    ("refusal_recall", "refusal recall"),
    ("false_refusals", "false refusals (answerable refused)"),
    ("false_refusal_rate", "false refusal rate"),
    ("answered_uncovered", "uncovered questions answered"),
    ("wrong_refusals_naming_gold", "false refusals naming the gold paper(s) among the nearest"),
    ("uncovered_refused_near", "uncovered questions refused naming nearest papers"),
    ("foreign_refusal_rate", "foreign questions refused (share)"),
    ("foreign_refused_near", "foreign questions refused naming nearest papers"),
    ("must_contain_hit_rate", "must-contain hit rate"),
    ("finding_share", "quotes stating findings (answers with labelled quotes)"),
    ("background_share", "quotes restating motivation"),
    ("opens_with_finding", "answer opens on a finding"),
    ("answers_with_roles", "answers with labelled quotes"),
    ("dangling", "answers quoting a sentence that refers back to one left out"),
    ("answer_words_median", "answer words (median)"),
    ("degraded", "degraded answers"),
    ("judge_faithfulness", "judge: faithfulness"),
    ("judge_answer_relevance", "judge: answer relevance"),
]


def markdown(report: dict[str, Any]) -> str:
    names = list(report["configs"])
    d, c, f = report["dataset"], report["corpus"], report["foreign"]
    subset_note = (
        f" (a sample of {d['questions']} of the file's {d['questions_in_file']}, seed "
        f"{d['subset']['seed']}: not a full run)"
        if d.get("subset")
        else ""
    )
    lines = [
        f"# citeqa eval: {report['name']}",
        "",
        f"Questions `{d['path']}` (sha256 {d['sha256']}): {d['questions']} questions"
        + subset_note
        + ", "
        + ", ".join(f"{n} {k}" for k, n in d["kinds"].items())
        + f"; {d['with_conclusion']} with a gold conclusion.",
        f"Corpus `{c['path']}` (sha256 {c['sha256']}): {c['papers']} papers.",
        f"Foreign questions (should be refused) `{f['path']}`: {f['questions']}."
        if f
        else "Foreign questions: none.",
        f"Generator: `{report['llm']}`. Machine: {report['machine']['cpus']} cores."
        + (f" Run time: {report['seconds']['total']:.0f} s." if "seconds" in report else ""),
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


def _best_retrieval(c: dict[str, Any], key: str) -> float | None:
    return c["retrieval"].get("hybrid", c["retrieval"].get("dense"))[key]


CHART = [
    ("recall@5", lambda c: _best_retrieval(c, "recall@5")),
    ("MRR@10", lambda c: _best_retrieval(c, "mrr@10")),
    ("citation\nvalidity", lambda c: c["answers"]["citation_validity"]),
    ("cite precision\n(single)", lambda c: c["answers"]["single_cite_precision"]),
    ("gold paper\ncited", lambda c: c["answers"]["gold_cited_rate"]),
    ("support\nrate", lambda c: c["answers"]["support_rate"]),
    ("conclusion\nin answer", lambda c: c["answers"]["conclusion_in_answer"]),
    ("false\nrefusal rate", lambda c: c["answers"]["false_refusal_rate"]),
    ("refusal\nrecall", lambda c: c["answers"]["refusal_recall"]),
    ("foreign\nrefused", lambda c: c["answers"].get("foreign_refusal_rate")),
    ("must-contain\nhit rate", lambda c: c["answers"]["must_contain_hit_rate"]),
]


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["configs"])
    # A figure no configuration has (no multi-paper or uncovered questions) is left
    # out rather than drawn as a zero bar.
    metrics = [
        (label, fn)
        for label, fn in CHART
        if any(fn(report["configs"][n]) is not None for n in names)
    ]
    fig, ax = plt.subplots(figsize=(12, 4.2), dpi=110)
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
        f"citeqa vs baseline: {report['name']}, {report['dataset']['questions']} questions "
        f"({report['llm']})"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = report["stem"]
    paths = [out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.png"]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False))
    paths[1].write_text(markdown(report))
    chart(report, paths[2])
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", help="sample (default) or pubmedqa; or a questions file over the sample."
    )
    parser.add_argument("--corpus", type=Path, help="Corpus file (default: the dataset's).")
    parser.add_argument("--questions", type=Path, help="Questions (default: the dataset's).")
    parser.add_argument("--foreign", type=Path, help="Questions the corpus should refuse.")
    parser.add_argument("--no-foreign", action="store_true", help="Ask no foreign questions.")
    parser.add_argument("--name", help="Report name (default: the dataset's).")
    parser.add_argument("--limit", type=int, help="A seeded sample of N questions.")
    parser.add_argument("--no-cache", action="store_true", help="Ingest into a temporary store.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--llm", default="extractive", choices=["extractive", "openai", "llamacpp"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--judge", help="Base URL of an OpenAI-compatible judge model.")
    parser.add_argument("--judge-model", help="The judge's model name.")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        spec = resolve(
            args.dataset, args.corpus, args.questions, args.foreign, args.no_foreign, args.name
        )
    except DatasetError as exc:
        parser.error(str(exc))
    report = evaluate(
        spec,
        args.llm,
        args.out,
        limit=args.limit,
        cache=not args.no_cache,
        judge_url=args.judge,
        judge_model=args.judge_model,
    )
    print(markdown(report))


if __name__ == "__main__":
    main()
