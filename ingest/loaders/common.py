"""What every loader shares: ids, whitespace, links, and the skip record."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from rag.types import Paper, has_userinfo, web_url

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CODE_LINK = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com|bitbucket\.org|huggingface\.co)/[^\s)\]}>,;\"']+",
    re.IGNORECASE,
)
# New-style (2301.01234v2) and old-style (hep-th/9901001) arXiv identifiers.
_ARXIV_ID = re.compile(
    r"^(?:\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$", re.IGNORECASE
)
_ARXIV_IN_TEXT = re.compile(
    r"arxiv(?:\.org/(?:abs|pdf)/|:\s*)(\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?",
    re.IGNORECASE,
)

MAX_TITLE_CHARS = 1_000
MAX_ABSTRACT_CHARS = 100_000
MAX_ID_CHARS = 200


class RecordError(ValueError):
    """A record that cannot become a paper; the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A record a loader could not use: where it was and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def clean_text(value: object) -> str:
    """Collapse whitespace and drop control characters, keeping the words."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    return _WS.sub(" ", _CONTROL.sub(" ", text)).strip()


def code_links(text: str) -> tuple[str, ...]:
    """Repository and model links cited inside an abstract, in order, deduplicated."""
    found = (m.group(0).rstrip(".") for m in _CODE_LINK.finditer(text))
    return tuple(dict.fromkeys(found))


def normalise_arxiv_id(value: object) -> str | None:
    """An arXiv id without its version suffix, or None when `value` is not one."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    match = _ARXIV_IN_TEXT.search(value)
    if match:
        value = match.group(1)
    if not _ARXIV_ID.match(value):
        return None
    return re.sub(r"v\d+$", "", value)


def slug_id(title: str) -> str:
    """A readable, stable id for a paper with no known identifier."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:48].rstrip("-")
    digest = hashlib.sha256(clean_text(title).lower().encode()).hexdigest()[:8]
    return f"{slug or 'paper'}-{digest}"


def _kind(value: object) -> str:
    """What a non-text value is, in the words of the JSON it most likely came from."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def text_field(name: str, value: object) -> str:
    """A title or abstract as clean text; absent is empty. Anything but a string is
    a bad record: str() of a list or an object is never a title."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{name} is {_kind(value)}, not text")
    return clean_text(value)


def clean_id(value: object) -> str | None:
    """The id a record gives, trimmed, or None when it gives none.

    Kept as given otherwise, so its owner can find, update and delete the paper by
    it: a RecordError says why an id cannot be used (not text, too long, control
    or format characters, whitespace other than a space, or a '/'-separated part
    that is empty, '.' or '..', which URL handling would merge or drop)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"id is {_kind(value)}, not text")
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        return None
    if _has_undecodable(text):
        raise RecordError("id: text is not valid UTF-8")
    if len(text) > MAX_ID_CHARS:
        raise RecordError(f"id longer than {MAX_ID_CHARS} characters")
    for char in text:
        if unicodedata.category(char).startswith("C") or (char.isspace() and char != " "):
            code = f"U+{ord(char):04X}"
            raise RecordError(f"id contains a control or whitespace character ({code})")
    if any(part in ("", ".", "..") for part in text.split("/")):
        raise RecordError("id has an empty, '.' or '..' part between slashes")
    return text


def arxiv_url(arxiv_id: str) -> str:
    return f"https://arxiv.org/abs/{arxiv_id}"


def make_paper(
    *,
    title: object,
    abstract: object,
    paper_id: object = None,
    arxiv_id: object = None,
    authors: tuple[str, ...] = (),
    year: object = None,
    url: str | None = None,
    categories: tuple[str, ...] = (),
    extra: dict[str, str] | None = None,
) -> Paper:
    """Validate and normalise one record; raises RecordError with the reason.

    The paper's id is its arXiv id when known (from `arxiv_id`, a field that may hold
    one, or from `paper_id`), else `paper_id`, the id the record gives (see
    `clean_id`), else a slug of the title.
    """
    title_s = text_field("title", title)
    abstract_s = text_field("abstract", abstract)
    for text in (title_s, abstract_s):
        if _has_undecodable(text):
            raise RecordError("text is not valid UTF-8")
    if not title_s:
        raise RecordError("empty title")
    if not abstract_s:
        raise RecordError("no abstract")
    if len(title_s) > MAX_TITLE_CHARS:
        raise RecordError(f"title longer than {MAX_TITLE_CHARS} characters")
    if len(abstract_s) > MAX_ABSTRACT_CHARS:
        raise RecordError(f"abstract longer than {MAX_ABSTRACT_CHARS} characters")
    if paper_id is not None and not isinstance(paper_id, str):
        raise RecordError(f"id is {_kind(paper_id)}, not text")
    aid = normalise_arxiv_id(arxiv_id) or normalise_arxiv_id(paper_id)
    given = None if aid else clean_id(paper_id)
    fields = {
        "authors": authors,
        "url": (url,) if url else (),
        "categories": categories,
        "metadata": tuple((extra or {}).values()),
    }
    for name, values in fields.items():
        if any(_has_undecodable(str(v)) for v in values):
            raise RecordError(f"{name}: text is not valid UTF-8")
    link = clean_text(url)
    notes: tuple[str, ...] = ()
    if link and web_url(link) is None:  # javascript:, data:, relative: never shown to clients
        notes = ("url dropped: not an absolute http(s) link",)
    elif has_userinfo(link):
        notes = ("credentials dropped from the url (user:password@)",)
    return Paper(
        paper_id=aid or given or slug_id(title_s),
        title=title_s,
        abstract=abstract_s,
        authors=tuple(a for a in (clean_text(x) for x in authors) if a),
        year=parse_year(year),
        url=web_url(link) or (arxiv_url(aid) if aid else None),
        categories=tuple(c for c in (clean_text(x) for x in categories) if c),
        code_links=code_links(abstract_s),
        extra={k: clean_text(v) for k, v in (extra or {}).items() if clean_text(v)},
        notes=notes,
    )


def _has_undecodable(text: str) -> bool:
    # Files are opened with errors="surrogateescape": bad bytes become lone surrogates.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def open_text(path: str):  # type: ignore[no-untyped-def]
    """Open a source file so that one badly encoded record cannot stop the rest."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def parse_year(value: object) -> int | None:
    if value is None or value == "":
        return None
    match = re.search(r"(1[89]\d\d|20\d\d)", str(value))
    return int(match.group(1)) if match else None


def split_names(value: object, sep: str = ",") -> tuple[str, ...]:
    """Split an author or category string; BibTeX style uses ' and '."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(clean_text(v) for v in value if clean_text(v))
    text = clean_text(value)
    if not text:
        return ()
    if sep == " and ":
        parts = re.split(r"\s+and\s+", text)
    else:
        parts = text.split(sep)
    return tuple(p.strip() for p in parts if p.strip())
