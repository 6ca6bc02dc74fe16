"""MkDocs hooks (``mkdocs.yml``, ``hooks:``) that keep the site in step with the repository
without pages to maintain by hand:

- ``index.md``, the site's home, is ``README.md`` with its ``docs/`` prefixes taken off its
  links, so the README is the landing page both on GitHub and on the site;
- ``reference/``, the API reference: one page per subpackage of ``bayes_spheres`` (its
  docstring, then each of its modules) and one per top-level module, found on disk, each
  made of mkdocstrings ``:::`` directives; listed in the nav's "API reference" section;
- the Sphinx roles of the docstrings (``:class:`Slice```) become code, linked where the
  name is a full path (``:func:`~bayes_spheres.pipeline.run```) that the reference holds.

A module added, moved or removed therefore changes the reference by itself; a docstring that
mkdocstrings cannot render fails ``mkdocs build --strict`` (``tests/test_docs_site.py``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "bayes_spheres"
REFERENCE = "API reference"


def _summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line, roles as code."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", first).replace("``", "`")


def reference_pages() -> list[tuple[str, str, list[str], str]]:
    """``(uri, module, submodules, summary)`` for each subpackage (its modules with it) and
    each top-level module of the package, as found on disk."""
    package = ROOT / PACKAGE
    pages = []
    for path in sorted(package.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            submodules = sorted(  # nested packages' modules too (kernels.fast)
                ".".join((PACKAGE, *m.relative_to(package).with_suffix("").parts))
                for m in path.rglob("*.py")
                if not m.name.startswith("_")
            )
            pages.append((path.name, submodules, path / "__init__.py"))
        elif path.suffix == ".py" and not path.name.startswith("_"):
            pages.append((path.stem, [], path))
    return [
        (f"reference/{name}.md", f"{PACKAGE}.{name}", submodules, _summary(source))
        for name, submodules, source in pages
    ]


def _defined_here(init: Path) -> list[str]:
    """The public names a package's ``__init__.py`` defines itself (not those it imports:
    they are documented in the module that defines them)."""
    names = []
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def _anchor(module: str) -> str:
    """The page's title, and its module's path as a target for cross-references (a module
    rendered without its own heading has none)."""
    return f"[](){{ #{module} }}\n# `{module}`"


def _page(module: str, submodules: list[str]) -> str:
    if not submodules:
        return f"{_anchor(module)}\n\n::: {module}\n"
    init = ROOT / module.replace(".", "/") / "__init__.py"
    members = _defined_here(init) or "false"
    lines = [_anchor(module), "", f"::: {module}", "    options:", f"      members: {members}"]
    for submodule in submodules:
        lines += ["", f"::: {submodule}", "    options:", "      show_root_heading: true"]
    return "\n".join(lines) + "\n"


def _index(pages) -> str:
    lines = [
        "# API reference",
        "",
        f"Generated from the docstrings of `{PACKAGE}` (a page per subpackage, with its",
        "modules, and a page per top-level module). The guides beside it say how the pieces",
        "are used: [Usage](../usage.md), [Configuration](../configuration.md),",
        "[Extending](../extending.md).",
        "",
        "| page | what it holds |",
        "|---|---|",
    ]
    for uri, module, _, summary in pages:
        # a pipe inside a code span does not end the table cell; one outside it would
        cell = re.sub(r"(`[^`]*`)|\|", lambda m: m.group(1) or "\\|", summary)
        lines.append(f"| [`{module}`]({Path(uri).name}) | {cell} |")
    return "\n".join(lines) + "\n"


def readme_as_index() -> str:
    text = (ROOT / "README.md").read_text()
    return re.sub(r"\]\(docs/", "](", text)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "index.md", content=readme_as_index()))
    pages = reference_pages()
    files.append(File.generated(config, "reference/index.md", content=_index(pages)))
    for uri, module, submodules, _ in pages:
        files.append(File.generated(config, uri, content=_page(module, submodules)))
    return files


def on_config(config):
    """Fill the nav's (empty) "API reference" section with the pages ``on_files`` makes."""
    for entry in config["nav"]:
        if isinstance(entry, dict) and REFERENCE in entry:
            entry[REFERENCE] = [
                {"Overview": "reference/index.md"},
                *({module: uri} for uri, module, _, _ in reference_pages()),
            ]
            return config
    raise ValueError(f"mkdocs.yml: the nav needs a section {REFERENCE!r} (it may be empty)")


ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):<code>([^<]+)</code>")
NAME = re.compile(r"(~?)(\.*[\w.]+)(\(\))?")


def _role(match: re.Match, module: str) -> str:
    text = "".join(match.group(1).split())  # a role's text may be wrapped over two lines
    if not (name := NAME.fullmatch(text)):
        return f"<code>{match.group(1)}</code>"
    tilde, name, call = name.group(1), name.group(2), name.group(3) or ""
    if name.startswith("."):  # relative to the page's module
        name = f"{module}.{name.lstrip('.')}"
    shown = (name.rsplit(".", 1)[-1] if tilde else name) + call
    if "." not in name:
        return f"<code>{shown}</code>"
    path = name if name.split(".")[0] in {PACKAGE, "pyro", "torch"} else f"{PACKAGE}.{name}"
    return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, page, config, files) -> str:
    """Sphinx roles in docstrings: ``:class:`Slice``` arrives as ``:class:<code>Slice</code>``;
    a full path becomes a cross-reference that mkdocs-autorefs resolves (or leaves as code)."""
    uri = page.file.src_uri
    if not uri.startswith("reference/"):
        return html
    module = f"{PACKAGE}.{Path(uri).stem}"
    return ROLE.sub(lambda match: _role(match, module), html)
