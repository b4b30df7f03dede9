"""Byte ranges of a JSON Lines file, so one large file is read by many tasks at once.

A file is cut into ranges of bytes without looking inside it. The reader of a range
seeks to its start, skips to the next line start (the line it lands in belongs to
the range before), and reads whole lines while a line begins before the range's
end, so every line of the file is read by exactly one range and no range holds more
than one line of it in memory at a time.

Lines are what the whole-file loader (`load_jsonl`) sees: bytes decoded as UTF-8
with bad bytes kept as lone surrogates (reported, never stored), a BOM dropped at
the start of the file, and line breaks `\\n`, `\\r\\n` and a lone `\\r`; each line is
parsed by the same `parse_jsonl_line`. Line numbers are counted within the range
(`JsonlRange.lines` holds how many it had once read): whoever reads the ranges in
order adds the counts of the ranges before, which `LineNumbers` does, so nobody
has to read a file's beginning to number its end.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

from ingest.loaders.arxiv_jsonl import parse_jsonl_line
from ingest.loaders.common import Skipped
from rag.types import Paper

_BOM = b"\xef\xbb\xbf"


def split_ranges(size: int, parts: int) -> list[tuple[int, int]]:
    """`parts` adjacent byte ranges [start, end) covering `size` bytes (fewer if the
    file has fewer bytes than parts); an empty file is one empty range."""
    parts = max(1, min(parts, size))
    bounds = [size * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def ranges_of(path: str, split_bytes: int) -> list[tuple[int, int]]:
    """Ranges of about `split_bytes` bytes each."""
    size = os.path.getsize(path)
    return split_ranges(size, -(-size // max(1, split_bytes)))


class JsonlRange:
    """The records of the lines that begin in bytes [start, end) of a JSONL file,
    numbered from 1 within the range; iterate once."""

    def __init__(self, path: str, start: int, end: int, *, buffer: int = 1 << 20) -> None:
        self.path, self.start, self.end = path, start, end
        self.buffer = buffer
        self.lines = 0
        """Lines read so far (all of the range's once iteration has ended)."""

    def _raw_lines(self) -> Iterator[bytes]:
        with open(self.path, "rb", buffering=self.buffer) as fh:
            if self.start > 0:
                fh.seek(self.start - 1)
                if fh.read(1) != b"\n":
                    fh.readline()  # the rest of a line that began in the range before
            elif self.end > 0:
                # The file's first line begins at byte 0, BOM and all.
                first = fh.readline()
                yield first[len(_BOM) :] if first.startswith(_BOM) else first
            while fh.tell() < self.end:
                raw = fh.readline()
                if not raw:
                    return
                yield raw

    def __iter__(self) -> Iterator[tuple[int, Paper | Skipped]]:
        for raw in self._raw_lines():
            text = raw.decode("utf-8", errors="surrogateescape")
            # A lone \r breaks a line too, as in the whole-file loader's text mode.
            for line in io.StringIO(text, newline="") if "\r" in text else (text,):
                self.lines += 1
                item = parse_jsonl_line(self.path, self.lines, line)
                if item is not None:
                    yield self.lines, item


class LineNumbers:
    """File line numbers from range-local ones, for ranges read in file order."""

    def __init__(self) -> None:
        self._offset: dict[int, int] = {}
        self._next_part: dict[int, int] = {}

    def line(self, file: int, part: int, local: int) -> int:
        self._check(file, part)
        return self._offset.get(file, 0) + local

    def end_of_part(self, file: int, part: int, lines: int) -> None:
        """Range `part` of `file` is done and held `lines` lines."""
        self._check(file, part)
        self._offset[file] = self._offset.get(file, 0) + lines
        self._next_part[file] = part + 1

    def _check(self, file: int, part: int) -> None:
        expected = self._next_part.get(file, 0)
        if part != expected:
            raise RuntimeError(
                f"ranges arrived out of order (file {file}: part {part}, expected {expected})"
            )
