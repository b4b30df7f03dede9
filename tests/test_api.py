"""The HTTP API in-process (TestClient) over the real sample store: shapes,
streaming, limits, auth, papers, uploads, metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.index.store import StoreUnavailable
from rag.settings import ApiSettings, Settings
from rag.warmup import settle_heap
from tests.helpers import sse_events

COVERED = "How do randomized tree ensembles regulate the smoothness of their predictions?"
UNCOVERED = "What is the best recipe for sourdough bread with a rye starter?"
ASK_KEYS = {"answer", "citations", "refused", "degraded", "timings"}


def make_client(settings: Settings, store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, store=store, embeddings=embeddings)) as c:
        yield c


@pytest.fixture(scope="module")
def client(sample_settings, sample_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    yield from make_client(sample_settings, sample_store, embeddings)


def assert_error(r, status: int, param: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


def assert_citations_resolve(client: TestClient, body: dict) -> None:
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    assert markers == {c["n"] for c in body["citations"]}
    for c in body["citations"]:
        paper = client.get(f"/v1/papers/{c['paper_id']}").json()
        assert paper["abstract"][c["start"] : c["end"]] == c["quote"]
        assert paper["title"] == c["title"]


# -- chat ---------------------------------------------------------------------------


def test_chat_json_has_the_ask_shape_and_valid_citations(client: TestClient) -> None:
    r = client.post("/v1/chat", json={"question": COVERED})
    assert r.status_code == 200
    body = r.json()
    assert ASK_KEYS <= body.keys()
    assert not body["refused"] and body["citations"]
    assert body["citations"][0]["title"].startswith("Why do Random Forests Work?")
    assert_citations_resolve(client, body)


def test_chat_stream_sends_tokens_then_citations_then_done(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat", json={"question": COVERED, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    names = [n for n, _ in events]
    assert names[0] == "token" and names[-2:] == ["citations", "done"]
    assert set(names[:-2]) == {"token"}
    streamed = "".join(json.loads(d)["text"] for n, d in events if n == "token")
    done = json.loads(events[-1][1])
    assert json.loads(events[-2][1])["citations"] == done["citations"]
    assert done["answer"] and streamed.strip()
    # Without a model in the loop, the verified answer is the streamed draft.
    plain = client.post("/v1/chat", json={"question": COVERED}).json()
    assert done["answer"] == plain["answer"]
    assert_citations_resolve(client, done)


def test_follow_up_question_uses_the_conversation(client: TestClient) -> None:
    first = client.post("/v1/chat", json={"question": COVERED}).json()
    r = client.post(
        "/v1/chat",
        json={
            "messages": [
                {"role": "user", "content": COVERED},
                {"role": "assistant", "content": first["answer"]},
                {"role": "user", "content": "Does that challenge variance reduction?"},
            ]
        },
    )
    body = r.json()
    assert r.status_code == 200 and not body["refused"]
    assert COVERED in (body["standalone_question"] or "")
    assert body["citations"][0]["title"].startswith("Why do Random Forests Work?")


def test_uncovered_question_is_refused_over_http(client: TestClient) -> None:
    body = client.post("/v1/chat", json={"question": UNCOVERED}).json()
    assert body["refused"] and body["citations"] == [] and "[" not in body["answer"]


# -- OpenAI wire format (in-process; the real SDK runs in test_api_e2e) ---------------


def test_completions_carry_references_and_citations(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "citeqa", "messages": [{"role": "user", "content": COVERED}]},
    )
    assert r.status_code == 200
    body = r.json()
    text = body["choices"][0]["message"]["content"]
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
    assert "References:" in text and body["citations"]
    for c in body["citations"]:
        assert f"[{c['n']}] {c['title']}" in text


def test_completions_errors_use_the_openai_body(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
    )
    assert assert_error(r, 404, "model")["code"] == "model_not_found"
    r = client.post("/v1/chat/completions", json={"model": "citeqa", "messages": []})
    assert_error(r, 422, "messages")
    r = client.post(
        "/v1/chat/completions",
        json={"model": "citeqa", "messages": [{"role": "assistant", "content": "hi"}]},
    )
    assert_error(r, 422, "messages")


def test_models_lists_citeqa(client: TestClient) -> None:
    ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert {"citeqa", "citeqa-extractive"} <= ids


# -- limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"question": COVERED, "colour": "blue"}, "colour"),
        ({}, None),
        ({"question": "a", "messages": [{"role": "user", "content": "b"}]}, None),
        ({"messages": [{"role": "assistant", "content": "b"}]}, None),
        ({"messages": [{"role": "robot", "content": "b"}]}, "messages.0.role"),
        ({"question": "x" * 4001}, "question"),
        ({"question": "   "}, "question"),
        ({"question": COVERED, "top_k": 0}, "top_k"),
        ({"question": COVERED, "top_k": 21}, "top_k"),
        ({"question": COVERED, "llm": "gpt"}, "llm"),
        ({"question": COVERED, "filters": {"year_min": "old"}}, "filters.year_min"),
    ],
)
def test_bad_chat_requests_get_a_422_json_error(client: TestClient, body, param) -> None:
    assert_error(client.post("/v1/chat", json=body), 422, param)


def test_too_many_messages(client: TestClient) -> None:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 40
    messages.append({"role": "user", "content": COVERED})
    assert_error(client.post("/v1/chat", json={"messages": messages}), 422, "messages")


def test_body_too_large_is_413(client: TestClient) -> None:
    big = json.dumps({"question": "x" * 300_000})
    r = client.post("/v1/chat", content=big, headers={"content-type": "application/json"})
    assert_error(r, 413)


def test_not_json_is_a_422(client: TestClient) -> None:
    r = client.post("/v1/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(r, 422)


def test_rate_limit_is_429_with_retry_after(sample_settings, sample_store, embeddings) -> None:
    settings = sample_settings.model_copy(update={"api": ApiSettings(rate_limit="3/minute")})
    for c in make_client(settings, sample_store, embeddings):
        codes = [c.get("/v1/search", params={"q": "trees"}).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = c.get("/v1/search", params={"q": "trees"})
        assert_error(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        # Another client (another key) has its own budget; health is never limited.
        assert c.get("/healthz").status_code == 200


def test_store_outage_is_503_json(client: TestClient, sample_store, monkeypatch) -> None:
    def down(*_a, **_k):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("Chroma at test did not answer: connection refused")

    monkeypatch.setattr(sample_store, "nearest", down)
    for body in ({"question": COVERED}, {"question": COVERED, "stream": True}):
        err = assert_error(client.post("/v1/chat", json=body), 503)
        assert err["code"] == "store_unavailable"


# -- auth --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(sample_settings, sample_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = sample_settings.model_copy(
        update={"api_keys": [_secret("reader-key")], "admin_key": _secret("admin-key")}
    )
    yield from make_client(settings, sample_store, embeddings)


def _secret(value: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    return SecretStr(value)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/v1/search", {"params": {"q": "trees"}}),
        ("POST", "/v1/chat", {"json": {"question": COVERED}}),
        ("GET", "/v1/papers", {}),
        ("GET", "/v1/models", {}),
    ],
)
def test_reads_need_a_key_when_keys_are_set(locked: TestClient, method, path, kwargs) -> None:
    err = assert_error(locked.request(method, path, **kwargs), 401)
    assert err["type"] == "authentication_error"
    assert_error(locked.request(method, path, headers=bearer("wrong"), **kwargs), 401)
    assert locked.request(method, path, headers=bearer("reader-key"), **kwargs).status_code == 200
    assert locked.request(method, path, headers=bearer("admin-key"), **kwargs).status_code == 200
    assert locked.get("/healthz").status_code == 200


def test_writes_need_the_admin_key(locked: TestClient) -> None:
    path = "/v1/papers/no-such-paper"
    assert_error(locked.delete(path), 401)
    assert_error(locked.delete(path, headers=bearer("wrong")), 401)
    assert_error(locked.delete(path, headers=bearer("reader-key")), 403)
    assert_error(locked.delete(path, headers=bearer("admin-key")), 404)  # authorized


def test_writes_are_off_without_an_admin_key(client: TestClient) -> None:
    err = assert_error(client.delete("/v1/papers/x", headers=bearer("anything")), 403)
    assert "CITEQA_ADMIN_KEY" in err["message"]


# -- papers and uploads -------------------------------------------------------------


def test_papers_are_paged_and_shown(client: TestClient, sample_store) -> None:
    first = client.get("/v1/papers", params={"limit": 25}).json()
    second = client.get("/v1/papers", params={"limit": 25, "offset": 25}).json()
    last = client.get("/v1/papers", params={"limit": 25, "offset": 50}).json()
    ids = [p["paper_id"] for page in (first, second, last) for p in page["papers"]]
    assert len(ids) == len(set(ids)) == sample_store.paper_count()
    assert first["next_offset"] == 25 and last["next_offset"] is None
    paper = client.get(f"/v1/papers/{ids[0]}").json()
    assert paper["abstract"] and paper["n_chunks"] >= 1
    assert_error(client.get("/v1/papers/no-such-paper"), 404, "paper_id")
    assert_error(client.get("/v1/papers", params={"limit": 0}), 422, "limit")


def test_upload_ingests_reports_bad_lines_and_delete_removes(tmp_path, embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "store", admin_key=_secret("adm"))
    lines = [
        json.dumps(
            {
                "id": "2401.00001",
                "title": "Sparse Widgets",
                "abstract": "We study sparse widget networks and show they converge twice as fast.",
            }
        ),
        "{broken json",
        json.dumps({"id": "2401.00002", "title": "", "abstract": "No title here."}),
    ]
    payload = ("\n".join(lines) + "\n").encode()
    for c in make_client(settings, None, embeddings):
        r = c.post("/v1/ingest", files={"file": ("mine.jsonl", payload)}, headers=bearer("adm"))
        assert r.status_code == 200, r.text
        summary = r.json()
        assert summary["added"] == 1 and summary["skipped"] == 2
        assert [(e["file"], e["line"]) for e in summary["errors"]] == [
            ("mine.jsonl", 2),
            ("mine.jsonl", 3),
        ]
        assert c.get("/v1/papers/2401.00001").json()["title"] == "Sparse Widgets"
        hits = c.get("/v1/search", params={"q": "sparse widget networks"}).json()["results"]
        assert hits[0]["paper_id"] == "2401.00001"  # BM25 and dense both see it now
        err = assert_error(
            c.post("/v1/ingest", files={"file": ("x.pdf", b"%PDF")}, headers=bearer("adm")), 400
        )
        assert err["param"] == "format"
        assert c.delete("/v1/papers/2401.00001", headers=bearer("adm")).json()["chunks"] == 1
        assert_error(c.get("/v1/papers/2401.00001"), 404)
        assert c.get("/v1/search", params={"q": "sparse widget networks"}).json()["results"] == []


def test_a_paper_id_with_a_slash_is_shown_and_deleted(tmp_path, embeddings) -> None:
    """Old-style arXiv ids hold a slash. GET and DELETE take the id raw or with the
    slash as %2F (what the page's encodeURIComponent sends)."""
    settings = Settings(data_dir=tmp_path / "store", admin_key=_secret("adm"))
    old_style = "hep-th/9901001"
    record = {
        "id": old_style + "v2",
        "title": "Casimir Energy of Compact Extra Dimensions",
        "abstract": "We compute the Casimir energy of compact extra dimensions with zeta "
        "function regularization and find it stabilizes the radion.",
    }
    payload = (json.dumps(record) + "\n").encode()
    for c in make_client(settings, None, embeddings):
        r = c.post("/v1/ingest", files={"file": ("old.jsonl", payload)}, headers=bearer("adm"))
        assert r.status_code == 200 and r.json()["added"] == 1, r.text
        for path in ("/v1/papers/hep-th/9901001", "/v1/papers/hep-th%2F9901001"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.json()["paper_id"] == old_style
            assert r.json()["url"] == "https://arxiv.org/abs/hep-th/9901001"
        listed = c.get("/v1/papers").json()["papers"]
        assert [p["paper_id"] for p in listed] == [old_style]
        assert_error(c.get("/v1/papers/hep-th"), 404, "paper_id")  # no prefix match
        r = c.delete("/v1/papers/hep-th%2F9901001", headers=bearer("adm"))
        assert r.status_code == 200, r.text
        assert r.json() == {"deleted": old_style, "chunks": 1}
        assert_error(c.get("/v1/papers/hep-th/9901001"), 404, "paper_id")
        assert_error(c.delete("/v1/papers/hep-th/9901001", headers=bearer("adm")), 404)


def test_papers_keep_the_ids_their_records_give(tmp_path, embeddings) -> None:
    """A DOI (with its slash) and a PubMed id given in the upload are the papers' ids:
    listed, shown, searched, cited, updated and deleted by them."""
    settings = Settings(data_dir=tmp_path / "store", admin_key=_secret("adm"))
    doi, pmid = "10.1000/xyz.42", "pmid12345"
    records = [
        {
            "id": doi,
            "title": "Ferrofluid Droplet Robots",
            "abstract": "Ferrofluid droplet robots split and merge under magnetic fields. "
            "They carry cargo through narrow channels ten times faster than rigid robots.",
        },
        {
            "id": pmid,
            "title": "Sleep Spindles and Memory",
            "abstract": "Sleep spindles predict overnight memory consolidation in adults.",
        },
    ]

    def upload(c: TestClient, rows: list[dict]) -> dict:
        payload = "".join(json.dumps(r) + "\n" for r in rows).encode()
        r = c.post("/v1/ingest", files={"file": ("mine.jsonl", payload)}, headers=bearer("adm"))
        assert r.status_code == 200, r.text
        return r.json()

    for c in make_client(settings, None, embeddings):
        assert upload(c, records)["added"] == 2
        listed = {p["paper_id"] for p in c.get("/v1/papers").json()["papers"]}
        assert listed == {doi, pmid}
        for path in (f"/v1/papers/{doi}", "/v1/papers/10.1000%2Fxyz.42", f"/v1/papers/{pmid}"):
            assert c.get(path).status_code == 200, path
        hits = c.get("/v1/search", params={"q": "ferrofluid droplet robots"}).json()["results"]
        assert hits[0]["paper_id"] == doi
        body = c.post(
            "/v1/chat", json={"question": "How fast do ferrofluid droplet robots carry cargo?"}
        ).json()
        assert not body["refused"] and body["citations"][0]["paper_id"] == doi
        changed = {**records[0], "abstract": records[0]["abstract"] + " They also self-heal."}
        summary = upload(c, [changed, records[1]])
        assert (summary["updated"], summary["unchanged"], summary["added"]) == (1, 1, 0)
        assert c.get(f"/v1/papers/{doi}").json()["abstract"].endswith("They also self-heal.")
        assert c.delete(f"/v1/papers/{doi}", headers=bearer("adm")).status_code == 200
        assert_error(c.get("/v1/papers/10.1000%2Fxyz.42"), 404)
        assert c.delete(f"/v1/papers/{pmid}", headers=bearer("adm")).status_code == 200
        assert c.get("/v1/papers").json()["papers"] == []


def test_upload_over_the_limit_is_413(tmp_path, embeddings) -> None:
    settings = Settings(
        data_dir=tmp_path / "store",
        admin_key=_secret("adm"),
        api=ApiSettings(max_upload_bytes=2048),
    )
    for c in make_client(settings, None, embeddings):
        r = c.post("/v1/ingest", files={"file": ("a.jsonl", b"x" * 5000)}, headers=bearer("adm"))
        assert_error(r, 413)


# -- operations ---------------------------------------------------------------------


def test_readyz_reports_store_and_llm(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready" and body["store"]["papers"] == 61
    assert body["llm"] == {"ok": True, "generator": "extractive"}
    chunks = body["store"]["chunks"]
    assert chunks > 61 and body["bm25"]["chunks"] == chunks and body["bm25"]["rebuilding"] is False


def test_readyz_is_degraded_when_the_llm_is_unreachable(
    sample_settings, sample_store, embeddings
) -> None:
    from tests.helpers import free_port

    settings = sample_settings.model_copy(
        update={"llm": "openai", "openai_base_url": f"http://127.0.0.1:{free_port()}/v1"}
    )
    for c in make_client(settings, sample_store, embeddings):
        body = c.get("/readyz").json()
        assert body["status"] == "degraded" and body["llm"]["ok"] is False


def test_metrics_count_requests_and_stages(client: TestClient) -> None:
    client.post("/v1/chat", json={"question": COVERED})
    text = client.get("/metrics").text
    assert re.search(
        r'citeqa_requests_total\{method="POST",route="/v1/chat",status="200"\} \d', text
    )
    assert 'citeqa_request_seconds_bucket{le="0.05",method="POST",route="/v1/chat"}' in text
    assert re.search(r'citeqa_stage_seconds_count\{stage="retrieve"\} [1-9]', text)


def test_docs_and_schema_have_examples(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    chat = schema["components"]["schemas"]["ChatRequest"]
    assert chat.get("examples")
    assert {"/v1/chat", "/v1/chat/completions", "/v1/papers/{paper_id}", "/v1/ingest"} <= set(
        schema["paths"]
    )


def test_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "citeqa" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_a_started_api_keeps_its_start_up_objects_out_of_collections(
    sample_settings, sample_store, embeddings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Modules, the model and the index views stay alive for the process's life: a
    full collection walking them all stalled a request (about 118 ms here)."""
    import gc

    import rag.warmup

    gc.unfreeze()  # whatever froze before in this process (another app, a bench)
    monkeypatch.setattr(rag.warmup, "_settled", False)
    assert gc.get_freeze_count() == 0
    for c in make_client(sample_settings, sample_store, embeddings):
        assert c.get("/healthz").status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000
        settle_heap()  # once per process: a second app does not freeze the first's garbage
        # (Frozen objects can still go: an earlier client's idle worker thread exits.)
        assert gc.get_freeze_count() <= frozen


def test_readyz_shows_the_warm_up_until_it_is_done(sample_settings, sample_store, embeddings):  # type: ignore[no-untyped-def]
    import time

    from rag.settings import RetrievalSettings

    settings = sample_settings.model_copy(
        update={"retrieval": RetrievalSettings(warm_sentences=150)}
    )
    for c in make_client(settings, sample_store, embeddings):
        deadline = time.monotonic() + 90
        while c.get("/readyz").json()["warmup"]["running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get("/readyz").json()["warmup"] == {
            "running": False,
            "sentences": 150,
            "papers": 61,  # every paper's words, for the gate (rag/answer/match.py)
        }
        assert c.post("/v1/chat", json={"question": COVERED}).status_code == 200
        # BM25 (tantivy, nothing to compile) finds the paper.
        hits = c.get("/v1/search", params={"q": "random forests smoothing", "mode": "bm25"})
        assert hits.json()["results"][0]["title"].startswith("Why do Random Forests Work")
