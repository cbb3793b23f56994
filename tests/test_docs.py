"""The documentation: the mkdocs site builds strictly, the README stays a newcomer's page and its links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT_BYTES = 15 * 1024

# [text](target) and ![alt](target); a target ends at whitespace or ')' (an optional "title" follows a space).
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _links(markdown: str) -> list[str]:
    """Link targets of a Markdown text, code blocks and inline code excluded (they show commands, not links)."""
    text = _FENCE.sub("", markdown)
    text = re.sub(r"`[^`\n]*`", "", text)
    return _LINK.findall(text)


def _anchors(page: Path) -> set[str]:
    """The heading ids of a Markdown page, as mkdocs' toc (and, for plain headings, GitHub) spells them."""
    from markdown.extensions.toc import slugify  # Python-Markdown: a dependency of mkdocs

    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)
    return {slugify(re.sub(r"[`*_]", "", h), "-") for h in headings}


def _nav_pages(nav) -> list[str]:
    """Every page path named in an mkdocs nav (nested sections included)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def _load_nav() -> list[str]:
    yaml = pytest.importorskip("yaml")  # mkdocs depends on PyYAML
    # mkdocs.yml may use !ENV / !relative tags; a loader that ignores unknown tags reads the nav regardless.
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    assert "nav" in config, "mkdocs.yml has no explicit nav"
    return _nav_pages(config["nav"])


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is needed: pip install -e '.[docs]'")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"),
                           "--config-file", str(ROOT / "mkdocs.yml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_LIMIT_BYTES, (f"README.md is {size} bytes, over {README_LIMIT_BYTES}: move the details into "
                                        "docs/ and link them")


def test_readme_relative_links_exist():
    links = _links(README.read_text(encoding="utf-8"))
    relative = [t for t in links if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^//", t)]
    assert relative, "README.md links to nothing in docs/"
    missing = [t for t in relative if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    bad_anchor = [t for t in relative if "#" in t and t.split("#", 1)[0].endswith(".md")
                  and t.split("#", 1)[1] not in _anchors(ROOT / t.split("#", 1)[0])]
    assert not bad_anchor, f"README.md links to headings that do not exist: {bad_anchor}"


def test_every_docs_page_is_in_nav():
    nav = set(_load_nav())
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages, "docs/ has no pages"
    assert not (pages - nav), f"pages under docs/ missing from mkdocs.yml's nav: {sorted(pages - nav)}"
    assert not (nav - pages), f"nav entries with no page under docs/: {sorted(nav - pages)}"


def test_link_parser_finds_links_outside_code():
    md = "see [a](docs/a.md) and ![b](img.png \"t\")\n```sh\n[no](x.md)\n```\n`[no](y.md)` [c](https://x.org)\n"
    assert _links(md) == ["docs/a.md", "img.png", "https://x.org"]
