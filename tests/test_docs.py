"""The documentation: the generated configuration reference matches the settings, every
relative link and anchor in README.md and docs/ resolves, the README stays a front page,
and the MkDocs site builds with strict link validation."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.helpers import in_ci

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 200

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked (links there are examples)."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return _CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), text)


def _heading_text(raw: str) -> str:
    """What a heading reads as once rendered: markup gone, link text kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "").replace("*", "")


def slug_mkdocs(heading: str) -> str:
    """Python-Markdown's toc `slugify` (what MkDocs uses by default)."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def slug_github(heading: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, each space a hyphen."""
    value = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return value.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors a link into `path` may use on both GitHub and the MkDocs site."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found: list[set[str]] = []
    for slug, dup in ((slug_mkdocs, "_{}"), (slug_github, "-{}")):
        seen: dict[str, int] = {}
        out: set[str] = set()
        for m in _HEADING.finditer(text):
            base = slug(_heading_text(m.group(2)))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else base + dup.format(n))
        found.append(out)
    return found[0] & found[1]


def broken_links(files: list[Path]) -> list[str]:
    """`file:line: target (why)` for every relative link whose file or anchor is missing."""
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    for md in files:
        text = _without_code(md.read_text(encoding="utf-8"))
        for m in _LINK.finditer(text):
            target = m.group(1)
            if not target or _SCHEME.match(target) or target.startswith("//"):
                continue
            line = text.count("\n", 0, m.start()) + 1
            path_part, _, anchor = target.partition("#")
            dest = (md.parent / path_part).resolve() if path_part else md
            shown = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md.name
            where = f"{shown}:{line}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
                continue
            if anchor:
                if dest.suffix != ".md":
                    problems.append(f"{where} (anchor into a file that is not Markdown)")
                    continue
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor not in cache[dest]:
                    problems.append(f"{where} (no heading with that anchor)")
    return problems


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_configuration_reference_is_generated_from_the_settings() -> None:
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(["--check"]) == 0, "run: python docs/gen_config.py"


def test_every_relative_link_and_anchor_resolves() -> None:
    files = doc_files()
    assert len(files) > 5
    assert broken_links(files) == []


def test_the_checker_reports_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "answer.png").write_bytes(b"")
    (tmp_path / "api.md").write_text("# API\n\n## Errors\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n## Two words\n\n"
        "[ok](api.md#errors) [ok](#two-words) ![ok](img/answer.png)\n"
        "[gone](nowhere.md) [bad anchor](api.md#no-such-heading) [bad](#two-word)\n"
        "`[in code](missing.md)` [web](https://example.org/x#y)\n"
        "```\n[in a fence](missing.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links([page])
    assert [p.split(": ", 1)[1] for p in problems] == [
        "nowhere.md (no such file)",
        "api.md#no-such-heading (no heading with that anchor)",
        "#two-word (no heading with that anchor)",
    ]
    assert problems[0].startswith("page.md:6: ")


def test_slugs_follow_mkdocs_and_github() -> None:
    assert slug_mkdocs("1. Rewrite") == slug_github("1. Rewrite") == "1-rewrite"
    assert slug_mkdocs("Chroma's sync_threshold") == "chromas-sync_threshold"
    assert slug_github("Chroma's sync_threshold") == "chromas-sync_threshold"
    # They differ on runs of spaces and hyphens: only anchors both accept are valid.
    assert slug_mkdocs("a - b") == "a-b" and slug_github("a - b") == "a---b"


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"
    image = ROOT / "docs" / "img" / "answer.png"
    assert image.stat().st_size < 300_000  # a front-page picture, not a blob


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        if in_ci():
            pytest.fail("mkdocs is not installed (the dev extra installs it)", pytrace=False)
        pytest.skip("mkdocs is not installed: pip install -e '.[dev]'")
    # No -q: mkdocs counts strict-mode warnings only as it logs them, so a quiet build
    # with a broken anchor exits 0.
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()
