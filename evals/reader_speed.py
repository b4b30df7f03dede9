"""How fast a reader model reads, and whether it prefers the gold paper, on a few
sample dev pairs: (question, its gold paper) and (question, an unrelated paper).

    python -m evals.reader_speed .citeqa/models/qwen-1.5b.gguf [--threads 1] [--questions 3]
"""

from __future__ import annotations

import argparse
import time

from evals.dataset import DEV_SET, load_dataset
from evals.run import corpus
from rag.reader import make_reader
from rag.settings import SAMPLE_CORPUS, Settings
from rag.types import Source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.reader_speed")
    parser.add_argument("model", help="a GGUF path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--questions", type=int, default=3)
    args = parser.parse_args(argv)
    papers = corpus(SAMPLE_CORPUS)
    ids = list(papers)
    rows = [r for r in load_dataset(DEV_SET) if r["kind"] == "single"][: args.questions]
    t0 = time.perf_counter()
    reader = make_reader(Settings(reader={"model": args.model, "threads": args.threads}))  # type: ignore[arg-type]
    reader._model()  # type: ignore[attr-defined]
    print(f"load {time.perf_counter() - t0:.2f} s", flush=True)
    seconds = []
    for row in rows:
        gold = papers[row["gold_paper_ids"][0]]
        other = papers[ids[(ids.index(gold.paper_id) + 7) % len(ids)]]
        for p, kind in ((gold, "gold"), (other, "other")):
            src = Source(1, p.paper_id, p.title, p.abstract, None, 0.0, 0.0)
            res = reader.read(row["question"], src)
            seconds.append(res.seconds)
            label = res.sentence.label if res.sentence else None
            print(
                f"{row['id']} {kind} p={res.p_answers:.3f} sentence={label} "
                f"tokens={res.detail['prompt_tokens']} {res.seconds:.2f} s",
                flush=True,
            )
    print(f"mean {sum(seconds) / len(seconds):.2f} s/pair", flush=True)


if __name__ == "__main__":
    main()
