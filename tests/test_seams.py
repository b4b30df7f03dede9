"""The seams and the fixes that came with them: one pipeline, the generator
registry, the store protocol, retrieval stages, cancellation, honest health."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from langchain_core.runnables import RunnableLambda
from pydantic import SecretStr, ValidationError

from api.app import create_app
from api.schemas import ChatRequest
from ingest.job import IngestJob
from rag.chain import AnswerCancelled, Question, build_chain
from rag.generate import generator_names
from rag.index.lexical import LexicalCache
from rag.index.store import StoreConfigError, VectorStore, open_store
from rag.retrieval import rerank
from rag.retrieval.retrieve import make_retriever, search_papers
from rag.settings import Settings
from rag.types import Filters
from tests.helpers import sse_events

COVERED = "How do randomized tree ensembles regulate the smoothness of their predictions?"


def _without_timings(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "timings"}


class Endless:
    """A model that writes forever, one token every 10 ms, unless told to stop."""

    name = "openai"
    uses_model = True
    produced = 0

    def stream(self, question, sources, *, query_vector=None, cancel=None) -> Iterator[str]:  # type: ignore[no-untyped-def]
        while cancel is None or not cancel.is_set():
            Endless.produced += 1
            time.sleep(0.01)
            yield "word "

    def rewrite(self, history, question, cancel=None):  # type: ignore[no-untyped-def]
        return None


class Buggy:
    """A generator with a bug (not a model outage): it must surface, not degrade."""

    name = "openai"
    uses_model = True

    def stream(self, question, sources, **kwargs) -> Iterator[str]:  # type: ignore[no-untyped-def]
        yield "Random forests average many trees [1]. They also "
        raise RuntimeError("bug in the generator")

    def rewrite(self, history, question, cancel=None):  # type: ignore[no-untyped-def]
        return None


# -- one pipeline -----------------------------------------------------------------


def test_chat_json_is_the_streams_done_answer_gate_included(
    sample_settings, sample_store, embeddings
) -> None:
    with TestClient(create_app(sample_settings, store=sample_store, embeddings=embeddings)) as c:
        plain = c.post("/v1/chat", json={"question": COVERED}).json()
        streamed = c.post("/v1/chat", json={"question": COVERED, "stream": True}).text
    done = json.loads([d for name, d in sse_events(streamed) if name == "done"][0])
    assert plain["gate"] and plain["gate"]["passed"] is True
    assert _without_timings(plain) == _without_timings(done)


def test_invoke_drains_the_stream_and_the_chain_is_a_runnable(
    sample_settings, sample_store, embeddings
) -> None:
    chain = build_chain(sample_settings, store=sample_store, embeddings=embeddings)
    events = list(chain.runnable.stream(COVERED))
    assert events[-1]["type"] == "answer" and any(e["type"] == "token" for e in events)
    composed = chain.runnable | RunnableLambda(lambda a: [c.paper_id for c in a.citations])
    cited = composed.invoke(Question(COVERED))
    assert cited == [c.paper_id for c in events[-1]["answer"].citations] and cited
    assert chain.invoke(Question(COVERED)).answer == events[-1]["answer"].answer


# -- cancellation -----------------------------------------------------------------


def test_a_timed_out_answer_stops_its_model_work(sample_settings, sample_store, embeddings) -> None:
    settings = sample_settings.model_copy(update={"llm": "openai", "llm_timeout": 0.3})
    chain = build_chain(
        settings, store=sample_store, embeddings=embeddings, generators={"openai": Endless()}
    )
    answer = chain.invoke(Question(COVERED))
    assert answer.degraded and "within 0.3s" in (answer.degraded_reason or "")
    assert answer.citations  # the fallback answered
    time.sleep(0.2)  # a token in flight may still land
    produced = Endless.produced
    time.sleep(0.5)
    assert Endless.produced == produced, "the abandoned model kept writing"
    assert not [t for t in threading.enumerate() if t.name == "llm-stream"]


def test_a_cancelled_answer_stops_its_model_work(sample_settings, sample_store, embeddings) -> None:
    settings = sample_settings.model_copy(update={"llm": "openai", "llm_timeout": 60})
    chain = build_chain(
        settings, store=sample_store, embeddings=embeddings, generators={"openai": Endless()}
    )
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(AnswerCancelled):  # no fallback either: nobody would read it
        chain.invoke(Question(COVERED, cancel=cancel))
    assert time.monotonic() - t0 < 30  # not the 60 s deadline
    time.sleep(0.2)
    produced = Endless.produced
    time.sleep(0.5)
    assert Endless.produced == produced


# -- honest failures ----------------------------------------------------------------


def test_a_bug_in_a_generator_surfaces_instead_of_degrading(
    sample_settings, sample_store, embeddings, caplog
) -> None:
    settings = sample_settings.model_copy(update={"llm": "openai"})
    chain = build_chain(
        settings, store=sample_store, embeddings=embeddings, generators={"openai": Buggy()}
    )
    with pytest.raises(RuntimeError, match="bug in the generator"):
        chain.invoke(Question(COVERED))
    app = create_app(settings, store=sample_store, embeddings=embeddings)
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.chain = chain
        r = c.post("/v1/chat", json={"question": COVERED})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal"
        with caplog.at_level(logging.ERROR, logger="api.routes.chat"):
            text = c.post("/v1/chat", json={"question": COVERED, "stream": True}).text
    names = [name for name, _ in sse_events(text)]
    assert names[0] == "token" and names[-1] == "error" and "done" not in names
    assert any("answer stream failed" in r.message and r.exc_info for r in caplog.records)


@pytest.fixture
def refusing_llm_server() -> Iterator[str]:
    """An OpenAI-compatible server that refuses every key (HTTP 401)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b'{"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}'
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_refused_llm_key_is_degraded_not_ready(
    sample_settings, sample_store, embeddings, refusing_llm_server
) -> None:
    settings = sample_settings.model_copy(
        update={
            "llm": "openai",
            "openai_base_url": refusing_llm_server,
            "openai_api_key": SecretStr("sk-wrong"),
        }
    )
    with TestClient(create_app(settings, store=sample_store, embeddings=embeddings)) as c:
        body = c.get("/readyz").json()
    assert body["status"] == "degraded"
    assert body["llm"]["ok"] is False and "401" in body["llm"]["reason"]
    assert "sk-wrong" not in json.dumps(body)


def test_a_store_url_without_a_host_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="has no host"):
        open_store(Settings(data_dir=tmp_path, chroma_url="http://:8001"))


# -- the generator registry ------------------------------------------------------------


def test_generator_choices_derive_from_the_registry(
    sample_settings, sample_store, embeddings
) -> None:
    names = generator_names()
    assert set(names) >= {"extractive", "openai", "llamacpp"}
    schema = ChatRequest.model_json_schema()
    llm = schema["properties"]["llm"]["anyOf"][0]
    assert tuple(llm["enum"]) == names
    with pytest.raises(ValidationError, match="one of: extractive"):
        Settings(llm="gpt-5")
    with pytest.raises(ValidationError, match="llm_allowed"):
        Settings(llm_allowed="extractive,nope")


def test_clients_may_choose_only_the_generators_the_server_allows(
    sample_settings, sample_store, embeddings
) -> None:
    with TestClient(create_app(sample_settings, store=sample_store, embeddings=embeddings)) as c:
        r = c.post("/v1/chat", json={"question": COVERED, "llm": "llamacpp"})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["param"] == "llm" and "llamacpp" in r.json()["error"]["message"]
        assert (
            c.post("/v1/chat", json={"question": COVERED, "llm": "extractive"}).status_code == 200
        )
        models = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert models == ["citeqa", "citeqa-extractive"]
        r = c.post(
            "/v1/chat/completions",
            json={"model": "citeqa-llamacpp", "messages": [{"role": "user", "content": COVERED}]},
        )
        assert r.status_code == 403
    allowing = sample_settings.model_copy(update={"llm_allowed": ["extractive", "openai"]})
    with TestClient(create_app(allowing, store=sample_store, embeddings=embeddings)) as c:
        models = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert models == ["citeqa", "citeqa-extractive", "citeqa-openai"]


# -- the store protocol and filters ------------------------------------------------------


def test_the_chroma_store_meets_the_protocol_and_keeps_its_syntax(sample_store) -> None:
    assert isinstance(sample_store, VectorStore)
    assert not hasattr(sample_store, "collection")  # Chroma's collection stays inside
    assert Filters().empty and not Filters(year_min=0).empty


def test_year_min_zero_is_a_filter_not_no_filter(tmp_path: Path, fake_embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    src = tmp_path / "p.jsonl"
    rows = [
        {
            "id": "2401.00001",
            "title": "Dated sparse probes",
            "abstract": "Sparse probes of marrowlight features in vision models.",
            "update_date": "2024-01-02",
        },
        {
            "id": "2401.00002",
            "title": "Undated sparse probes",
            "abstract": "Sparse probes of marrowlight features in language models.",
        },
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    IngestJob(store, fake_embeddings, settings, progress=False).run([str(src)])
    retriever = make_retriever(settings, store, fake_embeddings)
    for mode in ("hybrid", "dense", "bm25"):
        every = search_papers("marrowlight sparse probes", retriever, 5, mode=mode)
        dated = search_papers(
            "marrowlight sparse probes", retriever, 5, Filters(year_min=0), mode=mode
        )
        assert len(every) == 2 and [h.paper_id for h in dated] == ["2401.00001"], mode


# -- retrieval stages ----------------------------------------------------------------------


def test_a_reranker_is_one_function_and_one_setting(
    sample_settings, sample_store, embeddings, monkeypatch
) -> None:
    monkeypatch.setitem(rerank.RERANKERS, "reverse", lambda q, sources: sources[::-1])
    plain = make_retriever(sample_settings, sample_store, embeddings)
    reversed_settings = sample_settings.model_copy(
        update={"retrieval": sample_settings.retrieval.model_copy(update={"reranker": "reverse"})}
    )
    Settings(retrieval={"reranker": "reverse"})  # a known name validates
    flipped = make_retriever(reversed_settings, sample_store, embeddings)
    before = plain.retrieve(COVERED, k=3)
    after = flipped.retrieve(COVERED, k=3)
    assert [s.n for s in after.sources] == [1, 2, 3]
    # The window holds more than k papers: the reversed order starts from its tail.
    assert after.sources[0].paper_id not in [s.paper_id for s in before.sources]
    hits = search_papers(COVERED, flipped, 3)  # /v1/search goes through the same stages
    assert [h.paper_id for h in hits] == [s.paper_id for s in after.sources]
    assert list(after.timings) >= ["index", "embed", "dense", "bm25", "candidates"]


# -- writes never stall readers -------------------------------------------------------------


def test_an_admin_upload_does_not_stall_readers(
    tmp_path: Path, fake_embeddings, monkeypatch
) -> None:
    settings = Settings(
        data_dir=tmp_path / "d",
        admin_key=SecretStr("admin-key"),
        retrieval={"lexical_sync_below": 10, "lexical_refresh_seconds": 0},
    )
    store = open_store(settings)
    first = tmp_path / "a.jsonl"
    rows = [
        {
            "id": f"2401.{i:05d}",
            "title": f"Paper {i} on sparse probes",
            "abstract": f"Topic "
            f"number {i}. We study sparse probes of marrowlight features, case {i}.",
        }
        for i in range(30)
    ]
    first.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    IngestJob(store, fake_embeddings, settings, progress=False).run([str(first)])
    app = create_app(settings, store=store, embeddings=fake_embeddings)
    release = threading.Event()
    real = LexicalCache._apply

    def held(self, writer, changes):  # type: ignore[no-untyped-def]
        assert release.wait(60), "the BM25 catch-up was never released"
        return real(self, writer, changes)

    with TestClient(app) as c:
        assert c.get("/v1/search", params={"q": "marrowlight"}).status_code == 200
        monkeypatch.setattr(LexicalCache, "_apply", held)
        upload: dict = {}

        def post() -> None:
            new = {
                "id": "2402.00001",
                "title": "Quillwort lattices",
                "abstract": "Quillwort "
                "lattices are studied here for the first time, with sparse probes.",
            }
            upload["r"] = c.post(
                "/v1/ingest",
                headers={"Authorization": "Bearer admin-key"},
                files={"file": ("new.jsonl", json.dumps(new) + "\n")},
            )

        writer = threading.Thread(target=post)
        writer.start()
        writer.join(30)
        assert not writer.is_alive(), "the upload waited for a BM25 rebuild"
        assert upload["r"].status_code == 200 and upload["r"].json()["added"] == 1
        # Readers answer while the rebuild is held: the old index serves them.
        for _ in range(5):
            r = c.get("/v1/search", params={"q": "sparse probes marrowlight"})
            assert r.status_code == 200 and r.json()["results"]
        assert c.get("/readyz").json()["bm25"]["rebuilding"] is True
        release.set()
        deadline = time.monotonic() + 30
        while c.get("/readyz").json()["bm25"]["rebuilding"] and time.monotonic() < deadline:
            time.sleep(0.1)
        bm25 = c.get("/v1/search", params={"q": "quillwort", "mode": "bm25"}).json()
        assert [h["paper_id"] for h in bm25["results"]] == ["2402.00001"]
