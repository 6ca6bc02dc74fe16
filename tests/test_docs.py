"""The documentation stands on its own: every relative link in README.md and docs/ resolves
to a file in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), the target up to a space, ')' or '#'
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]*)(?:#[^)\s]*)?(?:\s+\"[^\"]*\")?\)")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    targets = [t for t in LINK.findall(text) if t]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_link_pattern_finds_links():
    """The check can fail: a page with a broken link is caught."""
    page = ROOT / "docs" / "paper.md"
    assert "study.md" in relative_links(page)
    assert LINK.findall("see [x](nowhere.md#part) and ![i](a/b.png)") == ["nowhere.md", "a/b.png"]
