"""The pure parts of Ray ingestion (no Ray needed): what the stages pass each other
survives the trip unchanged, and the embedding actors' share of a cluster always
leaves room for the read and diff tasks."""

from __future__ import annotations

import pytest

from ingest.chunk import chunk_paper
from ingest.job import plan_papers
from ingest.ray_job import (
    READ_CPUS,
    actor_resources,
    paper_from_dict,
    paper_to_dict,
    plan_from_json,
    plan_to_json,
)
from rag.index.store import StoredChunk
from rag.settings import Settings
from rag.types import Paper


def _paper() -> Paper:
    return Paper(
        paper_id="10.1000/xyz#1",
        title="A title with “quotes”",
        abstract="First sentence about probes. " * 60,
        authors=("A. One", "B. Two"),
        year=2024,
        url="https://example.org/p",
        categories=("cs.LG",),
        code_links=("https://github.com/a/b",),
        extra={"doi": "10.1000/xyz"},
        notes=("url dropped: not an absolute http(s) link",),
    )


def test_papers_and_plans_survive_the_trip_between_stages() -> None:
    paper = _paper()
    back = paper_from_dict(paper_to_dict(paper))
    assert back == paper and back.notes == paper.notes
    assert back.content_hash() == paper.content_hash()
    settings = Settings()
    stale = [StoredChunk(f"{paper.paper_id}#{i}", {"paper_hash": "old"}) for i in range(9)]
    [(status, plan)] = plan_papers([paper], {paper.paper_id: stale}, settings)
    assert status == "updated" and plan is not None
    again = plan_from_json(plan_to_json(plan))
    assert again.paper == paper and again.paper_hash == plan.paper_hash
    assert again.chunks == chunk_paper(paper, settings.chunking.size, settings.chunking.overlap)
    assert again.stale_ids == plan.stale_ids and len(again.stale_ids) == 9 - len(again.chunks)


@pytest.mark.parametrize(
    ("cluster", "workers", "expected"),
    [
        ({"CPU": 2.0}, None, (1, {"num_cpus": 1.0}, 1)),
        ({"CPU": 2.0}, 2, (2, {"num_cpus": 0.75}, 1)),
        ({"CPU": 1.0}, None, (1, {"num_cpus": 0.5}, 1)),
        ({"CPU": 16.0}, None, (15, {"num_cpus": 1.0}, 1)),
        ({"CPU": 8.0, "GPU": 2.0}, None, (2, {"num_gpus": 1, "num_cpus": 0}, 1)),
    ],
)
def test_embedding_actors_leave_room_for_reads(cluster, workers, expected) -> None:
    n, resources, threads = actor_resources(cluster, workers)
    assert (n, resources, threads) == expected
    used = n * resources.get("num_cpus", 0)
    assert cluster["CPU"] - used >= READ_CPUS  # a read or diff task always fits
