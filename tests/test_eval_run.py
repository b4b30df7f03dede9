"""`citeqa eval` end to end on a three-question dataset: both configurations,
all three reports, figures that follow from the answers."""

from __future__ import annotations

import json
import sys

import pytest

from evals.run import evaluate
from tests.helpers import SAMPLE

pytestmark = pytest.mark.slow


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
    dataset = tmp_path / "tiny.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": i, "question": q, "gold_paper_ids": g, "kind": k}) + "\n"
            for i, q, g, k in rows
        )
    )
    out = tmp_path / "reports"
    report = evaluate(dataset, "extractive", out)

    assert {p.name for p in out.iterdir()} == {"eval.json", "eval.md", "eval.png"}
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "eval.json").read_text())
    assert saved["dataset"]["questions"] == 3 and len(saved["dataset"]["sha256"]) == 16
    ours, base = saved["configs"]["citeqa"], saved["configs"]["baseline"]
    assert set(ours["retrieval"]) == {"bm25", "dense", "hybrid"} and set(base["retrieval"]) == {
        "dense"
    }
    assert ours["settings_hash"] != base["settings_hash"]
    # The gate refuses the bread question; the tutorial pipeline answers it anyway.
    assert ours["answers"]["refusal_recall"] == 1.0 and ours["answers"]["wrong_refusals"] == 0
    assert base["answers"]["answered_uncovered"] == 1
    assert ours["answers"]["citation_validity"] == 1.0
    for stage in ("retrieve", "generate", "total"):
        assert ours["latency"][stage]["p50_ms"] > 0
    assert "| citation validity |" in (out / "eval.md").read_text()
    assert report["configs"]["citeqa"]["questions"][2]["refused"] is True
    # The optional LLM judge is never imported by default.
    assert "ragas" not in sys.modules and "evals.judge" not in sys.modules
