"""Search and the HTTP API over the real sample store, through TestClient."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.retrieve import search_papers


@pytest.fixture(scope="module")
def client(sample_settings, sample_store, embeddings):  # type: ignore[no-untyped-def]
    app = create_app(sample_settings, store=sample_store, embeddings=embeddings)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    ("query", "expected_title_start"),
    [
        ("neural implicit surface reconstruction of indoor scenes", "HelixSurf"),
        ("how much inductive bias does a task need", "Towards Exact Computation of Inductive Bias"),
        ("low-light image enhancement with noise", "NoiSER"),
    ],
)
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_search_finds_the_paper(sample_retriever, query, expected_title_start, mode) -> None:
    hits = search_papers(query, sample_retriever, k=5, mode=mode)
    assert hits[0].title.startswith(expected_title_start)
    assert len({h.paper_id for h in hits}) == len(hits) == 5  # one row per paper
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_endpoint_shape(client: TestClient) -> None:
    r = client.get("/v1/search", params={"q": "shortcut learning", "k": 3})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 3
    for item in results:
        assert {"paper_id", "title", "score", "snippet"} <= item.keys()
        assert item["snippet"] and -1.0 <= item["score"] <= 1.0
    assert "Shortcut" in results[0]["title"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"q": ""}, "q"),
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "k": 51}, "k"),
        ({}, "q"),
        ({"q": "x", "k": "many"}, "k"),
    ],
)
def test_search_rejects_bad_parameters_with_a_json_error(client: TestClient, params, param) -> None:
    r = client.get("/v1/search", params=params)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_health_and_readiness(client: TestClient, sample_store) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["store"]["papers"] == 61
    assert body["store"]["chunks"] == sample_store.count()


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
