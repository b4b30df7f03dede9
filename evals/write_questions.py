"""Questions in a reader's own words, written by the local reader model from the dev
abstracts: training questions for the fast path that no test set's text went into.

For each paper of a dev set (every paper of the sample's corpus; for PubMedQA, the
papers its dev questions are about, so the papers of the questions kept apart are
never read), the model reads the title and abstract and writes one question that
the paper's findings answer, in the words of someone who has not read it.
Decoding is greedy, so a rerun writes the same questions. Each becomes one JSON
line in `evals/data/reader_questions/<model>-<dataset>.jsonl`, in the dev sets'
question shape (`id`, `question`, `gold_paper_ids`, `kind`: "single") plus how it
was made (the model's reply, the model, its sha256, the prompt's hash, seconds);
a reply that is not one question goes to `<model>-<dataset>.rejected.jsonl`. Rows
are appended and flushed one by one; a rerun skips the papers either file holds.

    nice -n 10 python -m evals.write_questions --model qwen-1.5b --datasets sample [--limit N]

The questions are the `<dataset>-written` datasets of evals/dataset.py, read by
the teacher (`python -m evals.teach --datasets sample-written`) like the dev sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evals.dataset import DATASETS, WRITTEN, DatasetError, load_dataset, named, subset

QUESTIONS = WRITTEN
SOURCES = ("sample", "pubmedqa")
"""The dev sets whose papers questions are written from."""

SYSTEM = (
    "You help test a search engine for research papers. Researchers type questions in "
    "their own plain words: they have not read the paper, so they do not know its "
    "title, its method's name or its terms. You read one paper and write such a question."
)
INSTRUCTION = (
    "Write one question, in plain everyday words, that this paper's results answer, as "
    "a researcher who has never seen the paper would type it into a search box. Do not "
    "use the title, any name the paper gives its method, model or dataset, or any run of "
    "three words from the abstract, and do not say 'this paper', 'the study' or 'the "
    "authors'. Reply with the question only, on one line."
)
EXAMPLE = (
    "Title: Spectral Dropout Regularizes Wide Residual Networks\n\nAbstract: We propose "
    "Spectral Dropout, which removes the smallest singular directions of each layer's "
    "weights during training. On CIFAR-10 it lowers test error of wide residual networks "
    "by 1.2 points and halves the gap between training and test loss.",
    "Does throwing away a layer's weakest weight patterns while training stop image "
    "classifiers from overfitting?",
)
"""One worked example (made up, in no corpus): the shape of question wanted."""
MAX_ABSTRACT_CHARS = 3000
MAX_TOKENS = 60


def prompt_version() -> str:
    """A short hash of the prompt: questions written with another prompt differ."""
    return hashlib.sha256((SYSTEM + INSTRUCTION + "".join(EXAMPLE)).encode()).hexdigest()[:10]


def messages(title: str, abstract: str) -> list[dict[str, str]]:
    text = abstract[:MAX_ABSTRACT_CHARS]
    shown, asked = EXAMPLE
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{shown}\n\n{INSTRUCTION}"},
        {"role": "assistant", "content": asked},
        {"role": "user", "content": f"Title: {title}\n\nAbstract: {text}\n\n{INSTRUCTION}"},
    ]


_WORD = re.compile(r"[a-z0-9]+")


def borrowed_runs(question: str, title: str, abstract: str) -> int:
    """How many of the question's three-word runs appear in the title or abstract (the
    paraphrased test sets have none): how far the question is from a reader's own words."""

    def runs(text: str) -> set[tuple[str, ...]]:
        w = _WORD.findall(text.lower())
        return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}

    return len(runs(question) & runs(f"{title} {abstract}"))


_LEAD = re.compile(r"^\s*(?:question\s*:|q\s*:|\d+[.)])\s*", re.IGNORECASE)


def clean(text: str) -> str | None:
    """The model's reply as one question, or None when it is not one: the first line,
    without a "Question:" lead or quotes; it must end with "?" and hold 4-40 words."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = _LEAD.sub("", line).strip().strip("\"'*` ").strip()
    words = line.split()
    if not line.endswith("?") or not 4 <= len(words) <= 40:
        return None
    return line


def papers(name: str, limit: int | None) -> list[Any]:
    """The papers questions are written from for dev set `name` (see the module doc)."""
    from ingest.loaders import Skipped, load

    if name not in SOURCES:
        raise DatasetError(f"questions are written from the dev sets {', '.join(SOURCES)} only")
    d = named(name)
    found = [p for _, p in load(str(d.corpus)) if not isinstance(p, Skipped)]
    if name == "pubmedqa":
        asked = {g for r in load_dataset(d.questions) for g in r["gold_paper_ids"]}
        found = [p for p in found if p.paper_id in asked]
    return subset(found, limit)


def rejected(path: Path) -> Path:
    return path.with_suffix(".rejected.jsonl")


def done_ids(path: Path) -> set[str]:
    """The papers a questions file (or its rejected replies) holds; a torn last line
    is ignored (written again)."""
    ids: set[str] = set()
    for p in (path, rejected(path)):
        if not p.is_file():
            continue
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                ids.add(json.loads(line)["gold_paper_ids"][0])
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                continue
    return ids


def _append(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="utf-8") as f:
        if torn:  # a run killed mid-write: its half line stays alone on its line
            f.write("\n")
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write(llm: Any, todo: list[Any], path: Path, meta: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Writes a question for each paper (`llm`: a llama_cpp.Llama) and appends its row
    to `path`, or to `rejected(path)` when the reply is not one question (so that
    paper is not asked again); yields the rows."""
    for paper in todo:
        t0 = time.monotonic()
        out = llm.create_chat_completion(
            messages=messages(paper.title, paper.abstract),
            max_tokens=MAX_TOKENS,
            temperature=0.0,
        )
        reply = out["choices"][0]["message"]["content"] or ""
        question = clean(reply)
        row = {
            "id": f"w-{paper.paper_id}",
            "question": question,
            "gold_paper_ids": [paper.paper_id],
            "kind": "single",
            "borrowed_runs": None
            if question is None
            else borrowed_runs(question, paper.title, paper.abstract),
            "reply": reply.strip()[:500],
            "seconds": round(time.monotonic() - t0, 3),
            **meta,
        }
        _append(path if question else rejected(path), row)
        yield row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.write_questions", description=__doc__)
    parser.add_argument("--model", default="qwen-1.5b", help="a rag.reader.models name")
    parser.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(DATASETS))
    parser.add_argument("--limit", type=int, default=None, help="papers per dataset (seeded)")
    parser.add_argument("--out", type=Path, default=QUESTIONS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gguf", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from rag.reader.llamacpp import load_model
    from rag.reader.models import MODELS, model_path
    from rag.settings import get_settings

    if args.gguf is None and args.model not in MODELS:
        print(f"error: unknown model {args.model!r} ({', '.join(MODELS)})", file=sys.stderr)
        return 2
    gguf = args.gguf or model_path(args.model, get_settings().data_dir)
    if not gguf.is_file():
        print(
            f"error: {gguf} is missing: make reader-model READER_MODEL={args.model}",
            file=sys.stderr,
        )
        return 2
    try:
        todo = {name: papers(name, args.limit) for name in args.datasets}
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    llm = load_model(str(gguf), 2048, args.threads, False).llm
    meta = {
        "model": args.model,
        "model_sha256": MODELS[args.model].sha256[:16] if args.model in MODELS else None,
        "prompt": prompt_version(),
    }
    for name, found in todo.items():
        path = args.out / f"{args.model}-{name}.jsonl"
        done = done_ids(path)
        left = [p for p in found if p.paper_id not in done]
        print(f"{name}: {len(done)} papers written before; {len(left)} to write -> {path}")
        t0 = time.monotonic()
        for i, row in enumerate(write(llm, left, path, meta), 1):
            if i % 10 == 0 or i == len(left):
                rate = (time.monotonic() - t0) / i
                print(f"{name}: {i}/{len(left)}, {rate:.1f} s each: {row['question']}", flush=True)
    return 0


if __name__ == "__main__":
    os.nice(10)  # hours on a shared machine: everything else goes first
    raise SystemExit(main())
