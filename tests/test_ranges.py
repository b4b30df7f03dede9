"""The byte-range reader that Ray's ingestion splits JSONL files with: read range by
range, in order, it gives exactly what the whole-file loader gives, for any number
of ranges: every line once, the same records, the same line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.loaders import Skipped
from ingest.loaders.arxiv_jsonl import load_jsonl
from ingest.loaders.ranges import JsonlRange, LineNumbers, ranges_of, split_ranges


def _record(i: int) -> bytes:
    return json.dumps(
        {"id": f"2401.{i:05d}", "title": f"Paper {i}", "abstract": f"Abstract number {i}. " * 3}
    ).encode()


def read_in_ranges(path: Path, parts: int) -> list[tuple[int, object]]:
    """Every range's records with file line numbers, as a driver reading in order."""
    numbers = LineNumbers()
    out: list[tuple[int, object]] = []
    for part, (start, end) in enumerate(split_ranges(path.stat().st_size, parts)):
        reader = JsonlRange(str(path), start, end, buffer=64)
        for local, item in reader:
            line = numbers.line(0, part, local)
            if isinstance(item, Skipped):
                item = Skipped(item.file, line, item.reason)
            out.append((line, item))
        numbers.end_of_part(0, part, reader.lines)
    return out


def test_split_ranges_cover_the_file_once() -> None:
    for size in (0, 1, 7, 1000):
        for parts in (1, 2, 3, 50, 2000):
            ranges = split_ranges(size, parts)
            assert ranges[0][0] == 0 and ranges[-1][1] == size
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
            assert all(s < e for s, e in ranges) or size == 0


def test_malformed_line_reported_with_its_file_line(tmp_path: Path) -> None:
    path = tmp_path / "papers.jsonl"
    lines = [_record(i) for i in range(40)]
    lines[17] = b'{"id": "broken", "title": '  # line 18
    lines[29] = b""  # a blank line still counts
    lines[33] = b'{"id": "x", "title": 5, "abstract": "a"}'  # line 34
    path.write_bytes(b"\n".join(lines) + b"\n")
    for parts in (1, 2, 3, 7, 40, len(path.read_bytes())):
        got = read_in_ranges(path, parts)
        skipped = [(line, item.reason) for line, item in got if isinstance(item, Skipped)]
        assert [line for line, _ in skipped] == [18, 34], parts
        assert skipped[0][1].startswith("not valid JSON")
        assert "title is a number" in skipped[1][1]
        papers = [item.paper_id for _, item in got if not isinstance(item, Skipped)]
        assert papers == [f"2401.{i:05d}" for i in range(40) if i not in (17, 29, 33)]
        assert [line for line, _ in got] == sorted({line for line, _ in got})


def test_ranges_of_uses_the_byte_budget(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(_record(i) for i in range(100)))
    size = path.stat().st_size
    assert len(ranges_of(str(path), size)) == 1
    assert len(ranges_of(str(path), 1000)) == -(-size // 1000)


_PIECES = st.sampled_from(
    [
        _record(1),
        _record(2),
        _record(3),
        b"",
        b"   ",
        b"{not json",
        b'{"id": "a", "title": "T", "abstract": "bad \xff byte"}',
        b'{"id": "r", "title":\r"T", "abstract": "split by a lone CR"}',
        b"[1, 2]",
        b'"\xe2\x82\xac euro"',
    ]
)


@given(
    st.booleans(),
    st.lists(st.tuples(_PIECES, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=12),
    st.booleans(),
    st.integers(min_value=1, max_value=400),
)
def test_any_split_reads_what_the_whole_file_loader_reads(
    tmp_path_factory: pytest.TempPathFactory,
    bom: bool,
    lines: list[tuple[bytes, bytes]],
    last_newline: bool,
    parts: int,
) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(text + end for text, end in lines)
    if lines and not last_newline:
        data = data[: -len(lines[-1][1])]
    path = tmp_path_factory.mktemp("ranges") / "f.jsonl"
    path.write_bytes(data)
    assert read_in_ranges(path, parts) == list(load_jsonl(str(path)))
