"""The teacher: the reader labels (question, candidate paper) pairs of the dev sets.

For each dev question (the tuned datasets of evals/dataset.py only; a held-out
test set is refused), retrieval runs as in `/v1/chat` (k papers, `set_k` for a
question about a set of papers) and the reader reads each retrieved paper.
Each pair becomes one JSON line in `evals/data/reader_labels/<model>.jsonl`:
the question's dataset, id, kind and intent, the paper, its retrieval rank,
whether it is a gold paper, and the reader's P(answers), supporting sentence
and seconds. Rows are appended and flushed one by one; a run skips the pairs
its file already holds, so a stopped run resumes where it was. Pairs are read
paper by paper, so the local model reuses a paper's evaluated prompt prefix.

    nice -n 10 python -m evals.teach --model qwen-0.5b [--datasets sample] [--limit 40]

These labels are what the gate and the answerability model are to be refitted
on (docs/reader.md); this script only makes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evals.dataset import DATASETS, DatasetError, available, load_dataset, named, subset

LABELS = Path(__file__).resolve().parent / "data" / "reader_labels"
TUNED = tuple(name for name, d in DATASETS.items() if d.tuned)


def prompt_version() -> str:
    """A short hash of the reader's prompt: labels made with another prompt differ."""
    import inspect

    from rag import reader

    text = reader.SYSTEM + inspect.getsource(reader.messages)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def done_keys(path: Path) -> set[tuple[str, str, str]]:
    """The (dataset, question id, paper id) pairs a labels file holds; a torn last
    line (a run killed mid-write) is ignored and read again."""
    keys: set[tuple[str, str, str]] = set()
    if not path.is_file():
        return keys
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        keys.add((row["dataset"], row["qid"], row["paper_id"]))
    return keys


def pairs(name: str, out: Path, limit: int | None) -> list[dict[str, Any]]:
    """The dataset's (question, retrieved paper) pairs, with the paper itself."""
    from evals.run import CiteQA, _store_dir, file_hash
    from rag.answer.answerable import intent
    from rag.encode.embeddings import make_embeddings
    from rag.settings import Settings

    if name in DATASETS and not DATASETS[name].tuned:  # before its text is even looked for
        raise DatasetError(f"'{name}' is a held-out test set: the teacher reads dev sets only")
    d = named(name)
    rows = subset(load_dataset(d.questions), limit)
    found = []
    with _store_dir(out, file_hash(d.corpus), True) as store_dir:
        settings = Settings(data_dir=Path(store_dir), llm="extractive")
        config = CiteQA(settings, make_embeddings(settings), d.corpus)
        cfg = settings.retrieval
        for r in rows:
            set_q = intent(r["question"]) == "set"
            got = config.chain.retriever.retrieve(
                r["question"], k=max(cfg.k, cfg.set_k) if set_q else cfg.k
            )
            for rank, src in enumerate(got.sources):
                found.append(
                    {
                        "dataset": name,
                        "corpus": d.field,
                        "qid": r["id"],
                        "question": r["question"],
                        "kind": r["kind"],
                        "intent": "set" if set_q else "single",
                        "paper_id": src.paper_id,
                        "rank": rank,
                        "gold": src.paper_id in r["gold_paper_ids"],
                        "gate_passed": bool(got.relevant),
                        "gate_score": got.gate.get("score"),
                        "source": src,
                    }
                )
    return found


def label(
    reader: Any, todo: list[dict[str, Any]], path: Path, meta: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Reads each pair and appends its row to `path`; yields the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a", encoding="utf-8") as f:
        if torn:  # a run killed mid-write: its half line stays alone on its line
            f.write("\n")
        for pair in todo:
            src = pair["source"]
            result = reader.read(pair["question"], src)
            s = result.sentence
            row = {k: v for k, v in pair.items() if k != "source"}
            row |= {
                "p_answers": round(result.p_answers, 6),
                "sentence": None if s is None else {"start": s.start, "end": s.end},
                "seconds": round(result.seconds, 3),
                "prompt_tokens": result.detail.get("prompt_tokens"),
                **meta,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            yield row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.teach", description=__doc__)
    parser.add_argument("--model", default="qwen-0.5b", help="a rag.reader.models name")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=[n for n in TUNED if available(n)],
        choices=list(DATASETS),
        help="default: every dev set that is there, the reader's own questions included "
        "(evals.write_questions)",
    )
    parser.add_argument("--limit", type=int, default=None, help="questions per dataset (seeded)")
    parser.add_argument("--max-pairs", type=int, default=None, help="stop after this many reads")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="store cache dir")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    os.nice(10)  # a long run on a shared machine yields to everything else

    from rag.reader.llamacpp import LlamaCppReader
    from rag.reader.models import MODELS, model_path
    from rag.settings import ReaderSettings, Settings, get_settings

    if args.model not in MODELS:
        print(f"error: unknown model {args.model!r} ({', '.join(MODELS)})", file=sys.stderr)
        return 2
    gguf = model_path(args.model, get_settings().data_dir)
    if not gguf.is_file():
        print(
            f"error: {gguf} is missing: make reader-model READER_MODEL={args.model}",
            file=sys.stderr,
        )
        return 2
    settings = Settings(reader=ReaderSettings(model=str(gguf), threads=args.threads))
    reader = LlamaCppReader(settings)
    path = args.labels / f"{args.model}.jsonl"
    meta = {
        "reader": "llamacpp",
        "model": args.model,
        "model_sha256": MODELS[args.model].sha256[:16],
        "prompt": prompt_version(),
    }
    done = done_keys(path)
    try:
        todo = [
            p
            for name in args.datasets
            for p in pairs(name, args.out, args.limit)
            if (p["dataset"], p["qid"], p["paper_id"]) not in done
        ]
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo.sort(key=lambda p: (p["dataset"], p["paper_id"], p["qid"]))  # a paper's reads together
    if args.max_pairs is not None:
        todo = todo[: args.max_pairs]
    print(f"{len(done)} pairs labelled before; {len(todo)} to read -> {path}", flush=True)
    t0 = time.monotonic()
    for i, row in enumerate(label(reader, todo, path, meta), 1):
        if i % 10 == 0 or i == len(todo):
            rate = (time.monotonic() - t0) / i
            print(
                f"{i}/{len(todo)} pairs, {rate:.2f} s/pair (last p={row['p_answers']:.3f} "
                f"gold={row['gold']})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
