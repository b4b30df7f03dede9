"""`citeqa eval`: the dev-set loader (both question shapes), the answer metrics as
pure functions on small fixtures, and end to end on tiny datasets: both
configurations, all three reports, figures that follow from the answers, and a
cached store that follows its corpus file."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from evals import dataset as D
from evals import metrics as M
from evals.dataset import DEV_SET, DatasetError, EvalSpec, load_dataset, resolve, subset
from evals.run import (
    Outcome,
    answer_sentences,
    evaluate,
    foreign_scores,
    question_scores,
    report_stem,
    summarise,
)
from rag.answer.answerable import intent
from tests.helpers import SAMPLE


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- the loader ------------------------------------------------------------------------


def test_loader_accepts_our_shape_and_pubmedqas_in_one_file(tmp_path) -> None:
    path = _jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"id": "d1", "question": "Why?", "gold_paper_ids": ["a", "b"], "kind": "multi"},
            {
                "id": 16418930,  # PubMedQA's ids are numbers in the source; kept as text
                "question": "Landolt C and snellen e acuity: differences in strabismus?",
                "gold_paper": "pmid16418930",
                "conclusion": "Only a slight overestimation by the Snellen E.",
                "decision": "no",
            },
            {"id": "d3", "question": "Bread?", "gold_paper_ids": [], "kind": "unanswerable"},
        ],
    )
    ours, pubmed, uncovered = load_dataset(path)
    assert ours["gold_paper_ids"] == ["a", "b"] and ours["kind"] == "multi"
    assert "conclusion" not in ours
    assert pubmed["id"] == "16418930"
    assert pubmed["gold_paper_ids"] == ["pmid16418930"] and pubmed["kind"] == "single"
    assert pubmed["conclusion"].startswith("Only a slight") and pubmed["decision"] == "no"
    assert "gold_paper" not in pubmed
    assert uncovered["kind"] == "unanswerable" and uncovered["gold_paper_ids"] == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "p", "question": "Q?", "gold_paper": "pmid1"}, "conclusion"),
        ({"id": "p", "question": "Q?", "gold_paper": "", "conclusion": "C."}, "gold_paper"),
        ({"id": "p", "question": "Q?", "gold_paper": ["pmid1"], "conclusion": "C."}, "gold_paper"),
        ({"id": "d", "question": "Q?", "gold_paper_ids": ["a"]}, "missing {'kind'}"),
        ({"id": "d", "question": "Q?", "gold_paper_ids": "a", "kind": "single"}, "not a list"),
        ({"id": "d", "question": "Q?", "gold_paper_ids": ["a"], "kind": "unanswerable"}, "gold"),
        ({"id": "d", "question": "Q?", "gold_paper_ids": [], "kind": "single"}, "gold"),
        ({"id": "d", "question": " ", "gold_paper_ids": ["a"], "kind": "single"}, "not text"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_loader_rejects_a_bad_row_naming_file_and_line(tmp_path, row, message) -> None:
    ok = {"id": "ok", "question": "Fine?", "gold_paper_ids": ["a"], "kind": "single"}
    path = _jsonl(tmp_path / "bad.jsonl", [ok, row])
    with pytest.raises(DatasetError, match=rf"bad\.jsonl:2: .*{message.replace('{', '.')}"):
        load_dataset(path)


def test_loader_rejects_broken_json_and_duplicate_ids(tmp_path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "question": "Q?", "gold_paper_ids": ["x"], "kind": "single"}\n{')
    with pytest.raises(DatasetError, match=r"broken\.jsonl:2: not JSON"):
        load_dataset(broken)
    row = {"id": "a", "question": "Q?", "gold_paper": "pmid1", "conclusion": "C."}
    with pytest.raises(DatasetError, match=r"dup\.jsonl:2: duplicate id 'a'"):
        load_dataset(_jsonl(tmp_path / "dup.jsonl", [row, row]))


def test_the_sample_dev_set_loads_unchanged() -> None:
    rows = load_dataset(DEV_SET)
    assert len(rows) == 160
    kinds = Counter(r["kind"] for r in rows)
    assert kinds == {"single": 58, "multi": 35, "fact": 35, "unanswerable": 32}
    assert sum(bool(r.get("must_contain")) for r in rows) == 35


def test_the_pubmedqa_dev_set_loads_as_single_questions_with_conclusions() -> None:
    if not D.available("pubmedqa"):
        pytest.skip(f"no PubMedQA dev set at {D.DATASETS['pubmedqa'].questions}")
    rows = load_dataset(D.DATASETS["pubmedqa"].questions)
    assert len(rows) == 500
    assert all(r["kind"] == "single" and len(r["gold_paper_ids"]) == 1 for r in rows)
    assert all(r["gold_paper_ids"][0] == "pmid" + r["id"] for r in rows)
    assert all(r["conclusion"].strip() for r in rows)


def test_the_pubmedqa_extra_questions_are_sets_and_uncovered_questions_over_its_corpus() -> None:
    extra = D.DATASETS["pubmedqa-extra"]
    rows = load_dataset(extra.questions)  # ours: in the repository, whatever is beside it
    assert Counter(r["kind"] for r in rows) == {"multi": 41, "unanswerable": 30}
    assert all(len(r["gold_paper_ids"]) >= 2 for r in rows if r["kind"] == "multi")
    # Every set question reads as one: the chain looks at more papers and cites every one.
    assert all(intent(r["question"]) == "set" for r in rows if r["kind"] == "multi")
    evidence = extra.questions.with_suffix(".md").read_text()
    assert all(f"### {r['id']}:" in evidence for r in rows)  # each question's searches, quotes
    assert extra.field == "pubmedqa"
    if not extra.corpus.is_file():
        pytest.skip(f"no PubMedQA corpus at {extra.corpus}")
    assert resolve("pubmedqa-extra").foreign is None  # PubMedQA's own run asks those
    ids = {json.loads(line)["id"] for line in extra.corpus.read_text().splitlines()}
    assert {g for r in rows for g in r["gold_paper_ids"]} <= ids


def test_the_paraphrased_questions_are_a_test_set_no_fit_reads(monkeypatch, tmp_path) -> None:
    from ingest.loaders import load

    for name, corpus in (("sample-paraphrased", "sample"), ("pubmedqa-paraphrased", "pubmedqa")):
        d = D.DATASETS[name]
        rows = load_dataset(d.questions)
        assert len(rows) == 100 and {r["kind"] for r in rows} == {"single"}
        assert all(len(r["gold_paper_ids"]) == 1 for r in rows)
        assert d.field == corpus and not d.tuned
        notes = d.questions.with_name("paraphrased.md").read_text()
        assert all(f"**{r['id']}**" in notes for r in rows)
        if not d.corpus.is_file():
            continue
        ids = {p.paper_id for _, p in load(str(d.corpus)) if hasattr(p, "paper_id")}
        for batch in ("p-", "p2-"):  # two batches of 50, each 50 papers, one question each
            golds = {r["gold_paper_ids"][0] for r in rows if r["id"].startswith(batch)}
            assert len(golds & ids) == 50
    # The fits collect rows from the tuned datasets only.
    asked: list[str] = []
    D.cached_rows(tmp_path / "rows.jsonl", True, lambda name: asked.append(name) or [])
    assert "sample" in asked and not any(n.endswith("paraphrased") for n in asked)


def test_subset_is_a_seeded_sample_in_file_order() -> None:
    rows = [{"id": str(i)} for i in range(100)]
    picked = subset(rows, 10)
    assert picked == subset(rows, 10) and len(picked) == 10
    assert [int(r["id"]) for r in picked] == sorted(int(r["id"]) for r in picked)
    assert picked != rows[:10] and max(int(r["id"]) for r in picked) >= 50
    assert subset(rows, None) == rows and subset(rows, 500) == rows


# -- resolving a run -------------------------------------------------------------------


def test_named_datasets_ask_each_others_questions_as_foreign() -> None:
    sample = resolve()
    assert (sample.name, sample.corpus, sample.questions) == ("sample", SAMPLE, DEV_SET)
    if not D.available("pubmedqa"):
        assert sample.foreign is None
        pytest.skip("no PubMedQA corpus beside the repo")
    pubmed = D.DATASETS["pubmedqa"]
    assert sample.foreign == pubmed.questions
    spec = resolve("pubmedqa")
    assert (spec.name, spec.corpus, spec.questions, spec.foreign) == (
        "pubmedqa",
        pubmed.corpus,
        pubmed.questions,
        DEV_SET,
    )
    # The same files given by path are the same dataset, with the same report name.
    assert resolve(corpus=pubmed.corpus, questions=pubmed.questions) == spec
    assert resolve("pubmedqa", no_foreign=True).foreign is None


def test_resolve_errors_and_custom_runs(tmp_path, monkeypatch) -> None:
    questions = _jsonl(tmp_path / "tiny.jsonl", [])
    spec = resolve(questions=questions)
    assert spec == EvalSpec("tiny", SAMPLE, questions, None)  # unknown pair: no foreign
    assert resolve(str(questions)).questions == questions  # --dataset PATH, as before
    assert resolve(questions=questions, foreign=DEV_SET, name="a b").name == "a-b"
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        resolve("nope")
    with pytest.raises(DatasetError, match="missing.jsonl: no such file"):
        resolve(questions=tmp_path / "missing.jsonl")
    gone = D.Dataset("pubmedqa", tmp_path / "corpus.jsonl", tmp_path / "dev.jsonl")
    monkeypatch.setitem(D.DATASETS, "pubmedqa", gone)
    with pytest.raises(DatasetError, match=r"dataset 'pubmedqa' is not there: no .*corpus\.jsonl"):
        resolve("pubmedqa")
    assert resolve().foreign is None  # the other dataset is absent: no foreign questions


def test_report_names_keep_runs_apart() -> None:
    assert report_stem("sample") == "eval"
    assert report_stem("pubmedqa") == "eval-pubmedqa"
    assert report_stem("pubmedqa", 20, 500) == "eval-pubmedqa-limit20"
    assert report_stem("pubmedqa", 500, 500) == "eval-pubmedqa"


# -- answer metrics ----------------------------------------------------------------------


def _row(i: str, kind: str, gold: list[str], conclusion: str | None = None) -> dict:
    row = {"id": i, "question": f"question {i}?", "gold_paper_ids": gold, "kind": kind}
    return row | ({"conclusion": conclusion} if conclusion else {})


def _outcome(text: str, cited: dict[int, str], refused: bool = False) -> Outcome:
    return Outcome(
        text=text, cited=cited, retrieved=list(cited.values()), refused=refused, timings={}
    )


def test_gold_cited_and_single_paper_cite_precision() -> None:
    assert M.gold_cited(["a", "b"], ["a"]) == 1.0
    assert M.gold_cited(["b"], ["a"]) == 0.0
    assert M.gold_cited([], ["a"]) == 0.0  # an answer citing nothing missed the gold paper
    assert M.gold_cited(["a"], []) is None
    rows = [
        _row("1", "single", ["A"]),
        _row("2", "single", ["C"]),
        _row("3", "single", ["E"]),
        _row("4", "single", ["F"]),
        _row("5", "multi", ["G", "H"]),
        _row("6", "unanswerable", []),
    ]
    outcomes = [
        _outcome("One [1]. Two [2]. Again [1].", {1: "A", 2: "B"}),  # 1 of 2 cited papers gold
        _outcome("Wrong paper [1].", {1: "D"}),  # 0 of 1
        _outcome("", {}, refused=True),  # refused: a false refusal, not a 0
        _outcome("No markers at all.", {1: "F"}),  # cites nothing: no precision, gold missed
        _outcome("Other [1].", {1: "Z"}),  # multi: not in the single-paper figures
        _outcome("Uncovered [1].", {1: "A"}),  # unanswerable, answered
    ]
    per_q = [question_scores(r, o) for r, o in zip(rows, outcomes, strict=True)]
    assert [q["single_precision"] for q in per_q] == [0.5, 0.0, None, None, None, None]
    assert [q["gold_cited"] for q in per_q] == [1.0, 0.0, None, 0.0, None, None]
    assert [q["multi_precision"] for q in per_q] == [None, None, None, None, 0.0, None]
    assert per_q[0]["cited_papers"] == ["A", "B"]
    s = summarise(rows, per_q)
    assert s["single_cite_precision"] == pytest.approx(0.25)
    assert s["gold_cited_rate"] == pytest.approx(1 / 3)
    assert s["multi_cite_precision"] == 0.0 and s["citation_recall_multi"] == 0.0
    assert s["citation_precision"] == pytest.approx(0.5 / 3)  # answerable, answered, citing
    assert s["answered"] == 5 and s["answered_uncovered"] == 1
    assert s["false_refusals"] == 1 and s["false_refusal_rate"] == pytest.approx(1 / 5)
    assert s["refusal_recall"] == 0.0 and s["refusal_precision"] == 0.0


CONCLUSION = (
    "Telephone counseling, rather than tailored print, might be the preferred "
    "first-line intervention for nonadherent women."
)


@pytest.mark.parametrize(
    ("sentence", "hit"),
    [
        # 5 words of 3+ characters, 3 of them (60%) in the conclusion
        ("Telephone counseling might help patients.", 1.0),
        # 5 words, 2 in the conclusion (40%)
        ("Telephone counseling helped many patients.", 0.0),
        # case, punctuation and markers do not matter; "a", "is", "of" are not words
        ("TELEPHONE counseling is a Preferred way of outreach [1].", 1.0),
        # all 4 words in the conclusion, but a sentence needs 5
        ("Telephone counseling for women.", 0.0),
        # 7 words, 4 in the conclusion (57%): just short of 60%
        ("Telephone counseling for women beats mailed leaflets.", 0.0),
    ],
)
def test_conclusion_in_answer_threshold(sentence, hit) -> None:
    assert M.conclusion_in_answer(["Unrelated filler sentence here.", sentence], CONCLUSION) == hit


def test_conclusion_in_answer_on_answers() -> None:
    assert M.conclusion_in_answer(["Anything at all in here, really."], None) is None
    assert M.conclusion_in_answer(["Anything at all in here, really."], " ") is None
    assert M.content_words("A 12 [3] Non-adherent WOMEN's x2") == ["non", "adherent", "women"]
    text = (
        "“PubMed 10808977”: The effects were largest after the first contact [1].\n\n"
        "Telephone counseling might be the preferred intervention for nonadherent women [1]."
    )
    assert len(answer_sentences(text)) == 2
    row = _row("1", "single", ["pmid10808977"], CONCLUSION)
    assert question_scores(row, _outcome(text, {1: "pmid10808977"}))["conclusion"] == 1.0
    near_miss = "The effects were largest after the first contact [1]."
    assert question_scores(row, _outcome(near_miss, {1: "pmid10808977"}))["conclusion"] == 0.0
    assert question_scores(row, _outcome("", {}, refused=True))["conclusion"] is None
    assert (
        question_scores(_row("2", "single", ["a"]), _outcome(text, {1: "a"}))["conclusion"] is None
    )
    rows = [row, row | {"id": "2"}, row | {"id": "3"}, _row("4", "single", ["a"])]
    per_q = [
        question_scores(rows[0], _outcome(text, {1: "pmid10808977"})),
        question_scores(rows[1], _outcome(near_miss, {1: "pmid10808977"})),
        question_scores(rows[2], _outcome("", {}, refused=True)),
        question_scores(rows[3], _outcome(text, {1: "a"})),
    ]
    assert summarise(rows, per_q)["conclusion_in_answer"] == 0.5
    # The conclusion is the text's second sentence, so it is not the answer's first.
    assert [q["conclusion_first"] for q in per_q] == [0.0, 0.0, None, None]
    first = "Telephone counseling might be the preferred intervention [1]. Effects were large [1]."
    opens = question_scores(rows[0], _outcome(first, {1: "pmid10808977"}))
    assert opens["conclusion_first"] == 1.0 and opens["conclusion"] == 1.0


def test_foreign_refusals() -> None:
    outcomes = [_outcome("", {}, refused=True), _outcome("Answered [1].", {1: "a"})]
    near = _outcome("", {}, refused=True)
    near.nearest = ["b"]  # a refusal that names the nearest papers
    outcomes.append(near)
    assert foreign_scores(outcomes) == {
        "foreign_questions": 3,
        "foreign_refused": 2,
        "foreign_refusal_rate": pytest.approx(2 / 3),
        "foreign_refused_near": 1,
    }
    assert foreign_scores([])["foreign_refusal_rate"] is None
    assert M.share([False, False]) == 0.0 and M.share([]) is None


# -- end to end ------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_writes_reports_for_citeqa_and_the_baseline(tmp_path) -> None:
    from ingest.loaders import load

    ids = {p.title.split(":")[0]: p.paper_id for _, p in load(str(SAMPLE))}
    forest = next(v for k, v in ids.items() if k.startswith("Why do Random Forests Work?"))
    helix = ids["HelixSurf"]
    rows = [
        (
            "t1",
            "How do randomized tree ensembles regulate the smoothness of their predictions?",
            [forest],
            "single",
        ),
        (
            "t2",
            "How can multi-view stereo and neural implicit surfaces regularize each other "
            "when reconstructing indoor rooms?",
            [helix],
            "single",
        ),
        (
            "t3",
            "What is the best recipe for sourdough bread with a rye starter?",
            [],
            "unanswerable",
        ),
    ]
    dataset = _jsonl(
        tmp_path / "tiny.jsonl",
        [{"id": i, "question": q, "gold_paper_ids": g, "kind": k} for i, q, g, k in rows],
    )
    foreign = _jsonl(
        tmp_path / "foreign.jsonl",
        [
            {
                "id": "9488747",
                "question": "Syncope during bathing in infants, a pediatric form of "
                "water-induced urticaria?",
                "gold_paper": "pmid9488747",
                "conclusion": "Aquagenic maladies could be a pediatric aquagenic urticaria.",
            }
        ],
    )
    out = tmp_path / "reports"
    report = evaluate(resolve(questions=dataset, foreign=foreign), "extractive", out)

    assert {p.name for p in out.iterdir()} == {
        ".cache",
        "eval-tiny.json",
        "eval-tiny.md",
        "eval-tiny.png",
    }
    assert (out / "eval-tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "eval-tiny.json").read_text())
    assert saved["dataset"]["questions"] == 3 and len(saved["dataset"]["sha256"]) == 16
    ours, base = saved["configs"]["citeqa"], saved["configs"]["baseline"]
    assert set(ours["retrieval"]) == {"bm25", "dense", "hybrid"} and set(base["retrieval"]) == {
        "dense"
    }
    assert ours["settings_hash"] != base["settings_hash"]
    # The gate refuses the bread question and the medical one; the tutorial answers both.
    assert ours["answers"]["refusal_recall"] == 1.0 and ours["answers"]["false_refusals"] == 0
    assert base["answers"]["answered_uncovered"] == 1
    assert ours["answers"]["foreign_refusal_rate"] == 1.0
    assert base["answers"]["foreign_refusal_rate"] == 0.0
    assert ours["answers"]["citation_validity"] == 1.0
    assert ours["answers"]["gold_cited_rate"] is not None
    for stage in ("retrieve", "generate", "total"):
        assert ours["latency"][stage]["p50_ms"] > 0
    md = (out / "eval-tiny.md").read_text()
    assert "| citation validity |" in md and "| foreign questions refused (share) |" in md
    assert report["configs"]["citeqa"]["questions"][2]["refused"] is True
    # The sample's sentences are labelled: the answers' quotes are found and their roles read.
    answered = [q for q in ours["questions"] if not q["refused"]]
    assert answered and all(q["roles"] and None not in q["roles"] for q in answered)
    assert all(set(q["roles"]) <= set(M.ROLES) for q in answered)
    assert ours["answers"]["answers_with_roles"] == len(answered)
    assert 0.0 <= ours["answers"]["finding_share"] <= 1.0
    assert "| quotes stating findings" in md
    # The optional LLM judge is never imported by default.
    assert "ragas" not in sys.modules and "evals.judge" not in sys.modules


PAPERS = {
    "pmid1": "Bathing in warm water caused syncope in several infants. Skin tests showed "
    "aquagenic urticaria. Aquagenic maladies could be a pediatric form of urticaria.",
    "pmid2": "Women enrolled in a health plan received tailored print or telephone "
    "counseling. Telephone counseling raised mammography adherence the most.",
    "pmid3": "Double balloon enteroscopy was done in a community hospital. Yield and "
    "complication rates matched those of referral centres.",
    "pmid4": "Lace plant leaves form holes through programmed cell death. Mitochondrial "
    "dynamics change as cell death progresses.",
}
QUESTIONS = {
    "pmid1": "Is syncope during bathing in infants a form of water-induced urticaria?",
    "pmid2": "Can telephone counseling increase mammography use among women?",
    "pmid3": "Is double balloon enteroscopy safe in a community setting?",
    "pmid4": "Do mitochondria take part in programmed cell death in lace plant leaves?",
}


def _mini(tmp_path: Path, ids: list[str]) -> tuple[Path, Path]:
    corpus = _jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": i, "title": f"PubMed {i[4:]}", "abstract": PAPERS[i], "update_date": "2020"}
            for i in ids
        ],
    )
    questions = _jsonl(
        tmp_path / "dev.jsonl",
        [
            {
                "id": i[4:],
                "question": QUESTIONS[i],
                "gold_paper": i,
                "conclusion": PAPERS[i].rsplit(". ", 1)[1],
            }
            for i in ids
        ],
    )
    return corpus, questions


@pytest.mark.slow
def test_the_cached_store_follows_the_corpus_file(tmp_path) -> None:
    out = tmp_path / "reports"
    corpus, questions = _mini(tmp_path, ["pmid1", "pmid2", "pmid3"])
    spec = resolve(corpus=corpus, questions=questions, name="mini")
    first = evaluate(spec, "extractive", out)
    cache = Path(first["cache"])
    assert cache.parent == out / ".cache" and cache.name == f"corpus-{first['corpus']['sha256']}"
    built = (cache / "baseline" / "built.json").stat().st_mtime_ns
    assert first["dataset"]["with_conclusion"] == 3
    assert first["configs"]["citeqa"]["retrieval"]["hybrid"]["recall@10"] == 1.0

    # The same file again: the same stores, the baseline not rebuilt, the same figures.
    again = evaluate(spec, "extractive", out)
    assert again["cache"] == first["cache"]
    assert (cache / "baseline" / "built.json").stat().st_mtime_ns == built
    for name in ("citeqa", "baseline"):
        assert again["configs"][name]["retrieval"] == first["configs"][name]["retrieval"]

    # A changed corpus (pmid3 replaced by pmid4) gets a store of its own holding pmid4.
    corpus, questions = _mini(tmp_path, ["pmid1", "pmid2", "pmid4"])
    changed = evaluate(resolve(corpus=corpus, questions=questions, name="mini"), "extractive", out)
    assert changed["cache"] != first["cache"]
    assert changed["corpus"]["sha256"] != first["corpus"]["sha256"]
    for name in ("citeqa", "baseline"):
        assert changed["configs"][name]["retrieval"]["dense"]["recall@10"] == 1.0
    # Questions about papers the corpus does not hold are a usage error, caught early.
    (tmp_path / "x").mkdir()
    stale = resolve(corpus=corpus, questions=_mini(tmp_path / "x", ["pmid3"])[1], name="m")
    with pytest.raises(DatasetError, match="1 questions .* name gold papers"):
        evaluate(stale, "extractive", out)


def test_refusals_that_name_the_nearest_papers_are_counted() -> None:
    rows = [
        {"id": "a", "question": "?", "kind": "single", "gold_paper_ids": ["g"]},
        {"id": "b", "question": "?", "kind": "multi", "gold_paper_ids": ["g", "h"]},
        {"id": "c", "question": "?", "kind": "unanswerable", "gold_paper_ids": []},
        {"id": "d", "question": "?", "kind": "unanswerable", "gold_paper_ids": []},
    ]
    outcomes = [_outcome("", {}, refused=True) for _ in rows]
    outcomes[0].nearest = ["x", "g"]  # wrongly refused, the gold paper named
    outcomes[1].nearest = ["h", "y"]  # one of two gold papers named
    outcomes[2].nearest = ["x"]  # uncovered, refused, with nearest papers
    per_q = [question_scores(r, o) for r, o in zip(rows, outcomes, strict=True)]
    assert [q["nearest_recall"] for q in per_q] == [1.0, 0.5, None, None]
    s = summarise(rows, per_q)
    assert s["wrong_refusals_naming_gold"] == 0.75 and s["uncovered_refused_near"] == 1
    answered = question_scores(rows[0], _outcome("G found it [1].", {1: "g"}))
    assert answered["nearest_recall"] is None  # only refusals name nearest papers


def test_the_near_margin_keeps_the_other_fields_questions_out() -> None:
    from evals.tune_gate import near_margin, near_outcome

    def row(origin: str, answerable: bool, score: float) -> dict[str, object]:
        return {
            "corpus": "c",
            "origin": origin,
            "answerable": answerable,
            "dense": score,
            "match": 0.0,
        }

    t = 1.0
    rows = [row("foreign", False, t - 0.52) for _ in range(98)]
    rows += [row("foreign", False, t - 0.12), row("foreign", False, t - 0.32)]
    rows += [row("own", True, t - 0.1), row("own", True, t + 0.2), row("own", False, t - 0.2)]
    # 2 of 100 foreign questions may be near: the margin reaches the second, not the rest.
    assert near_margin(rows, 0.0, t) == 0.5
    out = near_outcome(rows, 0.0, t, 0.25)["c"]
    assert out == {
        "wrong_refusals": "1 of 1 refused",
        "uncovered": "1 of 1 refused",
        "foreign": "1 of 100 refused",
    }
