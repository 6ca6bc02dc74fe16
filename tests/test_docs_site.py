"""The documentation site (mkdocs.yml) builds strictly: a broken link, anchor, nav entry or
cross-reference, or a docstring mkdocstrings cannot render, fails the build and this test.
The README is its home page and the API reference has a page per subpackage and module
(docs/hooks/site.py); the README stays a landing page; LICENSE and CITATION.cff exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_docs import PAGES, relative_links

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = sorted(p.parent.name for p in (ROOT / "bayes_spheres").glob("*/__init__.py"))


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    return subprocess.run(
        [*command, "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    built = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr}"
    return site


def test_the_site_builds_strictly_with_every_page(site):
    pages = ["index.html", "tutorial/index.html", "usage/index.html", "reference/index.html"]
    pages += [f"{p.stem}/index.html" for p in (ROOT / "docs").glob("*.md")]
    missing = [page for page in pages if not (site / page).exists()]
    assert not missing, missing
    # the home page is the README, its links into docs/ made site links
    home = (site / "index.html").read_text()
    assert "Set-up: two commands" in home and 'href="usage/"' in home


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_the_api_reference_has_a_page_per_subpackage_with_its_modules(site, subpackage):
    page = (site / "reference" / subpackage / "index.html").read_text()
    modules = [m.stem for m in (ROOT / "bayes_spheres" / subpackage).glob("[!_]*.py")]
    assert modules
    for module in modules:  # each module rendered under its own heading
        assert f'id="bayes_spheres.{subpackage}.{module}"' in page, module


def test_docstrings_render_as_documentation(site):
    """Sphinx fields become a parameter table, roles become code (linked where resolvable)."""
    page = (site / "reference" / "kernels" / "index.html").read_text()
    assert 'id="bayes_spheres.kernels.slice.Slice"' in page
    assert 'id="bayes_spheres.kernels.settings.SliceSettings"' in page
    assert "Parameters:" in page
    assert ":class:<code>" not in page and ":func:<code>" not in page


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The check can fail: the project's validation settings, on a page with broken links."""
    validation = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["validation"]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [a page](nowhere.md).\n")
    (docs / "other.md").write_text("# Other\n\nSee [home](index.md#no-such-heading).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(yaml.safe_dump({"site_name": "t", "validation": validation}))
    built = mkdocs_build(config, tmp_path / "site")
    assert built.returncode != 0
    assert "nowhere.md" in built.stderr and "no-such-heading" in built.stderr


def test_the_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for command in ("make study", "make test"):
        assert command in readme
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_no_page_links_outside_the_repository():
    for page in PAGES:
        for target in relative_links(page):
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{page.name} links outside: {target}"


def test_licence_and_citation():
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    (paper,) = citation["references"]
    assert "Bayesian Adversarial Spheres" in paper["title"]
    assert [a["family-names"] for a in paper["authors"]] == ["Bekasov", "Murray"]
    assert re.search(r"1811\.12335", str(paper["identifiers"]))
