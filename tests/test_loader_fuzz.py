"""Fuzzed loader input (hypothesis): truncated JSONL, wrong encodings, huge fields,
control characters, duplicate ids. Every bad record is reported with its line and
skipped, the good ones load, nothing raises, and nothing already stored is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.job import IngestJob
from ingest.loaders import Skipped, load
from ingest.loaders.common import MAX_ABSTRACT_CHARS
from rag.index.store import open_store
from rag.settings import Settings
from rag.types import Paper

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=60
)
good_text = st.text(
    alphabet="abcdefghij klmnop\u00e9\u4e2d\u0000\u0007\u202e\t", min_size=0, max_size=80
)


@st.composite
def jsonl_lines(draw) -> tuple[list[bytes], dict[int, str | None]]:  # type: ignore[no-untyped-def]
    """Lines of a JSONL file, and for each line number the paper id it should yield
    (None: it must be reported as skipped)."""
    lines: list[bytes] = []
    expect: dict[int, str | None] = {}
    ids = draw(st.lists(st.integers(0, 30), min_size=1, max_size=12))
    for number, i in enumerate(ids, start=1):
        kind = draw(
            st.sampled_from(
                ["good", "good", "truncated", "latin1", "huge", "empty", "array", "junk"]
            )
        )
        title = "Study " + draw(good_text)
        abstract = "Findings " + draw(good_text)
        record = {
            "id": f"2409.{i:05d}",
            "title": title,
            "abstract": abstract,
            "authors": draw(words),
        }
        if kind == "good":
            lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())).encode())
            expect[number] = f"2409.{i:05d}"
        elif kind == "truncated":
            raw = json.dumps(record).encode()
            lines.append(raw[: draw(st.integers(1, len(raw) - 1))])
            expect[number] = None
        elif kind == "latin1":
            record["authors"] = "Jos\u00e9 M\u00fcller"
            lines.append(json.dumps(record, ensure_ascii=False).encode("latin-1", "replace"))
            expect[number] = None
        elif kind == "huge":
            record["abstract"] = "x" * (MAX_ABSTRACT_CHARS + 1)
            lines.append(json.dumps(record).encode())
            expect[number] = None
        elif kind == "empty":
            record[draw(st.sampled_from(["title", "abstract"]))] = draw(
                st.sampled_from(["", " ", "\u0000"])
            )
            lines.append(json.dumps(record).encode())
            expect[number] = None
        elif kind == "array":
            lines.append(json.dumps([record]).encode())
            expect[number] = None
        else:
            junk = (
                draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ").replace(b"\r", b" ")
            )
            if not junk.strip():
                junk = b"{"
            lines.append(junk)
            try:
                json.loads(junk)
                expect[number] = "any"  # valid JSON by chance: either outcome is fine
            except ValueError:
                expect[number] = None
    return lines, expect


def _load_all(path: Path, fmt: str) -> list[tuple[int, Paper | Skipped]]:
    return list(load(str(path), fmt))


@FUZZ
@given(data=jsonl_lines())
def test_jsonl_every_line_is_a_paper_or_a_reported_skip(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    lines, expect = data
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = dict(_load_all(path, "jsonl"))
    for number, want in expect.items():
        assert number in got, f"line {number} vanished"
        item = got[number]
        if want is None:
            assert isinstance(item, Skipped) and item.line == number and item.reason
        elif want != "any":
            assert isinstance(item, Paper), item
            assert item.paper_id == want
            for text in (item.title, item.abstract, *item.authors):
                text.encode("utf-8")  # storable
                assert "\x00" not in text and "\x07" not in text


@FUZZ
@given(
    blob=st.binary(max_size=400),
    fmt=st.sampled_from(["csv", "bibtex", "listing", "jsonl", "ris", "csljson"]),
)
def test_random_bytes_never_crash_any_loader(tmp_path: Path, blob: bytes, fmt: str) -> None:
    path = tmp_path / "fuzz.bin"
    path.write_bytes(blob)
    n_lines = blob.count(b"\n") + blob.count(b"\r") + 1
    for line, item in _load_all(path, fmt):
        assert 1 <= line <= n_lines + 1
        if isinstance(item, Skipped):
            assert item.reason
        else:
            for text in (item.paper_id, item.title, item.abstract, *item.authors):
                text.encode("utf-8")


@FUZZ
@given(
    rows=st.lists(
        st.tuples(words, words, st.sampled_from(["", "2021", "x" * 200_000, "\u0000"])),
        max_size=6,
    )
)
def test_csv_with_odd_fields(tmp_path: Path, rows) -> None:  # type: ignore[no-untyped-def]
    import csv

    path = tmp_path / "fuzz.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["title", "abstract", "year"])
        writer.writerows(rows)
    items = _load_all(path, "csv")
    # An all-blank row is a blank line, not a record; every other row is one item.
    real = [r for r in rows if any(cell.strip() for cell in r)]
    assert len(items) == len(real)
    for (_, item), (_title, _abstract, _) in zip(items, real, strict=True):
        if isinstance(item, Paper):
            assert item.title and item.abstract
        else:
            assert item.reason


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.helpers import FakeEmbeddings

    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz-store"))
    store = open_store(settings)
    seed = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    seed.write_text(
        "\n".join(
            json.dumps(
                {"id": f"2301.{i:05d}", "title": f"Kept paper {i}", "abstract": f"Kept {i}."}
            )
            for i in range(5)
        )
    )
    job = IngestJob(store, FakeEmbeddings(), settings, progress=False)
    job.run([str(seed)])
    return job, {cid: doc for cid, doc, _ in store.iter_chunks(include_documents=True)}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=jsonl_lines())
def test_ingesting_fuzz_never_crashes_and_loses_nothing(tmp_path: Path, stored, data) -> None:  # type: ignore[no-untyped-def]
    job, before = stored
    lines, expect = data
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    summary = job.run([str(path)])
    bad = sorted(n for n, want in expect.items() if want is None)
    reported = sorted(e["line"] for e in summary.errors if "duplicate" not in e["reason"])
    assert set(bad) <= set(reported)
    assert summary.papers_read + summary.skipped == len(expect)
    after = {cid: doc for cid, doc, _ in job.store.iter_chunks(include_documents=True)}
    for cid, doc in before.items():
        assert after.get(cid) == doc


def test_very_long_tokens_are_stored_and_shown_as_data(tmp_path: Path, embeddings) -> None:
    """A 30,000-character 'word' (no spaces) and markup survive chunking, embedding
    (the tokenizer truncates) and BM25, and the paper is still found and shown whole."""
    from rag.retrieval.retrieve import make_retriever, search_papers

    settings = Settings(data_dir=tmp_path / "d")
    store = open_store(settings)
    token = "A" * 30_000
    abstract = (
        f"Glossolalic tokenizers split {token} into pieces. "
        "<img src=x onerror=alert(1)> We show that glossolalic tokenizers double the "
        "compression of byte-level vocabularies on code."
    )
    path = tmp_path / "long.jsonl"
    path.write_text(
        json.dumps({"id": "2410.00001", "title": "Glossolalic Tokenizers", "abstract": abstract})
        + "\n"
    )
    summary = IngestJob(store, embeddings, settings, progress=False).run([str(path)])
    assert summary.added == 1 and summary.chunks_written >= 2
    assert store.paper("2410.00001")["abstract"] == abstract
    retriever = make_retriever(settings, store, embeddings)
    for mode in ("hybrid", "bm25", "dense"):
        hits = search_papers("glossolalic tokenizers compression", retriever, 3, mode=mode)
        assert hits and hits[0].paper_id == "2410.00001"
        assert abstract[hits[0].start : hits[0].end] == hits[0].snippet
