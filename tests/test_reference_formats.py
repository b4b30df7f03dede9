"""RIS and CSL-JSON loaders: a Zotero-like library of 300 entries in both exports,
the identifiers a library keeps, and bad input reported with its line or index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.loaders import Skipped, detect_format, load
from tests.reflib import library, to_csljson, to_ris


def _split(items):
    papers = [i for _, i in items if not isinstance(i, Skipped)]
    skipped = [i for _, i in items if isinstance(i, Skipped)]
    return papers, skipped


@pytest.fixture(scope="module")
def entries():
    return library()


@pytest.mark.parametrize("fmt", ["csljson", "ris"])
def test_zotero_library_loads_with_the_users_ids(tmp_path: Path, entries, fmt: str) -> None:
    path = tmp_path / ("My Library.json" if fmt == "csljson" else "My Library.ris")
    path.write_text(to_csljson(entries) if fmt == "csljson" else to_ris(entries))
    assert detect_format(str(path)) == fmt
    papers, skipped = _split(list(load(str(path))))
    with_abstract = [e for e in entries if e.abstract]
    assert len(entries) == 300 and len(papers) == len(with_abstract)
    assert [p.paper_id for p in papers] == [e.expected_id for e in with_abstract]
    kinds = {e.kind for e in with_abstract}
    assert kinds == {"arxiv", "doi", "pmid", "citekey", "uri"}
    by_id = {p.paper_id: p for p in papers}
    for e in with_abstract:
        p = by_id[e.expected_id]
        assert p.title == e.title and p.abstract == e.abstract and p.year == e.year
        assert p.authors[0] == f"{e.authors[0][0]}, {e.authors[0][1]}"
        if e.doi:
            assert p.extra["doi"] == e.doi
        if e.pmid:
            assert p.extra["pmid"] == e.pmid and p.paper_id == f"pmid{e.pmid}"
        if e.arxiv:
            assert p.url == f"https://arxiv.org/abs/{e.arxiv}" or p.url == e.url
    # Every entry without an abstract is reported at its line, never stored.
    assert len(skipped) == len(entries) - len(with_abstract)
    assert all("no abstract" in s.reason and s.line > 0 for s in skipped)
    text = path.read_text().splitlines()
    for s in skipped:
        if fmt == "ris":
            assert text[s.line - 1].startswith("TY  -")
        else:
            assert text[s.line - 1].strip() == "{"
    if fmt == "ris":  # only RIS carries attachments: the report says where the text is
        with_pdf = [e for e in entries if e.attachment]
        assert with_pdf and sum("file attachment (files/" in s.reason for s in skipped) == len(
            with_pdf
        )
    # A note counts when it holds more than ids ("PMID: 123" is Zotero's Extra field).
    noted = [e for e in entries if not e.abstract and e.note and "Read:" in e.note]
    assert noted and sum("it has a note" in s.reason for s in skipped) == len(noted)


def test_json_is_told_apart_by_content(tmp_path: Path) -> None:
    lines = tmp_path / "a.json"
    lines.write_text(json.dumps({"title": "T", "abstract": "A."}) + "\n")
    csl = tmp_path / "b.json"
    csl.write_text(" \n[]")
    named = tmp_path / "c.csl.json"
    named.write_text("{}")
    assert detect_format(str(lines)) == "jsonl"
    assert detect_format(str(csl)) == "csljson"
    assert detect_format(str(named)) == "csljson"
    assert detect_format(str(tmp_path / "not-yet-uploaded.json")) == "jsonl"
    # One object over several lines is not JSON Lines: read as CSL-JSON, it is one
    # clear error, not one per line; a broken first line of JSON Lines stays JSONL.
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps({"id": "x", "title": "T", "abstract": "A."}, indent=2))
    assert detect_format(str(pretty)) == "csljson"
    (_, only), *rest = list(load(str(pretty)))
    assert rest == [] and "must be a list" in only.reason and only.line == 1
    broken = tmp_path / "broken.json"
    broken.write_text('{"title": "cut\n' + json.dumps({"title": "T", "abstract": "A."}) + "\n")
    assert detect_format(str(broken)) == "jsonl"
    assert [type(i).__name__ for _, i in load(str(broken))] == ["Skipped", "Paper"]


_RIS_OK = "TY  - JOUR\nTI  - Kept {n}\nAB  - An abstract {n}.\nDO  - 10.1000/k{n}\nER  - \n"


def test_truncated_ris_reports_the_open_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "cut.ris"
    src.write_text(
        _RIS_OK.format(n=1)
        + "TY  - JOUR\nTI  - Never closed\nAB  - Its abstract\n"  # line 6: ER missing
        + _RIS_OK.format(n=2)  # line 9
        + "ER  - \n"  # line 14: closes nothing
        + "stray words\n"  # line 15
        + "TY  - JOUR\nTI  - Cut off\nAB  - The file ends in the mid"  # line 16
    )
    papers, skipped = _split(list(load(str(src))))
    assert [p.paper_id for p in papers] == ["10.1000/k1", "10.1000/k2"]
    assert [(s.line, s.reason.split(":")[0]) for s in skipped] == [
        (6, "entry not closed"),
        (14, "'ER  -' line with no entry open"),
        (15, "text outside an entry (no 'TY  -' before it)"),
        (16, "entry not closed"),
    ]
    assert "truncated" in skipped[-1].reason


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"id": "x", "title": "T", "abstract": "A."}', "holds an object"),
        ('"a string"', "holds text"),
        ("", "empty file"),
        ("<html>", "holds not JSON"),
    ],
)
def test_csljson_that_is_not_a_list_is_one_clear_error(tmp_path: Path, text: str, why) -> None:
    src = tmp_path / "lib.csljson"
    src.write_text(text)
    papers, skipped = _split(list(load(str(src))))
    assert papers == [] and len(skipped) == 1 and skipped[0].line == 1
    assert why in skipped[0].reason


def test_csljson_bad_entries_are_reported_by_index_and_line(tmp_path: Path) -> None:
    good = {"id": "good", "title": "Good", "abstract": "Fine text."}
    entries = [
        good,
        {"id": "t", "title": ["a", "list"], "abstract": "x"},
        {"id": "a", "title": "T", "abstract": {"text": "obj"}},
        {"id": "d", "title": "T", "abstract": "x", "DOI": 10.1},
        {"id": "au", "title": "T", "abstract": "x", "author": "Smith, J."},
        {"id": 7, "title": "Numeric id is allowed", "abstract": "CSL allows numbers."},
        "just a string",
        {"id": "big", "title": "Huge", "abstract": "word " * 2_100_000},  # > 10 MB
        {"id": "last", "title": "Last", "abstract": "Still read."},
    ]
    src = tmp_path / "lib.json"
    src.write_text("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")
    assert src.stat().st_size > 10_000_000
    items = list(load(str(src)))
    papers, skipped = _split(items)
    assert [p.paper_id for p in papers] == ["good", "7", "last"]
    reasons = {s.line: s.reason for s in skipped}
    assert reasons == {
        3: "entry [1] 't': title is a list, not text",
        4: "entry [2] 'a': abstract is an object, not text",
        5: "entry [3] 'd': DOI is a number, not text",
        6: "entry [4] 'au': author is text, not a list of names",
        8: "entry [6] is text, not an object",
        9: "entry [7] 'big': abstract longer than 100000 characters",
    }


def test_csljson_cut_off_keeps_the_entries_before_the_cut(tmp_path: Path) -> None:
    src = tmp_path / "cut.json"
    first = json.dumps({"id": "one", "title": "One", "abstract": "First."})
    src.write_text("[\n" + first + ",\n" + '{"id": "two", "title": "Tw')
    papers, skipped = _split(list(load(str(src))))
    assert [p.paper_id for p in papers] == ["one"]
    assert len(skipped) == 1 and skipped[0].line == 3
    assert skipped[0].reason.startswith("entry [1]: not valid JSON")
    src.write_text("[\n" + first + "\n")
    papers, skipped = _split(list(load(str(src))))
    assert [p.paper_id for p in papers] == ["one"]
    assert "ends before the list's ']'" in skipped[0].reason


def test_ris_an_entry_of_10_mb_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    src = tmp_path / "big.ris"
    huge = "TY  - JOUR\nTI  - Huge\nAB  - " + "word " * 2_100_000 + "\nER  - \n"
    src.write_text(_RIS_OK.format(n=1) + huge + _RIS_OK.format(n=2))
    papers, skipped = _split(list(load(str(src))))
    assert [p.paper_id for p in papers] == ["10.1000/k1", "10.1000/k2"]
    assert [(s.line, s.reason) for s in skipped] == [
        (6, "entry 'Huge': abstract longer than 100000 characters")
    ]


def test_identifiers_normalised(tmp_path: Path) -> None:
    src = tmp_path / "ids.ris"
    src.write_text(
        "TY  - JOUR\nTI  - A\nAB  - x.\nDO  - https://doi.org/10.5555/ABC.1\nER  - \n"
        "TY  - JOUR\nTI  - B\nAB  - y.\nDO  - 10.48550/arXiv.2106.09685\nER  - \n"
        "TY  - JOUR\nTI  - C\nAB  - z.\nN1  - PMID: 123456\nER  - \n"
        "TY  - JOUR\nTI  - D\nAB  - w.\nUR  - https://arxiv.org/abs/hep-th/9901001v2\nER  - \n"
    )
    papers, skipped = _split(list(load(str(src))))
    assert skipped == []
    assert [p.paper_id for p in papers] == [
        "10.5555/ABC.1",
        "2106.09685",
        "pmid123456",
        "hep-th/9901001",
    ]


_TAGS = ["TY", "ER", "TI", "T1", "AB", "AU", "DO", "ID", "AN", "UR", "L1", "N1", "PY", "KW", "ZZ"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["id", "title", "abstract", "author", "DOI", "issued", "note", "URL"]),
        inner,
        max_size=6,
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(_TAGS), st.text(max_size=40)) | st.text(max_size=20),
        max_size=30,
    )
)
def test_ris_fuzz_every_entry_is_a_paper_or_a_reported_skip(tmp_path: Path, lines) -> None:  # type: ignore[no-untyped-def]
    text = "\n".join(f"{x[0]}  - {x[1]}" if isinstance(x, tuple) else x for x in lines)
    path = tmp_path / "fuzz.ris"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    opened = sum(1 for x in lines if isinstance(x, tuple) and x[0] == "TY")
    items = list(load(str(path)))
    assert sum(1 for _, i in items if not isinstance(i, Skipped)) <= opened
    for _, item in items:
        if isinstance(item, Skipped):
            assert item.reason and item.line >= 1
        else:
            assert item.paper_id and item.abstract
            item.abstract.encode("utf-8")  # storable


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=_json)
def test_csljson_fuzz_never_crashes(tmp_path: Path, value) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "fuzz.csljson"
    path.write_text(json.dumps(value), encoding="utf-8", errors="surrogatepass")
    items = list(load(str(path)))
    # One result per entry of a list (a paper or a reported skip); one error otherwise.
    assert len(items) == (len(value) if isinstance(value, list) else 1)
    if not isinstance(value, list):
        assert isinstance(items[0][1], Skipped)
    for _, item in items:
        assert item.reason if isinstance(item, Skipped) else item.paper_id
