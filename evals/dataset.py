"""Dev sets: a corpus and questions over it with their gold papers.

Five are known by name:

* `sample`: the sample corpus (`data/hf-papers-page.txt`) with
  `evals/data/dev.jsonl` (160 questions: 58 single, 35 multi, 35 fact, 32
  unanswerable; d089-d160 were written from the 61 abstracts, multi rows
  listing every paper whose abstract answers);
* `pubmedqa`: `../shared/corpus/pubmedqa/` beside the repository (1,000 PubMed
  abstracts, 500 questions each answerable from exactly one paper);
* `pubmedqa-extra`: the same corpus with `evals/data/pubmedqa-extra.jsonl`, the
  kinds PubMedQA's questions lack: 41 set questions (2-6 gold papers each) and
  30 near-field questions it does not answer, written from the abstracts by
  keyword scans and reading (`pubmedqa-extra.md` has each gold paper's quote and
  the near misses left out);
* `sample-paraphrased` and `pubmedqa-paraphrased`: 100 questions over each
  corpus (two batches of 50, written apart), each about one paper, worded in a
  reader's own words (no three-word run of the abstract; `paraphrased.md`). A
  test set: no fit reads them
  (`Dataset.tuned`).

Question files come in two shapes, one object a line, and may be mixed:

* ours: `id`, `question`, `gold_paper_ids` (a list), `kind` (single, multi,
  fact, unanswerable), optionally `must_contain` and `conclusion`;
* PubMedQA's: `id`, `question`, `gold_paper` (one id), `conclusion` (the gold
  paper's conclusion), optionally `decision`: a `single` question.

Either way a row is loaded as ours: `gold_paper_ids` and `kind` are always set.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.metrics import Roles
from rag.settings import SAMPLE_CORPUS

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = Path(__file__).resolve().parent / "data" / "dev.jsonl"
WRITTEN = DEV_SET.parent / "reader_questions"
"""Questions the reader model wrote (evals.write_questions), one file per model and dev set."""
SHARED_CORPORA = ROOT.parent / "shared" / "corpus"
KINDS = {"single", "multi", "fact", "unanswerable"}


class DatasetError(ValueError):
    """A dataset that cannot be used: unknown name, missing file, bad row."""


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: Path
    questions: Path
    corpus_name: str = ""
    """The corpus's name where several datasets share one (fits weigh each corpus the
    same); the dataset's own name by default."""
    tuned: bool = True
    """Whether the fitted parts (the gate, the answerability model) are fitted on it;
    a test set's figures are on questions no fit has seen."""
    written: bool = False
    """Questions the reader model wrote from the dev abstracts (evals.write_questions):
    dev questions for the teacher (evals.teach); a fit reads them only through the
    teacher's labels, never by their gold paper alone."""

    @property
    def field(self) -> str:
        return self.corpus_name or self.name


DATASETS = {
    "sample": Dataset("sample", SAMPLE_CORPUS, DEV_SET),
    "pubmedqa": Dataset(
        "pubmedqa",
        SHARED_CORPORA / "pubmedqa" / "corpus.jsonl",
        SHARED_CORPORA / "pubmedqa" / "dev.jsonl",
    ),
    "pubmedqa-extra": Dataset(
        "pubmedqa-extra",
        SHARED_CORPORA / "pubmedqa" / "corpus.jsonl",
        DEV_SET.with_name("pubmedqa-extra.jsonl"),
        corpus_name="pubmedqa",
    ),
    "sample-paraphrased": Dataset(
        "sample-paraphrased",
        SAMPLE_CORPUS,
        DEV_SET.with_name("sample-paraphrased.jsonl"),
        corpus_name="sample",
        tuned=False,
    ),
    "pubmedqa-paraphrased": Dataset(
        "pubmedqa-paraphrased",
        SHARED_CORPORA / "pubmedqa" / "corpus.jsonl",
        DEV_SET.with_name("pubmedqa-paraphrased.jsonl"),
        corpus_name="pubmedqa",
        tuned=False,
    ),
    # Written by `python -m evals.write_questions --model qwen-1.5b` (its doc says how).
    "sample-written": Dataset(
        "sample-written",
        SAMPLE_CORPUS,
        WRITTEN / "qwen-1.5b-sample.jsonl",
        corpus_name="sample",
        written=True,
    ),
    "pubmedqa-written": Dataset(
        "pubmedqa-written",
        SHARED_CORPORA / "pubmedqa" / "corpus.jsonl",
        WRITTEN / "qwen-1.5b-pubmedqa.jsonl",
        corpus_name="pubmedqa",
        written=True,
    ),
}
# Each sentence of some of a corpus's abstracts labelled with its rhetorical role
# (`evals.metrics.ROLES`), by reading, not by any rule citeqa uses: which roles an
# answer quotes (its findings or their motivation), and what `evals.roles` fits.
ROLE_FILES = {
    "sample": DEV_SET.with_name("roles-sample.jsonl"),
    "pubmedqa": DEV_SET.with_name("roles-pubmedqa.jsonl"),
}

# The questions a corpus must refuse: the other field's dev set.
FOREIGN = {"sample": "pubmedqa", "pubmedqa": "sample"}


def available(name: str) -> bool:
    d = DATASETS[name]
    return d.corpus.is_file() and d.questions.is_file()


def named(name: str) -> Dataset:
    """The dataset called `name`; DatasetError if the name is unknown or its files absent."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}' ({', '.join(DATASETS)})")
    d = DATASETS[name]
    missing = [p for p in (d.corpus, d.questions) if not p.is_file()]
    if missing:
        raise DatasetError(
            f"dataset '{name}' is not there: no {', '.join(str(p) for p in missing)}"
        )
    return d


@dataclass(frozen=True)
class EvalSpec:
    """What one `citeqa eval` run measures: a corpus, its questions, the foreign
    questions it must refuse (or None), and the name its reports are filed under."""

    name: str
    corpus: Path
    questions: Path
    foreign: Path | None


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def resolve(
    dataset: str | None = None,
    corpus: Path | None = None,
    questions: Path | None = None,
    foreign: Path | None = None,
    no_foreign: bool = False,
    name: str | None = None,
) -> EvalSpec:
    """The run the command-line options describe. `dataset` is a name (`sample`,
    `pubmedqa`) or, as before names existed, a questions file over the sample
    corpus. `corpus` and `questions` override the dataset's. The foreign questions
    default to the other known dataset's when the run is a known dataset and the
    other one is there; the report name defaults to the known dataset's name, else
    the questions file's stem."""
    base = DATASETS["sample"]
    if dataset is not None:
        if dataset in DATASETS:
            base = named(dataset)
        elif Path(dataset).is_file():
            base = Dataset("sample", SAMPLE_CORPUS, Path(dataset))
        else:
            raise DatasetError(
                f"unknown dataset '{dataset}' ({', '.join(DATASETS)}, or a questions file)"
            )
    corpus = corpus or base.corpus
    questions = questions or base.questions
    for path in (corpus, questions, foreign):
        if path is not None and not path.is_file():
            raise DatasetError(f"{path}: no such file")
    known = next(
        (
            d
            for d in DATASETS.values()
            if _same(d.corpus, corpus) and d.questions.is_file() and _same(d.questions, questions)
        ),
        None,
    )
    if no_foreign:
        foreign = None
    elif (
        foreign is None
        and known is not None
        and known.name in FOREIGN
        and available(FOREIGN[known.name])
    ):
        foreign = DATASETS[FOREIGN[known.name]].questions
    if name is None:
        name = known.name if known is not None else questions.stem
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-")
    if not clean:
        raise DatasetError(f"unusable report name {name!r}")
    return EvalSpec(clean, corpus, questions, foreign)


def _row(raw: Any, where: str) -> dict[str, Any]:
    """One question in our shape, or DatasetError naming the file and line."""
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: a question is a JSON object, not {type(raw).__name__}")
    row = dict(raw)
    if "gold_paper_ids" not in row and "gold_paper" in row:  # PubMedQA's shape
        gold = row.pop("gold_paper")
        if not isinstance(gold, str) or not gold.strip():
            raise DatasetError(f"{where}: gold_paper is not a paper id: {gold!r}")
        if "conclusion" not in row:
            raise DatasetError(f"{where}: bad row (missing {{'conclusion'}} beside gold_paper)")
        row["gold_paper_ids"] = [gold]
        row.setdefault("kind", "single")
    missing = {"id", "question", "gold_paper_ids", "kind"} - row.keys()
    if missing or row["kind"] not in KINDS:
        raise DatasetError(
            f"{where}: bad row (missing {missing or 'nothing'}, kind {row.get('kind')!r})"
        )
    row["id"] = str(row["id"])
    gold = row["gold_paper_ids"]
    if not isinstance(gold, list) or not all(isinstance(g, str) and g for g in gold):
        raise DatasetError(f"{where}: gold_paper_ids is not a list of paper ids: {gold!r}")
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise DatasetError(f"{where}: the question is not text: {row['question']!r}")
    if (row["kind"] == "unanswerable") != (not gold):
        raise DatasetError(f"{where}: kind {row['kind']!r} with {len(gold)} gold papers")
    conclusion = row.get("conclusion")
    if conclusion is not None and not isinstance(conclusion, str):
        raise DatasetError(f"{where}: conclusion is not text: {conclusion!r}")
    return row


def load_dataset(path: Path = DEV_SET) -> list[dict[str, Any]]:
    rows = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not JSON ({exc.msg})") from None
            row = _row(raw, where)
            if row["id"] in seen:
                raise DatasetError(f"{where}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            rows.append(row)
    return rows


def subset(rows: list[dict[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """`limit` rows drawn without replacement by a seeded generator, in file order:
    the same subset every run, spread over the whole file (not just its head)."""
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def cached_rows(
    path: Path, refresh: bool, collect: Callable[[str], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Feature rows of the named dev sets (`collect(name)` for each), kept as JSON
    Lines at `path` so refitting a model costs seconds; `refresh` collects again."""
    if path.is_file() and not refresh:
        return [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for name, d in DATASETS.items() if d.tuned and not d.written for r in collect(name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def load_roles(path: Path) -> Roles:
    """A role file: one labelled sentence a line (`paper_id`, `text`, `role`)."""
    from evals.metrics import ROLES

    out: Roles = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("role") not in ROLES:
                raise DatasetError(
                    f"{path}:{number}: role {row.get('role')!r} is not one of {ROLES}"
                )
            out.setdefault(row["paper_id"], []).append((row["text"], row["role"]))
    return out


def corpus_roles(corpus: Path) -> Roles:
    """The labelled sentence roles of a known corpus ({} for any other corpus)."""
    for name, path in ROLE_FILES.items():
        if _same(DATASETS[name].corpus, corpus) and path.is_file():
            return load_roles(path)
    return {}
