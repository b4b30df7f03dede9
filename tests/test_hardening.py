"""Issue 32, what a hostile client and a careless admin found, in-process (TestClient and
the CLI): prune on input that read nothing, deep JSON, long upload names, the data
directory removed under the app, the page's headers, credentials in urls. The parts
that live in the HTTP server (header size and time, reading an upload before auth)
are in test_hardening_http.py, against a real uvicorn."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from api.app import create_app
from rag.settings import Settings
from tests.helpers import SAMPLE

ADMIN = {"Authorization": "Bearer adm"}
JSON = {"content-type": "application/json"}


def _junk() -> bytes:
    """The probe's junk.txt: 1 MiB of random bytes (seeded)."""
    return random.Random(32).randbytes(1 << 20)


def _papers(first: int, last: int) -> bytes:
    rows = [
        {"id": f"2402.{i:05d}", "title": f"Gadget study {i}", "abstract": f"Gadget {i} works."}
        for i in range(first, last + 1)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def admin(tmp_path, fake_embeddings) -> Iterator[tuple[TestClient, Settings]]:  # type: ignore[no-untyped-def]
    """An app over its own store holding the sample corpus (61 papers), writes on."""
    settings = Settings(data_dir=tmp_path / "data", admin_key=SecretStr("adm"))
    with TestClient(create_app(settings, embeddings=fake_embeddings)) as c:
        r = c.post("/v1/ingest", files={"file": ("sample.txt", SAMPLE.read_bytes())}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["added"] == 61, r.text
        yield c, settings


def _count(c: TestClient) -> int:
    return int(c.get("/readyz").json()["store"]["papers"])


def _upload(c: TestClient, name: str, data: bytes, **form: str):  # type: ignore[no-untyped-def]
    return c.post("/v1/ingest", files={"file": (name, data)}, data=form, headers=ADMIN)


# -- prune on input that read nothing ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [("junk.txt", _junk()), ("empty.jsonl", b""), ("two.jsonl", _papers(1, 2))],
    ids=["random-bytes-as-listing", "empty-jsonl", "far-fewer"],
)
def test_prune_refuses_input_that_yields_no_or_far_fewer_papers(admin, name, data) -> None:  # type: ignore[no-untyped-def]
    c, _ = admin
    r = _upload(c, name, data, prune="true")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "prune_refused" and err["param"] == "prune"
    assert "would delete 61 of the 61 stored papers" in err["message"]
    assert "confirm_prune" in err["message"]
    assert _count(c) == 61  # nothing deleted, and nothing written either
    assert c.get("/v1/papers/2402.00001").status_code == 404


def test_prune_goes_ahead_when_it_keeps_more_than_it_deletes_or_is_confirmed(admin) -> None:  # type: ignore[no-untyped-def]
    c, _ = admin
    first = c.get("/v1/papers", params={"limit": 40}).json()["papers"]
    keep = "".join(
        json.dumps({"id": p["paper_id"], "title": p["title"], "abstract": "Kept."}) + "\n"
        for p in first
    ).encode()
    r = _upload(c, "keep.jsonl", keep, prune="true")  # keeps 40, deletes 21
    assert r.status_code == 200, r.text
    assert r.json()["pruned"] == 21 and _count(c) == 40
    r = _upload(c, "empty.jsonl", b"", prune="true", confirm_prune="true")
    assert r.status_code == 200, r.text
    assert r.json()["pruned"] == 40 and _count(c) == 0


def test_cli_prune_refuses_junk_and_writes_nothing(admin, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from api.cli import app

    c, settings = admin
    junk = tmp_path / "junk.txt"
    junk.write_bytes(_junk())
    monkeypatch.setenv("CITEQA_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(app, ["ingest", str(junk), "--prune"])
    assert result.exit_code == 2, result.output
    assert "prune refused: the input yields no papers" in result.output
    assert "--confirm-prune" in result.output
    assert _count(c) == 61


def test_prune_refusal_rule() -> None:
    from ingest.job import prune_refusal

    assert prune_refusal(read=0, gone=0, stored=0, ratio=1.0) is None  # nothing to lose
    assert prune_refusal(read=0, gone=5, stored=5, ratio=None) is not None
    assert prune_refusal(read=10, gone=10, stored=20, ratio=1.0) is None
    assert prune_refusal(read=10, gone=11, stored=21, ratio=1.0) is not None
    assert prune_refusal(read=10, gone=11, stored=21, ratio=None) is None
    assert prune_refusal(read=10, gone=25, stored=35, ratio=3.0) is None


# -- deep JSON is a 400, never a 500 -------------------------------------------------------

DEPTH = 100_000  # about 200 KB: within the default JSON body limit (256 KiB)
DEEP_SURROGATE = b'{"question": "trees", "x": ' + b"[" * DEPTH + rb'"\ud800"' + b"]" * DEPTH + b"}"
DEEP_PLAIN = b'{"question": "trees", "x": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"


@pytest.fixture(scope="module")
def reader(sample_settings, sample_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(sample_settings, store=sample_store, embeddings=embeddings)) as c:
        yield c


@pytest.mark.parametrize("body", [DEEP_SURROGATE, DEEP_PLAIN], ids=["surrogate", "plain"])
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions"])
def test_deeply_nested_json_is_a_400(reader: TestClient, caplog, path: str, body: bytes) -> None:
    r = reader.post(path, content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "unhandled error" not in caplog.text


def test_deeply_nested_jsonl_record_is_skipped_with_its_line(tmp_path, fake_embeddings) -> None:
    from ingest.job import IngestJob
    from rag.index.store import open_store

    settings = Settings(data_dir=tmp_path / "data")
    source = tmp_path / "deep.jsonl"
    source.write_bytes(_papers(1, 1) + DEEP_PLAIN + b"\n" + _papers(2, 2))
    summary = IngestJob(open_store(settings), fake_embeddings, settings, progress=False).run(
        [str(source)]
    )
    assert summary.added == 2 and summary.skipped == 1
    assert summary.errors[0]["line"] == 2


# -- a long upload file name ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "form"),
    [("papers." + "x" * 300, {"format": "jsonl"}), ("p" * 300 + ".jsonl", {})],
    ids=["300-char-extension", "300-char-stem"],
)
def test_long_upload_names_are_ingested(tmp_path, fake_embeddings, name, form) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", admin_key=SecretStr("adm"))
    with TestClient(create_app(settings, embeddings=fake_embeddings)) as c:
        r = _upload(c, name, _papers(1, 3) + b"{broken\n", **form)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["added"] == 3 and body["errors"][0]["file"] == name


# -- the data directory removed under the app ----------------------------------------------


def test_removed_data_dir_is_unavailable_not_a_500(tmp_path, fake_embeddings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", admin_key=SecretStr("adm"))
    with TestClient(create_app(settings, embeddings=fake_embeddings)) as c:
        assert _upload(c, "a.jsonl", _papers(1, 3)).status_code == 200
        assert c.get("/readyz").json()["status"] == "ready"
        shutil.rmtree(settings.data_dir)
        ready = c.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "unavailable"
        assert "removed or replaced" in ready.json()["store"]["error"]
        assert str(tmp_path) not in ready.text
        for r in (
            c.delete("/v1/papers/2402.00001", headers=ADMIN),
            _upload(c, "b.jsonl", _papers(4, 5)),
        ):
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable"
            assert str(tmp_path) not in r.text
        assert "unhandled error" not in caplog.text


# -- the page's headers; credentials in urls -----------------------------------------------


def test_page_has_a_content_security_policy_and_no_framing(reader: TestClient) -> None:
    page = reader.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    for r in (page, reader.get("/static/app.js"), reader.get("/v1/models")):
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"


def test_credentials_in_urls_are_dropped(tmp_path, fake_embeddings) -> None:
    from rag.types import Citation, web_url

    assert web_url("https://user:pass@host.example/p?q=1") == "https://host.example/p?q=1"
    assert web_url("http://tok@10.0.0.1:8080/x") == "http://10.0.0.1:8080/x"
    assert web_url("https://a@b@host.example/") == "https://host.example/"
    stored = "https://user:pass@arxiv.org/abs/2402.00001"  # ingested before the check
    cit = Citation(n=1, paper_id="p", title="t", url=stored, quote="q", start=0, end=1)
    assert cit.url == "https://arxiv.org/abs/2402.00001"

    settings = Settings(data_dir=tmp_path / "data", admin_key=SecretStr("adm"))
    record = {"id": "2402.00009", "title": "T", "abstract": "A.", "url": stored}
    with TestClient(create_app(settings, embeddings=fake_embeddings)) as c:
        r = _upload(c, "u.jsonl", (json.dumps(record) + "\n").encode())
        assert r.status_code == 200, r.text
        assert "credentials dropped" in r.json()["warnings"][0]["reason"]
        paper = c.get("/v1/papers/2402.00009").json()
        assert paper["url"] == "https://arxiv.org/abs/2402.00001"
        assert "pass" not in json.dumps(paper)
