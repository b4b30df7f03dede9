"""A reference library in and out: a Zotero CSL-JSON and a RIS export ingested into a
real store, a question answered, the papers it cites exported (BibTeX, RIS,
CSL-JSON) through the API and re-imported into clean stores with the same ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.job import IngestJob
from rag.cite import FORMATS, CiteRecord, export, record_of
from rag.index.store import open_store
from rag.settings import Settings
from tests.reflib import library, to_csljson, to_ris

QUESTION = "How do randomized tree ensembles regulate the smoothness of their predictions?"
FOREST = "Why do Random Forests Work?"


@pytest.fixture(scope="module")
def library_store(tmp_path_factory: pytest.TempPathFactory, embeddings):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("reflib")
    everything = library(n=110)
    # A few of the sample's papers (the one the question is about among them) and
    # the library's other kinds of entry: enough to choose among, quick to embed.
    arxiv = [e for e in everything if e.kind == "arxiv"]
    forest = [e for e in arxiv if e.title.startswith(FOREST)]
    entries = forest + [e for e in arxiv if e not in forest][:11] + [
        e for e in everything if e.kind != "arxiv"
    ]
    csl, ris = tmp / "zotero.json", tmp / "zotero.ris"
    csl.write_text(to_csljson(entries[0::2]))
    ris.write_text(to_ris(entries[1::2]))
    settings = Settings(data_dir=tmp / "data")
    store = open_store(settings)
    summary = IngestJob(store, embeddings, settings, progress=False).run([str(csl), str(ris)])
    with_abstract = [e for e in entries if e.abstract]
    assert summary.added == len(with_abstract)
    assert summary.skipped == len(entries) - len(with_abstract)
    return settings, store, {e.expected_id: e for e in with_abstract}


@pytest.fixture(scope="module")
def client(library_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings, store, _ = library_store
    with TestClient(create_app(settings, store=store, embeddings=embeddings)) as c:
        yield c


def _reimport(tmp: Path, name: str, text: str, embeddings) -> dict:  # type: ignore[no-untyped-def]
    path = tmp / name
    path.write_text(text)
    settings = Settings(data_dir=tmp / f"clean-{name}")
    store = open_store(settings)
    summary = IngestJob(store, embeddings, settings, progress=False).run([str(path)])
    assert summary.skipped == 0, summary.to_json()
    return {m["paper_id"]: m for m in store.papers(0, 200)}


@pytest.mark.slow
def test_answer_sources_go_back_into_a_library_with_the_same_ids(
    client: TestClient, library_store, embeddings, tmp_path: Path
) -> None:
    _, store, expected = library_store
    body = client.post("/v1/chat", json={"question": QUESTION}).json()
    assert not body["refused"] and body["citations"], body
    cited = list(dict.fromkeys(c["paper_id"] for c in body["citations"]))
    assert all(pid in expected for pid in cited)  # the user's ids, from the library
    for fmt, spec in FORMATS.items():
        r = client.get("/v1/cite", params={"paper_id": cited, "format": fmt})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(spec.media_type)
        assert spec.suffix in r.headers["content-disposition"]
        back = _reimport(tmp_path, f"cited{spec.suffix}", r.text, embeddings)
        assert set(back) == set(cited), fmt
        for pid in cited:
            original = store.paper(pid)
            assert back[pid]["title"] == original["title"], fmt
            assert back[pid]["abstract"] == original["abstract"], fmt
            assert back[pid]["year"] == original["year"], fmt
    # One paper at a time, as the page's cite menu asks for it.
    one = cited[0]
    r = client.get(f"/v1/papers/{one}", params={"format": "ris"})
    assert r.status_code == 200 and r.text.startswith("TY  - ")
    assert f"ID  - {one}" in r.text


def test_every_kind_of_id_survives_each_format(library_store, embeddings, tmp_path: Path) -> None:
    """arXiv, DOI, PMID, citation key and Zotero item key: exported from the store and
    read back, each format gives every paper the id it had."""
    _, store, expected = library_store
    by_kind: dict[str, str] = {}
    for pid, entry in expected.items():
        by_kind.setdefault(entry.kind, pid)
    assert set(by_kind) == {"arxiv", "doi", "pmid", "citekey", "uri"}
    records = [record_of(store.paper(pid)) for pid in by_kind.values()]
    for fmt, spec in FORMATS.items():
        path = tmp_path / f"kinds{spec.suffix}"
        path.write_text(export(records, fmt))
        from ingest.loaders import Skipped, load

        got = [i.paper_id for _, i in load(str(path)) if not isinstance(i, Skipped)]
        assert got == list(by_kind.values()), fmt


def test_export_bad_requests(client: TestClient) -> None:
    r = client.get("/v1/papers/nope", params={"format": "ris"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "paper_id"
    r = client.get("/v1/papers/2000.10000", params={"format": "docx"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "format"
    r = client.get("/v1/cite", params={"paper_id": ["nope", "nada"]})
    assert r.status_code == 404
    r = client.get("/v1/cite")
    assert r.status_code == 422


TRICKY = [
    "ranges 3--5 and dashes --- like this",  # LaTeX reads -- and --- as dashes
    "``quoted'' and 'single' and \"double\"",
    "50% of R_2 & #1 cost $5, or $x^2$ in math",
    "a \\ backslash, \\emph and ~ a tilde, ^ a caret",
    "Caf\u00e9, M\u00fcller, \u4e2d\u6587, \u2013 \u2014",
    "questions?` and !` stay",
]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_text_that_latex_or_ris_would_change_comes_back_unchanged(
    fmt: str, tmp_path: Path
) -> None:
    from ingest.loaders import Skipped, load

    records = [
        CiteRecord(f"10.1000/t{i}", f"T: {t}", f"A: {t}", (f"M\u00fcller, J. {i}",), 2020)
        for i, t in enumerate(TRICKY)
    ]
    path = tmp_path / f"tricky{FORMATS[fmt].suffix}"
    path.write_text(export(records, fmt))
    got = [i for _, i in load(str(path))]
    assert not [i for i in got if isinstance(i, Skipped)]
    for record, paper in zip(records, got, strict=True):
        assert (paper.paper_id, paper.title, paper.abstract, paper.authors) == (
            record.paper_id,
            record.title,
            record.abstract,
            record.authors,
        ), fmt
