"""Search and the HTTP API over the real sample store, through TestClient."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.retrieval.retrieve import search_papers


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


class _StalledNearest:
    """The real store, except that dense search waits until `release` is set: a
    `chroma run` server whose dense search waits behind a write."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        import threading

        self._store = store
        self.release = threading.Event()
        self.calls = 0

    def nearest(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        assert self.release.wait(60), "never released"
        return self._store.nearest(*args, **kwargs)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._store, name)


def _with_dense_deadline(settings, ms: float):  # type: ignore[no-untyped-def]
    retrieval = settings.retrieval.model_copy(update={"search_dense_timeout_ms": ms})
    return settings.model_copy(update={"retrieval": retrieval})


def test_search_with_a_dense_deadline_answers_from_bm25_marked_partial(
    sample_settings, sample_store, sample_retriever, embeddings
) -> None:
    import threading

    from rag.retrieval.retrieve import make_retriever, paper_search

    query = "shortcut learning which features networks prefer"
    stalled = _StalledNearest(sample_store)
    settings = _with_dense_deadline(sample_settings, 50.0)
    retriever = make_retriever(settings, stalled, embeddings)
    bm25 = {h.paper_id for h in search_papers(query, sample_retriever, k=50, mode="bm25")}
    hybrid = [h.paper_id for h in search_papers(query, sample_retriever, k=5, mode="hybrid")]
    try:
        first = paper_search(query, retriever, k=5)
        assert first.partial and "dense search took over 50 ms" in first.partial
        assert len(first.hits) == 5 and {h.paper_id for h in first.hits} <= bm25
        second = paper_search(query, retriever, k=5)
        assert second.partial and stalled.calls == 2
        # Both dense searches are still out: the next search does not queue a third.
        third = paper_search(query, retriever, k=5)
        assert third.partial and "still waiting" in third.partial and stalled.calls == 2
        assert [h.paper_id for h in third.hits] == [h.paper_id for h in first.hits]
        # Chat and other callers that set no deadline wait for the dense search.
        waited: list[object] = []
        t = threading.Thread(target=lambda: waited.append(retriever.retrieve(query, k=5)))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not waited
    finally:
        stalled.release.set()
    t.join(30)
    assert waited and waited[0].partial is None  # type: ignore[attr-defined]
    for _ in range(100):  # the two left-behind searches finish and free their places
        if retriever._left_behind == 0:
            break
        threading.Event().wait(0.05)
    again = paper_search(query, retriever, k=5)
    assert again.partial is None and [h.paper_id for h in again.hits] == hybrid


def test_search_endpoint_says_when_its_ranking_is_partial(
    sample_settings, sample_store, embeddings
) -> None:
    stalled = _StalledNearest(sample_store)
    settings = _with_dense_deadline(sample_settings, 50.0)
    app = create_app(settings, store=stalled, embeddings=embeddings)
    try:
        with TestClient(app) as c:
            stalled.release.set()
            r = c.get("/v1/search", params={"q": "shortcut learning", "k": 3})
            assert r.status_code == 200 and r.json()["partial"] is None
            stalled.release.clear()
            r = c.get("/v1/search", params={"q": "shortcut learning", "k": 3})
            body = r.json()
            assert r.status_code == 200 and "took over 50 ms" in body["partial"]
            assert len(body["results"]) == 3 and "Shortcut" in body["results"][0]["title"]
    finally:
        stalled.release.set()


def test_a_dense_deadline_marks_nothing_partial_when_the_store_answers_in_time(
    sample_settings, sample_store, embeddings
) -> None:
    """Concurrent searches each wait for their own dense search: only one left
    behind by its deadline counts against the others."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from rag.retrieval.retrieve import make_retriever, paper_search

    class Slow:
        def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
            self._store = store

        def nearest(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(0.2)
            return self._store.nearest(*args, **kwargs)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self._store, name)

    retriever = make_retriever(
        _with_dense_deadline(sample_settings, 20_000.0), Slow(sample_store), embeddings
    )
    queries = ["shortcut learning", "diffusion bias", "noisy labels", "sharpness", "CLIP", "MLP"]
    with ThreadPoolExecutor(6) as pool:
        found = list(pool.map(lambda q: paper_search(q, retriever, k=3), queries))
    assert all(f.partial is None and len(f.hits) == 3 for f in found)


class _EmbeddingsWith:
    """The real embeddings, with `before` called ahead of each query embedding."""

    def __init__(self, embeddings, before) -> None:  # type: ignore[no-untyped-def]
        self._embeddings = embeddings
        self._before = before

    def embed_query(self, text: str) -> list[float]:
        self._before()
        return self._embeddings.embed_query(text)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._embeddings, name)


def test_with_a_dense_deadline_bm25_runs_while_the_query_is_embedded(
    sample_settings, sample_store, embeddings, monkeypatch
) -> None:
    """The deadline's path overlaps the query's embedding with BM25: the embedding
    here cannot finish until BM25 has started (a sequential path waits out 5 s)."""
    import threading

    from rag.index.lexical import LexicalIndex
    from rag.retrieval.retrieve import make_retriever

    bm25_started = threading.Event()
    seen: list[bool] = []
    search = LexicalIndex.search

    def searching(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        bm25_started.set()
        return search(self, *args, **kwargs)

    monkeypatch.setattr(LexicalIndex, "search", searching)
    slow = _EmbeddingsWith(embeddings, lambda: seen.append(bm25_started.wait(5)))
    retriever = make_retriever(_with_dense_deadline(sample_settings, 20_000.0), sample_store, slow)
    found = retriever.retrieve("shortcut learning", k=3, dense_deadline_ms=20_000.0)
    assert seen == [True]
    assert found.partial is None and found.vector and len(found.sources) == 3


def test_a_dense_deadline_counts_from_the_search_start_the_embedding_included(
    sample_settings, sample_store, embeddings
) -> None:
    """A deadline bounds the search, not only the store's part: when the query's
    embedding alone takes longer, BM25's candidates are ranked with the index's
    vectors although the store would answer at once."""
    import time

    from rag.retrieval.retrieve import make_retriever

    slow = _EmbeddingsWith(embeddings, lambda: time.sleep(0.3))
    retriever = make_retriever(_with_dense_deadline(sample_settings, 100.0), sample_store, slow)
    late = retriever.retrieve(
        "shortcut learning which features networks prefer", k=5, dense_deadline_ms=100.0
    )
    assert late.partial and "took over 100 ms" in late.partial
    assert late.relevant and late.vector
    assert all(s.passages[0].score == s.passages[0].score for s in late.sources)  # not nan
    for _ in range(100):  # the dense search left behind finishes and frees its place
        if retriever._left_behind == 0:
            break
        time.sleep(0.05)
    assert retriever._left_behind == 0


def test_a_late_dense_search_scores_bm25s_candidates_with_the_index_vectors(
    sample_settings, sample_store, sample_retriever, embeddings
) -> None:
    """Past the deadline the dense side is not lost: BM25's candidates are scored
    with the vectors the BM25 index stores, the same cosines the store gives."""
    from rag.retrieval.retrieve import make_retriever

    query = "shortcut learning which features networks prefer"
    stalled = _StalledNearest(sample_store)
    retriever = make_retriever(_with_dense_deadline(sample_settings, 50.0), stalled, embeddings)
    try:
        late = retriever.retrieve(query, k=5, dense_deadline_ms=50.0)
    finally:
        stalled.release.set()
    assert late.partial and "BM25's candidates only" in late.partial
    assert late.relevant and late.gate["passed"]  # the gate still has its dense evidence
    full = sample_retriever.retrieve(query, k=5, mode="dense")
    real = {p.chunk_id: p.score for s in full.sources for p in s.passages}
    local = {p.chunk_id: p.score for s in late.sources for p in s.passages}
    both = set(real) & set(local)
    assert both, "no chunk in common to compare"
    assert all(abs(real[c] - local[c]) < 0.01 for c in both)  # float16 vectors


def test_an_answer_past_its_dense_deadline_is_marked_degraded(
    sample_settings, sample_store, embeddings
) -> None:
    from rag.chain import Question, build_chain

    retrieval = sample_settings.retrieval.model_copy(update={"chat_dense_timeout_ms": 50.0})
    settings = sample_settings.model_copy(update={"retrieval": retrieval})
    stalled = _StalledNearest(sample_store)
    chain = build_chain(settings, store=stalled, embeddings=embeddings)
    try:
        answer = chain.invoke(Question("Which features do networks prefer in shortcut learning?"))
        foreign = chain.invoke(Question("What is the best treatment for acute appendicitis?"))
    finally:
        stalled.release.set()
    assert not answer.refused and answer.citations
    assert answer.degraded and "dense search took over 50 ms" in (answer.degraded_reason or "")
    assert any("shortcut" in c.title.lower() for c in answer.citations)
    assert foreign.refused and foreign.degraded  # the gate still refuses off-field questions
