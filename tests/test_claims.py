"""Claim verification (rag/claims.py, POST /v1/verify, `citeqa verify`) over a store
of a few SciFact abstracts (tests/data/scifact-fixture.jsonl) with the real
embedding model and the shipped weights."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag import claims as C
from rag.settings import Settings
from tests.helpers import sse_events

FIXTURE = Path(__file__).with_name("data") / "scifact-fixture.jsonl"
# SciFact training claims over the fixture's papers, with the paper that says so.
CONTRADICTED = (
    "There is a positive correlation between hip fractures and statin use.",
    "s2-4687948",
)
SUPPORTED = (
    "Basophils promote disease development in patients with systemic lupus erythematosus (SLE).",
    "s2-12670680",
)
OUT_OF_FIELD = "Rotary position embeddings let transformers generalize to longer sequences."


@pytest.fixture(scope="module")
def fixture_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("scifact-fixture"))


@pytest.fixture(scope="module")
def chain(fixture_settings: Settings, embeddings):  # type: ignore[no-untyped-def]
    from ingest.job import IngestJob
    from rag.chain import build_chain
    from rag.index.store import open_store

    store = open_store(fixture_settings)
    summary = IngestJob(store, embeddings, fixture_settings, progress=False).run([str(FIXTURE)])
    assert summary.added == len(FIXTURE.read_text().splitlines()) and summary.skipped == 0
    return build_chain(fixture_settings, store=store, embeddings=embeddings)


@pytest.fixture(scope="module")
def client(fixture_settings: Settings, chain) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(
        fixture_settings, store=chain.retriever.store, embeddings=chain.retriever.embeddings
    )
    with TestClient(app) as c:
        yield c


def _abstract(paper_id: str) -> str:
    for line in FIXTURE.read_text().splitlines():
        row = json.loads(line)
        if row["id"] == paper_id:
            return str(row["abstract"])
    raise KeyError(paper_id)


def assert_check(body: dict) -> None:
    """A check's shape: labels, counts and citations that quote their paper."""
    check = C.ClaimCheck.model_validate(body)
    assert check.supports == sum(p.label == C.SUPPORTS for p in check.papers)
    assert check.contradicts == sum(p.label == C.CONTRADICTS for p in check.papers)
    assert check.refused == (not check.papers)
    ns = []
    for p in check.papers:
        assert p.label in (C.SUPPORTS, C.CONTRADICTS)
        assert 1 <= len(p.citations) <= C.MAX_RATIONALE
        abstract = _abstract(p.paper_id)
        for c in p.citations:
            assert c.paper_id == p.paper_id and abstract[c.start : c.end] == c.quote and c.quote
        ns.append(p.citations[0].n)
    assert ns == list(range(1, len(ns) + 1))


# -- the cues and the models ---------------------------------------------------------


def test_cues_read_negation_direction_and_null_findings() -> None:
    assert C.cues("Statins do not reduce mortality.").negation == 1.0
    assert C.cues("Statins reduce mortality.").negation == 0.0
    assert C.cues("Exercise increases bone density.").direction == 1.0
    assert C.cues("Exercise decreases bone density.").direction == -1.0
    assert C.cues("There was no significant difference between groups.").null == 1.0
    f = C.label_features("X increases Y.", ["X decreased Y in mice."], 0.8)
    assert f["dir_clash"] == 1.0 and f["dir_agree"] == 0.0
    g = C.label_features("X increases Y.", ["X increased Y in mice."], 0.8)
    assert g["dir_agree"] == 1.0 and g["dir_clash"] == 0.0


def test_the_shipped_models_have_every_feature_and_lean_the_right_way() -> None:
    m = C.load_models()
    assert set(m.rationale.weights) == set(C.RATIONALE_FEATURES)
    assert set(m.contradicts.weights) == set(C.LABEL_FEATURES)
    assert m.rationale.threshold is not None and 0 < m.rationale.threshold < 1
    # A rationale that says the opposite of the claim reads as contradicting it more
    # than one that says the same.
    same = C.label_features("X increases Y.", ["X increased Y."], 0.9)
    opposite = C.label_features("X increases Y.", ["X decreased Y."], 0.9)
    assert m.contradicts.probability(opposite) > m.contradicts.probability(same)
    closer = C.rationale_features(
        "x",
        [C.Sentence(C.Source(1, "p", "", "ab", None, 0, 0), 0, 1, 0)] * 2,
        np.array([0.9, 0.1]),
        0,
    )
    p = m.rationale.probabilities(closer)
    assert p[0] > p[1]


def test_verdict_counts_both_sides() -> None:
    src = C.Source(1, "p", "t", "a.", None, 0.0, 0.0)
    s = C.Sentence(src, 0, 2, 0)
    js = [C.PaperJudgement(src, C.SUPPORTS, 0.1, (s,))] * 3 + [
        C.PaperJudgement(src, C.CONTRADICTS, 0.9, (s,))
    ]
    assert C.verdict(js) == "3 papers support it, 1 paper contradicts it."
    assert C.verdict([]).startswith("Not enough information")


# -- the function over a real store -----------------------------------------------------


def test_a_contradicted_claim_returns_the_contradicting_paper_with_its_sentence(chain) -> None:
    claim, paper = CONTRADICTED
    check = C.check_claim(claim, chain.retriever, chain.encoder)
    assert_check(check.to_json())
    found = {p.paper_id: p for p in check.papers}
    assert paper in found and found[paper].label == C.CONTRADICTS
    assert "contradict" in check.verdict


def test_a_supported_claim_returns_the_supporting_paper(chain) -> None:
    claim, paper = SUPPORTED
    check = C.check_claim(claim, chain.retriever, chain.encoder)
    found = {p.paper_id: p for p in check.papers}
    assert paper in found and found[paper].label == C.SUPPORTS


def test_a_claim_outside_the_field_is_refused(chain) -> None:
    check = C.check_claim(OUT_OF_FIELD, chain.retriever, chain.encoder)
    assert check.refused and not check.papers and check.label == C.NEI
    assert check.verdict == C.REFUSAL


# -- the HTTP API -------------------------------------------------------------------------


def test_verify_json(client: TestClient) -> None:
    r = client.post("/v1/verify", json={"claim": CONTRADICTED[0]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_check(body)
    assert CONTRADICTED[1] in {p["paper_id"] for p in body["papers"]}


def test_verify_stream_sends_papers_then_done(client: TestClient) -> None:
    r = client.post("/v1/verify", json={"claim": CONTRADICTED[0], "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1][0] == "done"
    done = json.loads(events[-1][1])
    assert_check(done)
    papers = [json.loads(d) for name, d in events if name == "paper"]
    assert [p["paper_id"] for p in papers] == [p["paper_id"] for p in done["papers"]]


def test_verify_refusal_over_http(client: TestClient) -> None:
    body = client.post("/v1/verify", json={"claim": OUT_OF_FIELD}).json()
    assert body["refused"] is True and body["papers"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"claim": ""}, "claim"),
        ({"claim": "   "}, "claim"),
        ({"claim": "x" * 4001}, "claim"),
        ({}, "claim"),
        ({"claim": "x", "colour": "blue"}, "colour"),
        ({"claim": "x", "top_k": 0}, "top_k"),
        ({"claim": "x", "filters": {"year_min": "old"}}, "filters.year_min"),
        ({"claim": "x", "filters": {"shelf": 3}}, "filters.shelf"),
    ],
)
def test_bad_verify_requests_get_a_422_json_error(client: TestClient, body, param) -> None:
    r = client.post("/v1/verify", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_verify_is_documented_with_an_example(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/verify" in schema["paths"]
    assert schema["components"]["schemas"]["ClaimRequest"].get("examples")
    assert "ClaimCheck" in schema["components"]["schemas"]
