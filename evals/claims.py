"""`citeqa eval --dataset scifact`: claim verification against a baseline, in one run.

Over SciFact's corpus and training claims (`../shared/corpus/scifact/`; its 300
dev claims are kept apart and never read here):

* retrieval: citeqa's hybrid retrieval against BM25 alone, nDCG@10 and recall@5,
  the claim's cited papers as gold (BEIR's convention), in the same run;
* SciFact's task: abstract-level (label only, and label with rationale) and
  sentence-level (selection and label) precision / recall / F1 of citeqa's
  `rag.claims` against a baseline (BM25's top 3, each labelled SUPPORT with its
  closest sentence);
* the label on gold evidence alone (supports or contradicts, given the gold
  rationale), and the share of claims without evidence answered "not enough
  information".

citeqa's figures are held out: the models are fitted by 5-fold cross-validation
grouped by the papers the claims were written from (claims that share a cited
paper are in one fold), and each claim is scored by the fold that did not see it.
`--fit` then fits on all training claims and writes `rag/claims.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evals import metrics as M
from evals.dataset import SHARED_CORPORA
from evals.fit import logistic
from rag import claims as C
from rag.answer.fitted import LinearModel
from rag.types import Source

# Beside the repository; a git worktree one level further down finds it one level up.
SCIFACT = next(
    (
        d
        for d in (
            SHARED_CORPORA / "scifact",
            SHARED_CORPORA.parents[2] / "shared" / "corpus" / "scifact",
        )
        if d.is_dir()
    ),
    SHARED_CORPORA / "scifact",
)
K = 10  # papers retrieved per claim for the ranking metrics
VERIFY_K = 5  # papers judged per claim (the API's default top_k)
FOLDS = 5
C_REG = 1.0
NEI_TARGET = 0.9  # share of claims without evidence that must be answered NEI (on train folds)
BASELINE_K = 3
# A chat answer says its cited papers disagree only where the label is this sure (held
# out), over at least this many gold rationale sets: a false note is worse than none.
SURE_PRECISION = 0.9
SURE_LEAST = 30
ROOT = Path(__file__).resolve().parents[1]


# -- data ------------------------------------------------------------------------------


@dataclass
class GoldPaper:
    label: str  # SUPPORT | CONTRADICT
    sets: list[list[int]]  # rationale sets, each a list of gold sentence indices


@dataclass
class Claim:
    id: int
    text: str
    cited: list[str]
    evidence: dict[str, GoldPaper]
    group: int = 0
    citeqa: list[Source] = field(default_factory=list)
    bm25: list[Source] = field(default_factory=list)
    relevant: bool = True


def load_claims(path: Path) -> list[Claim]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        ev = {}
        for pid, sets in row["evidence"].items():
            ev[pid] = GoldPaper(sets[0]["label"], [s["sentences"] for s in sets])
        out.append(Claim(row["id"], row["claim"], list(row["cited_doc_ids"]), ev))
    groups = _groups([c.cited for c in out])
    for c, g in zip(out, groups, strict=True):
        c.group = g
    return out


def _groups(cited: Sequence[Sequence[str]]) -> list[int]:
    """Claims that share a cited paper, transitively, form one group."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ids in cited:
        for a in ids[1:]:
            parent[find(a)] = find(ids[0])
    roots: dict[str, int] = {}
    return [roots.setdefault(find(ids[0]), len(roots)) for ids in cited]


def gold_spans(abstract: str, sentences: Sequence[str]) -> list[tuple[int, int]]:
    """Where each of the corpus's gold sentences stands in the abstract."""
    spans, cursor = [], 0
    for s in sentences:
        i = abstract.find(s, cursor)
        if i < 0:
            i = cursor
        spans.append((i, i + len(s)))
        cursor = i + len(s)
    return spans


def to_gold(span: tuple[int, int], gold: Sequence[tuple[int, int]]) -> set[int]:
    """The gold sentences a sentence of ours covers (most of each, or most of ours)."""
    a, b = span
    out = set()
    for i, (x, y) in enumerate(gold):
        inter = min(b, y) - max(a, x)
        if inter > 0 and (inter >= 0.5 * (y - x) or inter >= 0.5 * (b - a)):
            out.add(i)
    return out


# -- the prepared run: retrieval and sentence similarities, cached -------------------


@dataclass
class Prepared:
    claims: list[Claim]
    gold_sentences: dict[str, list[tuple[int, int]]]
    sentence_texts: dict[str, list[str]]
    sims: dict[tuple[int, str], np.ndarray]
    """(claim id, paper id) -> cosine of each of our sentences of the paper to the claim."""
    gold_sims: dict[tuple[int, str], np.ndarray]
    """(claim id, paper id) -> cosine of each gold sentence to the claim."""
    retrieval_seconds: float = 0.0


def _save(path: Path, obj: Any) -> None:
    """Pickle `obj` to `path` whole or not at all (a killed run leaves the last copy)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        pickle.dump(obj, f)
    tmp.replace(path)


class SentenceVectors:
    """Each paper's sentence vectors, embedded once for the whole run and kept on disk.

    Claims share papers (the 809 training claims retrieve about 3,000 distinct ones
    among their 6,500 top-5 and top-3 slots), so a paper's sentences are embedded
    once, many papers to a call of the embedder's bulk path (texts sorted by
    length into forward passes). Each call's vectors are written as one shard
    file under `root`; a killed run reloads the shards and embeds only the rest.
    A shard is keyed by (paper id, kind) and holds the texts it embedded: a paper
    whose sentences changed is embedded again.
    """

    def __init__(self, root: Path, encoder: Any, model: str) -> None:
        self.root = root / f"vectors-{hashlib.sha256(model.encode()).hexdigest()[:12]}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.encoder = encoder
        self.kept: dict[tuple[str, str], tuple[tuple[str, ...], np.ndarray]] = {}
        for shard in sorted(self.root.glob("shard-*.pkl")):
            with shard.open("rb") as f:
                self.kept.update(pickle.load(f))

    def get(self, key: tuple[str, str], texts: Sequence[str]) -> np.ndarray:
        t, v = self.kept[key]
        assert t == tuple(texts), key
        return v

    def fill(
        self, wanted: dict[tuple[str, str], Sequence[str]], log: Any, papers_per_call: int = 150
    ) -> None:
        todo = [
            (k, tuple(t))
            for k, t in wanted.items()
            if t and (k not in self.kept or self.kept[k][0] != tuple(t))
        ]
        total = sum(len(t) for _, t in todo)
        log(
            f"sentence vectors: {len(wanted) - len(todo)} papers kept, {len(todo)} to embed "
            f"({total} sentences)"
        )
        done, t0 = 0, time.perf_counter()
        n = len(list(self.root.glob("shard-*.pkl")))
        for lo in range(0, len(todo), papers_per_call):
            part = todo[lo : lo + papers_per_call]
            flat = [s for _, t in part for s in t]
            vecs = self.encoder.encode(flat)
            shard, at = {}, 0
            for k, t in part:
                shard[k] = (t, vecs[at : at + len(t)])
                at += len(t)
            n += 1
            _save(self.root / f"shard-{n:05d}.pkl", shard)
            self.kept.update(shard)
            done += len(flat)
            rate = done / max(time.perf_counter() - t0, 1e-9)
            log(f"embedded {done}/{total} sentences ({rate:.1f}/s)")


def _retrieve_all(chain: Any, claims: list[Claim], path: Path, key: Any, log: Any) -> float:
    """Each claim's citeqa and BM25 papers and its vector, resumed from `path`."""
    saved: dict[int, Any] = {}
    if path.is_file():
        with path.open("rb") as f:
            got = pickle.load(f)
        if got.get("key") == key:
            saved = got["claims"]
    t0 = time.perf_counter()
    fresh = 0
    for i, c in enumerate(claims):
        if c.id not in saved:
            r = chain.retriever.retrieve(c.text, k=K, mode="hybrid", mmr=False)
            bm25 = chain.retriever.retrieve(c.text, k=K, mode="bm25", mmr=False).sources
            saved[c.id] = (r.sources, r.relevant, bm25, chain.encoder.encode_query(c.text))
            fresh += 1
            if fresh % 25 == 0:
                _save(path, {"key": key, "claims": saved})
        if i % 50 == 0:
            log(f"retrieved {i}/{len(claims)} ({fresh} this run)")
    _save(path, {"key": key, "claims": saved})
    for c in claims:
        c.citeqa, c.relevant, c.bm25, _ = saved[c.id]
    return time.perf_counter() - t0 if fresh else 0.0


def prepare(
    data_dir: Path,
    claims_path: Path,
    corpus_path: Path,
    log: Any = print,
    *,
    limit: int | None = None,
    threads: int | None = None,
) -> Prepared:
    """Retrieval for every claim and the similarity of every sentence it judges. Each
    stage is kept under `data_dir` as it goes: a killed run resumes where it was."""
    from ingest.job import IngestJob
    from rag.chain import build_chain
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    cache = data_dir / "claims-prepared.pkl"
    key = (claims_path.stat().st_mtime_ns, corpus_path.stat().st_mtime_ns, C.__file__, limit)
    if cache.is_file():
        with cache.open("rb") as f:
            saved = pickle.load(f)
        if saved.get("key") == key:
            return saved["prepared"]  # type: ignore[no-any-return]
    settings = Settings(data_dir=data_dir)
    chain = build_chain(settings, embeddings=make_embeddings(settings, threads=threads))
    IngestJob(chain.retriever.store, chain.retriever.embeddings, settings, progress=False).run(
        [str(corpus_path)], prune=True
    )
    corpus = {}
    for line in corpus_path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            corpus[row["id"]] = row
    claims = load_claims(claims_path)[:limit]
    seconds = _retrieve_all(chain, claims, data_dir / "claims-retrieval.pkl", key[:3], log)
    vectors: dict[int, np.ndarray] = {}
    with (data_dir / "claims-retrieval.pkl").open("rb") as f:
        for cid, row in pickle.load(f)["claims"].items():
            vectors[cid] = row[3]
    # Every paper judged or scored, our sentences and the corpus's gold sentences.
    ours: dict[str, list[C.Sentence]] = {}
    wanted: dict[tuple[str, str], Sequence[str]] = {}
    for c in claims:
        for src in c.citeqa[:VERIFY_K] + c.bm25[:BASELINE_K]:
            if src.paper_id not in ours:
                ours[src.paper_id] = C.sentences_of(src)
                wanted[(src.paper_id, "ours")] = [s.text for s in ours[src.paper_id]]
        for pid in c.evidence:
            wanted[(pid, "gold")] = corpus[pid]["sentences"]
    store = SentenceVectors(data_dir / "claims-sentences", chain.encoder, settings.embedding.model)
    store.fill(wanted, log)
    gold_sentences, sentence_texts, sims, gold_sims = {}, {}, {}, {}
    for c in claims:
        qv = vectors[c.id]
        papers = {s.paper_id for s in c.citeqa[:VERIFY_K] + c.bm25[:BASELINE_K]}
        for pid in papers:
            texts = wanted[(pid, "ours")]
            sims[(c.id, pid)] = store.get((pid, "ours"), texts) @ qv if texts else np.zeros(0)
        for pid in set(c.evidence) | papers:
            if pid not in gold_sentences:
                gold_sentences[pid] = gold_spans(corpus[pid]["abstract"], corpus[pid]["sentences"])
                sentence_texts[pid] = corpus[pid]["sentences"]
        for pid in c.evidence:
            gold_sims[(c.id, pid)] = store.get((pid, "gold"), sentence_texts[pid]) @ qv
    prepared = Prepared(claims, gold_sentences, sentence_texts, sims, gold_sims, seconds)
    _save(cache, {"key": key, "prepared": prepared})
    return prepared


# -- rows for the fits -------------------------------------------------------------------


def rationale_rows(p: Prepared, c: Claim) -> list[dict[str, Any]]:
    """One row per sentence of each paper citeqa judges for the claim."""
    rows = []
    for rank, src in enumerate(c.citeqa[:VERIFY_K]):
        sents = C.sentences_of(src)
        if not sents:
            continue
        gold = p.gold_sentences[src.paper_id]
        ev = c.evidence.get(src.paper_id)
        wanted = {i for s in ev.sets for i in s} if ev else set()
        feats = C.rationale_features(c.text, sents, p.sims[(c.id, src.paper_id)], rank)
        for s, f in zip(sents, feats, strict=True):
            covered = to_gold((s.start, s.end), gold)
            rows.append(
                {
                    "corpus": "scifact",
                    "claim": c.id,
                    "paper": src.paper_id,
                    "rank": rank,
                    "sentence": s,
                    "gold": covered,
                    "features": f,
                    "label": int(bool(covered & wanted)),
                }
            )
    return rows


def label_rows(p: Prepared, c: Claim) -> list[dict[str, Any]]:
    """One row per gold rationale set: its sentences and its label."""
    rows = []
    for pid, ev in c.evidence.items():
        texts = p.sentence_texts[pid]
        sims = p.gold_sims[(c.id, pid)]
        for s in ev.sets:
            f = C.label_features(c.text, [texts[i] for i in s], float(max(sims[i] for i in s)))
            rows.append(
                {
                    "corpus": "scifact",
                    "claim": c.id,
                    "features": f,
                    "label": int(ev.label == "CONTRADICT"),
                }
            )
    return rows


def fit_models(p: Prepared, claims: Sequence[Claim]) -> C.ClaimModels:
    """Both models and the rationale threshold, from these claims alone."""
    r_rows = [r for c in claims for r in rationale_rows(p, c)]
    l_rows = [r for c in claims for r in label_rows(p, c)]
    rationale, _ = logistic(r_rows, C.RATIONALE_FEATURES, C_REG)
    contradicts, _ = logistic(l_rows, C.LABEL_FEATURES, C_REG)
    models = C.ClaimModels(rationale, contradicts)
    threshold = pick_threshold(p, claims, models, r_rows)
    return C.ClaimModels(_with_threshold(rationale, threshold), contradicts)


def _with_threshold(m: LinearModel, t: float) -> LinearModel:
    return LinearModel(m.weights, m.bias, m.mean, m.scale, round(t, 4))


def pick_threshold(
    p: Prepared, claims: Sequence[Claim], models: C.ClaimModels, r_rows: list[dict[str, Any]]
) -> float:
    """The rationale threshold with the best abstract-level F1 (label and rationale)
    on these claims among those that answer NEI_TARGET of their claims without
    evidence 'not enough information'."""
    probs = models.rationale.probabilities([r["features"] for r in r_rows])
    by_claim: dict[int, list[tuple[dict[str, Any], float]]] = {}
    for r, pr in zip(r_rows, probs, strict=True):
        by_claim.setdefault(r["claim"], []).append((r, float(pr)))
    best_t, best_f = 0.9, -1.0
    for t in np.arange(0.3, 0.96, 0.025):
        preds = [predict_from_rows(p, c, by_claim.get(c.id, []), models, float(t)) for c in claims]
        nei = nei_share(claims, preds)
        f1 = abstract_scores(claims, preds)["label+rationale"]["f1"] or 0.0
        if nei is not None and nei >= NEI_TARGET and f1 > best_f:
            best_t, best_f = float(t), f1
    return best_t


# -- predictions ---------------------------------------------------------------------------


@dataclass
class PaperPrediction:
    label: str  # SUPPORT | CONTRADICT
    sentences: set[int]  # gold sentence indices its rationale covers
    unmatched: int = 0  # its rationale sentences that cover no gold sentence (count as wrong)


def predict_from_rows(
    p: Prepared,
    c: Claim,
    rows: list[tuple[dict[str, Any], float]],
    models: C.ClaimModels,
    threshold: float,
) -> dict[str, PaperPrediction]:
    if not c.relevant:
        return {}
    per: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for r, pr in rows:
        per.setdefault(r["paper"], []).append((r, pr))
    out = {}
    for pid, items in per.items():
        kept = sorted((x for x in items if x[1] >= threshold), key=lambda x: -x[1])
        kept = kept[: C.MAX_RATIONALE]
        if not kept:
            continue
        sents = [x[0]["sentence"] for x in sorted(kept, key=lambda x: x[0]["sentence"].index)]
        sim = max(x[0]["features"]["cos"] for x in kept)
        j = C.label_paper(c.text, sents[0].source, sents, sim, models)
        gold = set().union(*(x[0]["gold"] for x in kept))
        label = "CONTRADICT" if j.label == C.CONTRADICTS else "SUPPORT"
        out[pid] = PaperPrediction(label, gold, sum(not x[0]["gold"] for x in kept))
    return out


def baseline_predictions(p: Prepared, c: Claim) -> dict[str, PaperPrediction]:
    """BM25's top 3, each SUPPORT with its sentence closest to the claim."""
    out = {}
    for src in c.bm25[:BASELINE_K]:
        sents = C.sentences_of(src)
        if not sents:
            continue
        sims = p.sims[(c.id, src.paper_id)]
        s = sents[int(np.argmax(sims))]
        covered = to_gold((s.start, s.end), p.gold_sentences[src.paper_id])
        out[src.paper_id] = PaperPrediction("SUPPORT", covered, int(not covered))
    return out


# -- SciFact's scores ------------------------------------------------------------------------


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float | None]:
    p = correct / predicted if predicted else None
    r = correct / gold if gold else None
    f = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
    return {"precision": p, "recall": r, "f1": f}


def abstract_scores(
    claims: Sequence[Claim], preds: Sequence[dict[str, PaperPrediction]]
) -> dict[str, dict[str, float | None]]:
    """Abstract-level: a predicted (claim, paper, label) is correct when the paper is
    evidence with that label ('label+rationale': and some gold rationale set is
    wholly among the predicted sentences)."""
    gold = sum(len(c.evidence) for c in claims)
    predicted = sum(len(x) for x in preds)
    only, with_r = 0, 0
    for c, pr in zip(claims, preds, strict=True):
        for pid, x in pr.items():
            ev = c.evidence.get(pid)
            if ev is None or ev.label != x.label:
                continue
            only += 1
            if any(set(s) <= x.sentences for s in ev.sets):
                with_r += 1
    return {
        "label_only": _prf(only, predicted, gold),
        "label+rationale": _prf(with_r, predicted, gold),
    }


def sentence_scores(
    claims: Sequence[Claim], preds: Sequence[dict[str, PaperPrediction]]
) -> dict[str, dict[str, float | None]]:
    """Sentence-level: a predicted sentence is correct ('selection') when it is in a
    gold rationale set of its paper all of whose sentences are predicted
    ('selection+label': and the paper's label is right)."""
    gold = sum(len({i for s in ev.sets for i in s}) for c in claims for ev in c.evidence.values())
    predicted = sum(len(x.sentences) + x.unmatched for pr in preds for x in pr.values())
    sel, lab = 0, 0
    for c, pr in zip(claims, preds, strict=True):
        for pid, x in pr.items():
            ev = c.evidence.get(pid)
            if ev is None:
                continue
            good = {i for s in ev.sets if set(s) <= x.sentences for i in s} & x.sentences
            sel += len(good)
            if ev.label == x.label:
                lab += len(good)
    return {"selection": _prf(sel, predicted, gold), "selection+label": _prf(lab, predicted, gold)}


def nei_share(claims: Sequence[Claim], preds: Sequence[dict[str, PaperPrediction]]) -> float | None:
    """Of the claims without evidence, the share answered 'not enough information'."""
    flags = [not pr for c, pr in zip(claims, preds, strict=True) if not c.evidence]
    return sum(flags) / len(flags) if flags else None


def retrieval_scores(claims: Sequence[Claim], attr: str) -> dict[str, float | None]:
    def ranked(c: Claim) -> list[str]:
        return [s.paper_id for s in getattr(c, attr)]

    out: dict[str, float | None] = {}
    for name, gold_of in (
        ("cited", lambda c: c.cited),
        ("evidence", lambda c: list(c.evidence)),
    ):
        rows = [c for c in claims if gold_of(c)]
        out[f"ndcg@10 ({name})"] = M.mean(M.ndcg_at_k(ranked(c), gold_of(c), 10) for c in rows)
        out[f"recall@5 ({name})"] = M.mean(M.recall_at_k(ranked(c), gold_of(c), 5) for c in rows)
    return out


# -- the run ----------------------------------------------------------------------------------


def folds(claims: Sequence[Claim], n: int = FOLDS) -> list[list[int]]:
    """Claim indices per fold, grouped by cited papers."""
    from sklearn.model_selection import GroupKFold

    idx = np.arange(len(claims))
    return [
        list(test)
        for _, test in GroupKFold(n_splits=n).split(idx, groups=[c.group for c in claims])
    ]


def evaluate(p: Prepared, log: Any = print) -> dict[str, Any]:
    claims = p.claims
    held: list[dict[str, PaperPrediction]] = [{} for _ in claims]
    label_hits: list[tuple[int, int]] = []  # (gold, predicted) on gold evidence
    label_probs: list[float] = []  # P(contradicts), held out, for the same rows
    thresholds = []
    for k, test in enumerate(folds(claims)):
        test_set = set(test)
        train = [c for i, c in enumerate(claims) if i not in test_set]
        models = fit_models(p, train)
        thresholds.append(models.rationale.threshold)
        for i in test:
            c = claims[i]
            rows = rationale_rows(p, c)
            probs = models.rationale.probabilities([r["features"] for r in rows]) if rows else []
            held[i] = predict_from_rows(
                p,
                c,
                list(zip(rows, map(float, probs), strict=True)),
                models,
                models.rationale.threshold or 0.5,
            )
            for r in label_rows(p, c):
                pr = models.contradicts.probability(r["features"])
                label_hits.append((r["label"], int(pr >= (models.contradicts.threshold or 0.5))))
                label_probs.append(pr)
        log(f"fold {k + 1}/{FOLDS}: threshold {models.rationale.threshold}")
    base = [baseline_predictions(p, c) for c in claims]
    gold_lab = np.array(label_hits)
    majority = max(gold_lab[:, 0].mean(), 1 - gold_lab[:, 0].mean())
    return {
        "claims": len(claims),
        "with_evidence": sum(bool(c.evidence) for c in claims),
        "retrieval": {
            "citeqa": retrieval_scores(claims, "citeqa"),
            "bm25": retrieval_scores(claims, "bm25"),
        },
        "gate_refused": sum(not c.relevant for c in claims) / len(claims),
        "citeqa": {
            "abstract": abstract_scores(claims, held),
            "sentence": sentence_scores(claims, held),
            "nei_answered_nei": nei_share(claims, held),
        },
        "baseline": {
            "abstract": abstract_scores(claims, base),
            "sentence": sentence_scores(claims, base),
            "nei_answered_nei": nei_share(claims, base),
        },
        "label_on_gold": {
            "rationale_sets": len(gold_lab),
            "accuracy": float((gold_lab[:, 0] == gold_lab[:, 1]).mean()),
            "supports_recall": float((gold_lab[gold_lab[:, 0] == 0, 1] == 0).mean()),
            "contradicts_recall": float((gold_lab[gold_lab[:, 0] == 1, 1] == 1).mean()),
            "majority_class": float(majority),
        },
        "sure": sure_bounds(gold_lab[:, 0], np.array(label_probs)),
        "fold_thresholds": thresholds,
    }


def sure_bounds(
    gold: np.ndarray, prob: np.ndarray, precision: float = SURE_PRECISION, least: int = SURE_LEAST
) -> dict[str, float]:
    """Where held-out P(contradicts) is sure of a label: `contradicts_from`, the lowest
    P whose rows at or above it are contradictions at least `precision` of the time,
    and `supports_below`, the highest P whose rows below it are supports that often
    (each over at least `least` rows; 1.01 and 0.0, never sure, when none is). A
    chat answer says its papers disagree only with a paper on each side of these."""
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    con = next(
        (
            float(t)
            for t in grid
            if (prob >= t).sum() >= least and gold[prob >= t].mean() >= precision
        ),
        1.01,
    )
    sup = next(
        (
            float(t)
            for t in grid[::-1]
            if (prob < t).sum() >= least and (1 - gold[prob < t]).mean() >= precision
        ),
        0.0,
    )
    sel_c, sel_s = prob >= con, prob < sup
    return {
        "supports_below": sup,
        "contradicts_from": con,
        "precision": precision,
        "supports_rows": int(sel_s.sum()),
        "supports_precision": float((1 - gold[sel_s]).mean()) if sel_s.any() else 0.0,
        "contradicts_rows": int(sel_c.sum()),
        "contradicts_precision": float(gold[sel_c].mean()) if sel_c.any() else 0.0,
    }


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"## SciFact: {r['claims']} training claims ({r['with_evidence']} with evidence), "
        f"citeqa held out by {FOLDS}-fold grouped cross-validation",
        "",
        "| retrieval | nDCG@10 (cited) | recall@5 (cited) | nDCG@10 (evidence) "
        "| recall@5 (evidence) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("citeqa", "bm25"):
        x = r["retrieval"][name]
        lines.append(
            f"| {name} | {_f(x['ndcg@10 (cited)'])} | {_f(x['recall@5 (cited)'])} | "
            f"{_f(x['ndcg@10 (evidence)'])} | {_f(x['recall@5 (evidence)'])} |"
        )
    lines += [
        "",
        "| verification | abstract label-only P / R / F1 | abstract label+rationale P / R / F1 "
        "| sentence selection P / R / F1 | sentence selection+label P / R / F1 "
        "| NEI claims answered NEI |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("citeqa", "baseline"):
        x = r[name]
        cells = [
            " / ".join(_f(x[a][b][m]) for m in ("precision", "recall", "f1"))
            for a, b in (
                ("abstract", "label_only"),
                ("abstract", "label+rationale"),
                ("sentence", "selection"),
                ("sentence", "selection+label"),
            )
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_f(x['nei_answered_nei'])} |")
    g = r["label_on_gold"]
    lines += [
        "",
        f"Label on gold evidence ({g['rationale_sets']} rationale sets): accuracy "
        f"{_f(g['accuracy'])} (supports {_f(g['supports_recall'])}, contradicts "
        f"{_f(g['contradicts_recall'])}; always-supports {_f(g['majority_class'])}). "
        f"Claims refused by the relevance gate: {_f(r['gate_refused'])}.",
    ]
    if "sure" in r:
        x = r["sure"]
        lines += [
            "",
            f"Sure labels (for chat's disagreement note): P(contradicts) below "
            f"{x['supports_below']} is a support ({x['supports_rows']} sets, "
            f"{_f(x['supports_precision'])} right), from {x['contradicts_from']} a "
            f"contradiction ({x['contradicts_rows']} sets, {_f(x['contradicts_precision'])} "
            "right).",
        ]
    return "\n".join(lines)


def default_data_dir(out: Path, corpus: Path) -> Path:
    """Where `citeqa eval` keeps a corpus's store: keyed by the corpus file's hash."""
    from evals.run import file_hash

    return out / ".cache" / f"corpus-{file_hash(corpus)}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, help="The store's data dir (default: in --out).")
    ap.add_argument("--claims", type=Path, default=SCIFACT / "claims_train.jsonl")
    ap.add_argument("--corpus", type=Path, default=SCIFACT / "corpus.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    ap.add_argument("--fit", action="store_true", help="Also fit on all claims: rag/claims.json.")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="Retrieval and the label on gold evidence only (`quick`): no sentence "
        "embeddings of the retrieved papers.",
    )
    ap.add_argument("--limit", type=int, help="Only the first N claims (a slice, to profile).")
    ap.add_argument(
        "--threads", type=int, help="The embedder's compute threads (default: every core)."
    )
    ap.add_argument(
        "--points",
        type=Path,
        help="Instead: the label read off questions, as chat reads them (a yes/no "
        "question's point against its paper's conclusion; JSONL with question, "
        "conclusion and decision, e.g. ../shared/corpus/pubmedqa/dev.jsonl).",
    )
    args = ap.parse_args(argv)
    if args.points:
        print(json.dumps(point_labels(args.points, threads=args.threads), indent=2))
        return
    if args.quick:
        data_dir = args.data_dir or default_data_dir(args.out, args.corpus)
        print(json.dumps(quick(data_dir, args.claims, args.corpus, args.fit), indent=2))
        return
    data_dir = args.data_dir or default_data_dir(args.out, args.corpus)
    run(
        data_dir,
        args.claims,
        args.corpus,
        args.out,
        args.fit,
        limit=args.limit,
        threads=args.threads,
    )


def run(
    data_dir: Path,
    claims: Path,
    corpus: Path,
    out: Path,
    fit: bool = False,
    *,
    limit: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    import sys

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    p = prepare(data_dir, claims, corpus, log, limit=limit, threads=threads)
    log(f"prepared in {time.perf_counter() - t0:.0f} s")
    report = evaluate(p, log)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval-scifact.json").write_text(json.dumps(report, indent=2))
    (out / "eval-scifact.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    if fit:
        models = fit_models(p, p.claims)
        models = C.ClaimModels(models.rationale, models.contradicts, report["sure"])
        C.WEIGHTS.write_text(json.dumps(models.to_json(), indent=2) + "\n")
        log(f"wrote {C.WEIGHTS}")
    return report


# -- the parts that need no sentence embeddings of retrieved papers -----------------------


def quick(data_dir: Path, claims_path: Path, corpus_path: Path, fit: bool = False) -> dict:
    """Retrieval (citeqa hybrid against BM25, without the relevance gate) on every
    claim, and the label on gold evidence by grouped cross-validation: what a run
    on a slow machine can measure without embedding every retrieved sentence.
    With `fit`, the contradiction model in rag/claims.json is refitted on every
    claim's gold evidence (the rationale model is kept)."""
    import sys

    from rag.chain import build_chain
    from rag.settings import Settings

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    settings = Settings(data_dir=data_dir, retrieval={"gate": False})
    chain = build_chain(settings)
    claims = load_claims(claims_path)
    t0 = time.perf_counter()
    for i, c in enumerate(claims):
        c.citeqa = chain.retriever.retrieve(c.text, k=K, mode="hybrid", mmr=False).sources
        c.bm25 = chain.retriever.retrieve(c.text, k=K, mode="bm25", mmr=False).sources
        if i % 200 == 0:
            log(f"retrieved {i}/{len(claims)}")
    seconds = time.perf_counter() - t0
    sentences = {}
    for line in corpus_path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            sentences[row["id"]] = row["sentences"]
    enc = chain.encoder
    rows: list[dict[str, Any]] = []
    for c in claims:
        if not c.evidence:
            continue
        qv = enc.encode_query(c.text)
        for pid, ev in c.evidence.items():
            for s in ev.sets:
                texts = [sentences[pid][i] for i in s]
                sim = float((enc.encode(texts) @ qv).max())
                rows.append(
                    {
                        "corpus": "scifact",
                        "group": c.group,
                        "features": C.label_features(c.text, texts, sim),
                        "label": int(ev.label == "CONTRADICT"),
                    }
                )
    from sklearn.model_selection import GroupKFold

    y = np.array([r["label"] for r in rows])
    prob = np.zeros(len(rows))
    for train, test in GroupKFold(n_splits=FOLDS).split(rows, groups=[r["group"] for r in rows]):
        m, _ = logistic([rows[i] for i in train], C.LABEL_FEATURES, C_REG)
        prob[test] = m.probabilities([rows[i]["features"] for i in test])
    pred = prob >= 0.5
    report = {
        "claims": len(claims),
        "with_evidence": sum(bool(c.evidence) for c in claims),
        "retrieval": {
            "citeqa": retrieval_scores(claims, "citeqa"),
            "bm25": retrieval_scores(claims, "bm25"),
        },
        "retrieval_seconds": round(seconds, 1),
        "label_on_gold": {
            "rationale_sets": len(rows),
            "accuracy": float((pred == y).mean()),
            "supports_recall": float((pred[y == 0] == 0).mean()),
            "contradicts_recall": float((pred[y == 1] == 1).mean()),
            "majority_class": float(max(y.mean(), 1 - y.mean())),
        },
        "sure": sure_bounds(y, prob),
    }
    if fit:
        contradicts, _ = logistic(rows, C.LABEL_FEATURES, C_REG)
        current = C.load_models(C.WEIGHTS)
        C.WEIGHTS.write_text(
            json.dumps(
                C.ClaimModels(current.rationale, contradicts, report["sure"]).to_json(), indent=2
            )
            + "\n"
        )
        log(f"wrote {C.WEIGHTS}")
    return report


def point_labels(path: Path, *, threads: int | None = None) -> dict[str, Any]:
    """The contradiction model as chat uses it (rag/check/disagree.py), on another
    field: each yes/no question's point (the question as a claim) against its
    paper's conclusion, whose decision says whether the paper supports ('yes') or
    contradicts ('no') it. Where held-out-style bands of P(contradicts) would be
    sure enough for a note, and how often the label is right at 0.5."""
    from rag.check.disagree import point_of
    from rag.check.support import SentenceEncoder
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings
    from rag.text import sentence_spans

    settings = Settings()
    enc = SentenceEncoder(make_embeddings(settings, threads=threads))
    models = C.load_models()
    gold, prob = [], []
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        point = point_of(row.get("question", ""))
        if row.get("decision") not in ("yes", "no") or point is None:
            continue
        sents = [row["conclusion"][a:b] for a, b in sentence_spans(row["conclusion"])]
        sim = float((enc.encode(sents) @ enc.encode_query(point)).max())
        prob.append(models.contradicts.probability(C.label_features(point, sents, sim)))
        gold.append(int(row["decision"] == "no"))
    y, p = np.array(gold), np.array(prob)
    return {
        "points": len(y),
        "contradicted_share": float(y.mean()),
        "accuracy_at_0.5": float(((p >= 0.5) == y).mean()),
        "bands": {
            **{f"P>={t}": [int((p >= t).sum()), float(y[p >= t].mean())] for t in (0.5, 0.6, 0.7)},
            **{f"P<{t}": [int((p < t).sum()), float(1 - y[p < t].mean())] for t in (0.3, 0.2)},
        },
        "sure": sure_bounds(y, p),
        "shipped_sure": dict(models.sure or {}),
    }


if __name__ == "__main__":
    main()
