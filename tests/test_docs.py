"""The documentation's links: README.md is a short entrance, and every relative link and `#anchor` in it and in
docs/ resolves, as GitHub renders them.

Anchors follow GitHub's heading slugs (github-slugger): the heading's text as rendered (inline code, emphasis and
link markup gone), lower-cased, every character that is not a letter, digit, mark, `_`, `-` or space removed, each
space a `-`; a repeated slug gets `-1`, `-2`, ... Links inside code blocks and code spans are not links and are not
checked; links with a scheme (https:, mailto:) are left to the reader.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_ATTR = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for no, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            out.append((no, line))
    return out


def _rendered_text(heading: str) -> str:
    """A heading's text as GitHub renders it: code spans keep their content, link and emphasis markup goes."""
    text = _CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("*", "")


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading (before de-duplication)."""
    kept = (c for c in _rendered_text(heading).lower()
            if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return "".join(kept).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor GitHub gives the headings of a Markdown text, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(text):
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code: inline, reference definitions, HTML."""
    out = []
    for no, line in _prose_lines(text):
        m = _REF_DEF.match(line)
        if m:
            out.append((no, m.group(1)))
            continue
        prose = _CODE_SPAN.sub("", line)
        out += [(no, t) for t in _INLINE_LINK.findall(prose)]
        out += [(no, t) for t in _HTML_ATTR.findall(prose)]
    return out


def broken_links(md: Path, root: Path) -> list[str]:
    """'file:line: target: why' for every relative link or anchor of `md` that does not resolve inside `root`."""
    problems = []
    rel = md.relative_to(root)
    for no, target in links(md.read_text(encoding="utf-8")):
        if _SCHEME.match(target):
            continue
        path_part, _, anchor = unquote(target).partition("#")
        dest = (md.parent / path_part).resolve() if path_part else md.resolve()
        where = f"{rel}:{no}: {target}"
        if not target:
            problems.append(f"{where}: empty link")
        elif not dest.is_relative_to(root.resolve()):
            problems.append(f"{where}: leaves the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix.lower() != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(root.resolve())}")
    return problems


def _doc_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# --- the checker itself, on hand-made pages (so a checker that accepts everything fails here) ---


def test_slugs_follow_github():
    assert github_slug("What `cunet export` verifies") == "what-cunet-export-verifies"
    assert github_slug("A few of them on the demo's artifacts (real output)") == \
        "a-few-of-them-on-the-demos-artifacts-real-output"
    assert github_slug("The demo: `make demo`") == "the-demo-make-demo"
    assert github_slug("Low-bit models (ECCV paper)") == "low-bit-models-eccv-paper"
    assert github_slug("**Bold** and [a link](x.md) — 256² input") == "bold-and-a-link--256²-input"
    assert github_slug("snake_case names") == "snake_case-names"
    assert anchors("# Usage\n## Usage\n```\n# Usage\n```\n## Usage\n") == {"usage", "usage-1", "usage-2"}


def test_checker_finds_each_kind_of_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n## Two words\n", encoding="utf-8")
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    (tmp_path / "README.md").write_text(
        "# Top\n"
        "[ok](docs/page.md) [ok](docs/page.md#two-words) ![ok](pic.png) [ok](#top) [web](https://x.org/#nope)\n"
        "[missing](docs/nope.md)\n"
        "[bad anchor](docs/page.md#three-words)\n"
        "[bad local](#bottom)\n"
        '<img src="gone.png">\n'
        "[ref]: docs/gone.md\n"
        "[escape](../outside.md)\n"
        "`[code](nope.md)`\n"
        "```\n[fenced](nope.md)\n```\n",
        encoding="utf-8",
    )
    found = broken_links(tmp_path / "README.md", tmp_path)
    assert [p.split(":")[1] for p in found] == ["3", "4", "5", "6", "7", "8"], found
    assert "no such file" in found[0] and "#three-words" in found[1] and "#bottom" in found[2]
    assert "leaves the repository" in found[5]


# --- the real documentation ---


def test_readme_is_an_entrance():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    text = "\n".join(lines)
    for command in ("make demo", "make test"):
        assert command in text


def test_every_doc_page_is_linked_from_the_readme():
    readme = ROOT / "README.md"
    linked = {(ROOT / unquote(t).partition("#")[0]).resolve()
              for _, t in links(readme.read_text(encoding="utf-8")) if not _SCHEME.match(t)}
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages, "docs/ has no pages"
    unlinked = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("md", _doc_files(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(md):
    assert not broken_links(md, ROOT), "\n".join(broken_links(md, ROOT))
