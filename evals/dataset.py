"""The dev set: questions over the sample corpus with their gold papers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEV_SET = Path(__file__).resolve().parent / "data" / "dev.jsonl"
KINDS = {"single", "multi", "fact", "unanswerable"}


def load_dataset(path: Path = DEV_SET) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"id", "question", "gold_paper_ids", "kind"} - row.keys()
            if missing or row["kind"] not in KINDS:
                raise ValueError(
                    f"{path}:{number}: bad row (missing {missing or 'nothing'}, "
                    f"kind {row.get('kind')!r})"
                )
            rows.append(row)
    return rows
