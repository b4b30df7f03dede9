"""The MCP tools in-process (the SDK's client connected to the server object): list
filters and paging, tool errors for missing papers and a store outage, and
verify_claim over a few SciFact abstracts with the real embedding model. The
transports and auth are tested end to end in test_mcp.py."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from api.mcp_server import Backend, build_server
from ingest.job import IngestJob
from rag.chain import build_chain
from rag.index.store import StoreUnavailable, open_store
from rag.settings import Settings
from tests.reflib import library, to_csljson


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.helpers import FakeEmbeddings

    tmp = tmp_path_factory.mktemp("mcp-tools")
    entries = [e for e in library(n=120) if e.kind != "arxiv" and e.abstract][:40]
    path = tmp / "lib.json"
    path.write_text(to_csljson(entries))
    settings = Settings(data_dir=tmp / "data")
    store, embeddings = open_store(settings), FakeEmbeddings()
    IngestJob(store, embeddings, settings, progress=False).run([str(path)])
    chain = build_chain(settings, store=store, embeddings=embeddings)
    return Backend(settings, store, embeddings, chain), entries


def _call(backend: Backend, name: str, args: dict):  # type: ignore[no-untyped-def]
    from mcp import Client

    server = build_server(lambda: backend, writes=False, authorize_write=lambda ctx: None)

    async def main():  # type: ignore[no-untyped-def]
        async with Client(server) as client:
            return await client.call_tool(name, args)

    return anyio.run(main)


def test_list_papers_filters_by_years_and_categories_and_pages(backend) -> None:  # type: ignore[no-untyped-def]
    b, entries = backend
    want = {e.expected_id for e in entries if 2000 <= e.year <= 2010}
    got: set[str] = set()
    offset: int | None = 0
    pages = 0
    while offset is not None:
        args = {"year_min": 2000, "year_max": 2010, "limit": 3, "offset": offset}
        r = _call(b, "list_papers", args)
        assert not r.is_error
        page = r.structured_content
        assert len(page["papers"]) <= 3
        got |= {p["paper_id"] for p in page["papers"]}
        offset, pages = page["next_offset"], pages + 1
    assert want and got == want and pages >= len(want) // 3
    keyword = entries[0].keywords[0]
    r = _call(b, "list_papers", {"categories": [keyword], "limit": 200})
    ids = {p["paper_id"] for p in r.structured_content["papers"]}
    assert ids == {e.expected_id for e in entries if keyword in e.keywords}


def test_missing_papers_and_a_store_outage_are_tool_errors(backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, _ = backend
    r = _call(b, "get_paper", {"paper_id": "no-such-paper"})
    assert r.is_error and "no paper with id 'no-such-paper'" in r.content[0].text
    r = _call(b, "export_citations", {"paper_ids": ["nope"]})
    assert r.is_error and "nope" in r.content[0].text

    class Down:
        def paper(self, paper_id: str):  # type: ignore[no-untyped-def]
            raise StoreUnavailable("connection refused")

        def papers(self, offset: int, limit: int):  # type: ignore[no-untyped-def]
            raise StoreUnavailable("connection refused")

    down = Backend(b.settings, Down(), b.embeddings, b.chain)  # type: ignore[arg-type]
    for name, args in (("get_paper", {"paper_id": "x"}), ("list_papers", {})):
        r = _call(down, name, args)
        assert r.is_error and "vector store is unavailable" in r.content[0].text, name


# -- verify_claim over a few SciFact abstracts (the real embedding model) ----------------


@pytest.fixture(scope="module")
def scifact(tmp_path_factory: pytest.TempPathFactory, embeddings) -> Backend:  # type: ignore[no-untyped-def]
    from tests.test_claims import FIXTURE

    settings = Settings(data_dir=tmp_path_factory.mktemp("mcp-scifact"))
    store = open_store(settings)
    IngestJob(store, embeddings, settings, progress=False).run([str(FIXTURE)])
    chain = build_chain(settings, store=store, embeddings=embeddings)
    return Backend(settings, store, embeddings, chain)


def test_verify_claim_returns_the_contradicting_paper_with_its_sentence(scifact) -> None:  # type: ignore[no-untyped-def]
    from tests.test_claims import CONTRADICTED, _abstract, assert_check

    claim, paper = CONTRADICTED
    r = _call(scifact, "verify_claim", {"claim": claim})
    assert not r.is_error, r.content
    body = r.structured_content
    assert_check(body)  # labels, counts, and every quote is abstract[start:end]
    found = {p["paper_id"]: p for p in body["papers"]}
    assert paper in found and found[paper]["label"] == "contradicts"
    assert "contradict" in body["verdict"] and not body["refused"]
    c = found[paper]["citations"][0]
    assert set(c) >= {"n", "paper_id", "title", "url", "quote", "start", "end"}
    assert c["quote"] and _abstract(paper)[c["start"] : c["end"]] == c["quote"]


def test_verify_claim_refuses_a_claim_outside_the_field(scifact) -> None:  # type: ignore[no-untyped-def]
    from tests.test_claims import OUT_OF_FIELD

    r = _call(scifact, "verify_claim", {"claim": OUT_OF_FIELD})
    assert not r.is_error, r.content
    body = r.structured_content
    assert body["refused"] is True and body["papers"] == []
    assert body["label"] == "not enough information"


def test_verify_claim_has_an_output_schema_and_bad_arguments_are_tool_errors(scifact) -> None:  # type: ignore[no-untyped-def]
    from mcp import Client

    server = build_server(lambda: scifact, writes=False, authorize_write=lambda ctx: None)

    async def schema():  # type: ignore[no-untyped-def]
        async with Client(server) as client:
            return {t.name: t for t in (await client.list_tools()).tools}["verify_claim"]

    tool = anyio.run(schema)
    props = tool.output_schema["properties"]  # type: ignore[index]
    assert {"verdict", "label", "papers", "refused"} <= set(props)
    limits = scifact.settings.api
    for args, reason in (
        ({"claim": ""}, "claim"),
        ({"claim": "   "}, "the claim is empty"),
        ({"claim": "x" * (limits.max_question_chars + 1)}, "longer than"),
        ({"claim": "x", "top_k": 0}, "top_k must be between"),
        ({"claim": "x", "top_k": limits.max_top_k + 1}, "top_k must be between"),
        ({"claim": "x", "top_k": "many"}, "top_k"),
        ({}, "claim"),
    ):
        r = _call(scifact, "verify_claim", args)
        assert r.is_error and reason in r.content[0].text, (args, r.content)
