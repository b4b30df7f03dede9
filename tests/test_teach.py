"""The teacher (evals/teach.py): dev sets only, and a run resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.dataset import DATASETS, DatasetError
from evals.teach import TUNED, done_keys, pairs


def test_the_teacher_reads_dev_sets_only(tmp_path: Path) -> None:
    held_out = [name for name, d in DATASETS.items() if not d.tuned]
    assert held_out and not set(held_out) & set(TUNED)
    for name in held_out:
        with pytest.raises(DatasetError, match="held-out test set"):
            pairs(name, tmp_path, limit=1)


def test_done_pairs_are_skipped_and_a_torn_last_line_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    assert done_keys(path) == set()
    rows = [
        {"dataset": "sample", "qid": f"d{i}", "paper_id": "p", "p_answers": 0.5} for i in (1, 2)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"dataset": "sample", "qid"')
    assert done_keys(path) == {("sample", "d1", "p"), ("sample", "d2", "p")}
