"""Issue 15, what a hostile client found, in-process (TestClient): who the rate limit
counts, request text that is not Unicode, ingest reports, links and markup in
answers, message caps, and what /readyz shows. The parts that need a real uvicorn
(proxy headers, chunked bodies, the access log) are in test_security_http.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from rag.settings import ApiSettings, Settings


def _client(settings: Settings, store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, store=store, embeddings=embeddings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- item 2: limits keyed on the verified identity; failed keys counted ------------------


@pytest.fixture
def locked(sample_settings, sample_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = sample_settings.model_copy(
        update={
            "api_keys": [SecretStr("reader-one"), SecretStr("reader-two")],
            "admin_key": SecretStr("admin-key"),
            # auth_failure_limit is left at its default, 10/minute
            "api": ApiSettings(rate_limit="5/minute"),
        }
    )
    yield from _client(settings, sample_store, embeddings)


def test_wrong_keys_are_throttled_before_they_are_checked(locked: TestClient) -> None:
    codes = [locked.get("/v1/models", headers=bearer(f"guess-{i}")).status_code for i in range(300)]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429] * 290
    r = locked.get("/v1/models", headers=bearer("reader-one"))
    # The right key waits too: 200 after a run of 429s would confirm a guess.
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_each_verified_key_has_its_own_budget(locked: TestClient) -> None:
    one = [locked.get("/v1/models", headers=bearer("reader-one")).status_code for _ in range(6)]
    two = [locked.get("/v1/models", headers=bearer("reader-two")).status_code for _ in range(2)]
    assert one == [200] * 5 + [429] and two == [200, 200]
    # Missing keys are refused, not counted as guesses (they guess nothing).
    assert {locked.get("/v1/models").status_code for _ in range(12)} == {401}
    assert locked.get("/v1/models", headers=bearer("reader-two")).status_code == 200


def test_unchecked_tokens_share_the_address_budget(
    sample_settings, sample_store, embeddings
) -> None:
    settings = sample_settings.model_copy(update={"api": ApiSettings(rate_limit="5/minute")})
    for c in _client(settings, sample_store, embeddings):
        codes = [c.get("/v1/models", headers=bearer(f"tok-{i}")).status_code for i in range(8)]
        assert codes == [200] * 5 + [429] * 3


# -- item 3: text that is not Unicode is a 422 naming the field, never a 500 -------------

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def open_client(sample_settings, sample_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    yield from _client(sample_settings, sample_store, embeddings)


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/chat", rb'{"question": "\ud800 diffusion"}', "question"),
        ("/v1/chat", rb'{"question": "diffusion \uDFFF", "stream": true}', "question"),
        (
            "/v1/chat",
            rb'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant",'
            rb' "content": "b"}, {"role": "user", "content": "\udc00 why?"}]}',
            "messages.2.content",
        ),
        (
            "/v1/chat",
            rb'{"question": "trees", "filters": {"paper_ids": ["\ud834"]}}',
            "filters.paper_ids.0",
        ),
        # CESU-8 bytes of U+D800 straight in the body (json.loads would pass them through).
        ("/v1/chat", b'{"question": "\xed\xa0\x80 diffusion"}', "question"),
        ("/v1/chat", b'{"question": "\xff diffusion"}', "question"),
        (
            "/v1/chat/completions",
            rb'{"model": "citeqa", "messages": [{"role": "user", "content": "\ud800 x"}]}',
            "messages.0.content",
        ),
        (
            "/v1/chat/completions",
            rb'{"model": "citeqa", "user": "\udbff",'
            rb' "messages": [{"role": "user", "content": "x"}]}',
            "user",
        ),
    ],
)
def test_unpaired_surrogates_in_json_are_a_422_naming_the_field(
    open_client: TestClient, caplog, path: str, raw: bytes, param: str
) -> None:
    r = open_client.post(path, content=raw, headers=JSON)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert err["message"].startswith(f"{param}: ")
    assert "unhandled error" not in caplog.text


def test_surrogate_pairs_and_escaped_backslashes_still_pass(open_client: TestClient) -> None:
    raw = rb'{"question": "random forests \ud83c\udf32 smoothing, not \\ud800"}'
    r = open_client.post("/v1/chat", content=raw, headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["question"] == "random forests \U0001f332 smoothing, not \\ud800"


# An encoded surrogate, a stray byte, an overlong "/": once replaced by U+FFFD they were
# searched for; now the client hears that its query is not text.
@pytest.mark.parametrize("query", ["q=%ED%A0%80%20trees", "q=trees%FF", "k=3&q=%C0%AFtrees"])
def test_query_strings_that_are_not_utf8_are_a_422(open_client: TestClient, query: str) -> None:
    r = open_client.get(f"/v1/search?{query}")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == query.rsplit("&", 1)[-1].split("=")[0]
    assert open_client.get("/v1/search?q=%C3%A9t%C3%A9%20trees").status_code == 200


# -- item 4: ingest reports are capped and name no server path ---------------------------


def _jsonl(n_good: int, n_bad: int, dup: int = 0) -> bytes:
    import json

    lines = [
        json.dumps(
            {
                "id": f"2401.{i:05d}",
                "title": f"Widget study {i}",
                "abstract": f"We study widget {i} and find it converges.",
            }
        )
        for i in range(1, n_good + 1)
    ]
    lines += lines[:dup]  # the same ids again
    lines += ["{broken json"] * n_bad
    return ("\n".join(lines) + "\n").encode()


def test_summary_lists_the_first_errors_and_counts_the_rest(tmp_path, fake_embeddings) -> None:
    from ingest.job import MAX_REPORTED, IngestJob
    from rag.index.store import open_store

    settings = Settings(data_dir=tmp_path / "store")
    source = tmp_path / "many.jsonl"
    source.write_bytes(_jsonl(2, 3 * MAX_REPORTED, dup=1))
    job = IngestJob(open_store(settings), fake_embeddings, settings, progress=False)
    summary = job.run([str(source)])
    data = summary.to_json()
    assert data["skipped"] == data["errors_total"] == 3 * MAX_REPORTED + 1
    assert len(data["errors"]) == MAX_REPORTED and data["errors_truncated"] is True
    assert "max_reported" not in data and data["added"] == 2
    assert data["errors"][0]["reason"] == f"duplicate paper id 2401.00001 (first at {source}:1)"
    assert "and 201 more skipped records" in summary.to_text()
    assert len(summary.to_text().splitlines()) < MAX_REPORTED + 5
    small = job.run([str(source)], names=["mine.jsonl"])
    assert small.errors[0]["file"] == "mine.jsonl"
    assert small.errors[0]["reason"].endswith("(first at mine.jsonl:1)")


def test_upload_report_is_capped_and_names_the_uploaded_file(tmp_path, fake_embeddings) -> None:
    settings = Settings(data_dir=tmp_path / "store", admin_key=SecretStr("adm"))
    payload = _jsonl(3, 5000, dup=2)
    for c in _client(settings, None, fake_embeddings):
        r = c.post("/v1/ingest", files={"file": ("mine.jsonl", payload)}, headers=bearer("adm"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["added"] == 3 and body["skipped"] == body["errors_total"] == 5002
        assert len(body["errors"]) == 100 and body["errors_truncated"] is True
        assert len(r.content) < 20_000  # not a report per bad line
        dup = body["errors"][0]
        assert dup == {
            "file": "mine.jsonl",
            "line": 4,
            "reason": "duplicate paper id 2401.00001 (first at mine.jsonl:1)",
        }
        for leak in ("citeqa-upload-", "/tmp", str(tmp_path), "upload.jsonl"):
            assert leak not in r.text


# -- item 7: links, markup, message caps, /readyz ----------------------------------------

HOSTILE_TITLE = (
    "Stripe <script>alert(1)</script> [click](javascript:alert(2)) Shortcuts_in *Zebra* Vision"
)
HOSTILE_RECORDS = [
    {
        "id": "2403.00001",
        "title": HOSTILE_TITLE,
        "url": "javascript:alert(3)",
        "abstract": "We show that convolutional networks trained on photographs of zebras learn "
        "stripe texture shortcuts instead of body shape. Removing the stripes drops zebra "
        "recognition accuracy from 97 percent to 12 percent.",
    },
    {
        "title": "Data Links in Metadata",
        "url": "data:text/html,<script>alert(4)</script>",
        "abstract": "We audit metadata fields of paper archives for embedded data links.",
    },
    {
        "id": "2403.00003",
        "title": "Plain Links",
        "url": "https://example.org/plain-links",
        "abstract": "We count how many archive records carry a plain web link to the paper.",
    },
]
ZEBRA_QUESTION = "Do convolutional networks trained on zebra photographs learn stripe shortcuts?"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, embeddings) -> Iterator[tuple[TestClient, dict]]:  # type: ignore[no-untyped-def]
    import json

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile-links"), admin_key=SecretStr("adm")
    )
    payload = "".join(json.dumps(r) + "\n" for r in HOSTILE_RECORDS).encode()
    for c in _client(settings, None, embeddings):
        r = c.post("/v1/ingest", files={"file": ("links.jsonl", payload)}, headers=bearer("adm"))
        assert r.status_code == 200, r.text
        yield c, r.json()


def test_non_web_links_are_dropped_at_ingest_and_reported(hostile) -> None:  # type: ignore[no-untyped-def]
    c, summary = hostile
    assert summary["added"] == 3 and summary["skipped"] == 0
    assert summary["warnings_total"] == 2
    assert [(w["file"], w["line"]) for w in summary["warnings"]] == [
        ("links.jsonl", 1),
        ("links.jsonl", 2),
    ]
    assert all("url dropped" in w["reason"] for w in summary["warnings"])
    papers = {p["title"]: p for p in c.get("/v1/papers").json()["papers"]}
    # An arXiv paper falls back to its arXiv page; one without an id has no link.
    assert papers[HOSTILE_TITLE]["url"] == "https://arxiv.org/abs/2403.00001"
    assert papers["Data Links in Metadata"]["url"] is None
    assert papers["Plain Links"]["url"] == "https://example.org/plain-links"


def _citation(url: str):  # type: ignore[no-untyped-def]
    from rag.types import Citation

    return Citation(n=1, paper_id="p", title="t", url=url, quote="q", start=0, end=1)


def test_links_already_stored_are_not_shown() -> None:
    from rag.types import PaperHit, Source

    bad = "javascript:alert(1)"
    assert _citation(bad).url is None
    assert PaperHit("p", "t", 1.0, "s", url=bad).url is None
    assert Source(1, "p", "t", "a", bad, 1.0, 1.0).url is None
    for url in ("data:x", "//evil.example/x", "http://", "https://a.example/<b>", "ftp://a.b/c"):
        assert _citation(url).url is None, url
    ok = "https://arxiv.org/abs/2403.00001"
    assert _citation(ok).url == ok


def test_openai_references_are_plain_text(hostile) -> None:  # type: ignore[no-untyped-def]
    import re

    c, _ = hostile
    r = c.post(
        "/v1/chat/completions",
        json={"model": "citeqa", "messages": [{"role": "user", "content": ZEBRA_QUESTION}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    text = body["choices"][0]["message"]["content"]
    cited = {cit["paper_id"]: cit for cit in body["citations"]}
    assert "2403.00001" in cited, text
    assert all(cit["url"] is None or cit["url"].startswith("https://") for cit in cited.values())
    n = cited["2403.00001"]["n"]
    assert (
        f"[{n}] Stripe \\<script\\>alert(1)\\</script\\> \\[click\\](javascript:alert(2)) "
        "Shortcuts\\_in \\*Zebra\\* Vision. <https://arxiv.org/abs/2403.00001>"
    ) in text
    assert "<script>" not in text and not re.search(r"(?<!\\)\]\(", text)
    # Every unescaped "<" opens an http(s) autolink; markers stay plain [n].
    assert re.findall(r"(?<!\\)<(?!https?://)", text) == []
    assert f"[{n}]" in text.partition("References:")[0]
    # A stream carries the same text.
    with c.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "citeqa",
            "stream": True,
            "messages": [{"role": "user", "content": ZEBRA_QUESTION}],
        },
    ) as s:
        import json

        pieces = [
            json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
            for line in s.iter_lines()
            if line.startswith("data:")
            and line.strip() != "data: [DONE]"
            and json.loads(line[5:])["choices"]
        ]
    assert "".join(pieces) == text


def test_plain_keeps_markers_but_not_links() -> None:
    from api.routes.openai_compat import plain

    assert plain("Trees vote [1]. See [2](javascript:x) and [3]: javascript:y", markers=True) == (
        "Trees vote [1]. See [2]\\(javascript:x) and [3]\\: javascript:y"
    )
    assert (
        plain("![img](x) `code` <b>|~", markers=True) == "\\!\\[img\\](x) \\`code\\` \\<b\\>\\|\\~"
    )
    assert plain("Title [1]") == "Title \\[1\\]"


def test_completions_message_cap_counts_system_messages(open_client: TestClient) -> None:
    system = [{"role": "system", "content": "be brief"}] * 500
    r = open_client.post(
        "/v1/chat/completions",
        json={"model": "citeqa", "messages": [*system, {"role": "user", "content": "trees?"}]},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "messages"
    within = [{"role": "system", "content": "be brief"}] * 63
    r = open_client.post(
        "/v1/chat/completions",
        json={"model": "citeqa", "messages": [*within, {"role": "user", "content": "trees?"}]},
    )
    assert r.status_code == 200, r.text


def test_readyz_names_no_filesystem_path(
    open_client: TestClient, sample_settings, sample_store, monkeypatch
) -> None:
    import api.routes.health as health
    from rag.index.store import StoreUnavailable

    data_dir = str(sample_settings.data_dir)
    r = open_client.get("/readyz")
    assert r.status_code == 200 and data_dir not in r.text
    assert r.json()["store"]["kind"] == "embedded"

    def llamacpp(*_a, **_k):  # type: ignore[no-untyped-def]
        return {"ok": True, "generator": "llamacpp", "model_path": "/opt/models/smol.gguf"}

    monkeypatch.setattr(health, "check_generator", llamacpp)
    llm = open_client.get("/readyz").json()["llm"]
    assert llm == {"ok": True, "generator": "llamacpp", "model": "smol.gguf"}

    def down() -> None:
        raise StoreUnavailable(f"Chroma at {sample_store.location} did not answer: [Errno 2]")

    monkeypatch.setattr(sample_store, "heartbeat", down)
    r = open_client.get("/readyz")
    assert r.status_code == 503 and data_dir not in r.text and "/opt/models" not in r.text
