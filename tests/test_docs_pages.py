"""Pages that list what the project has stay complete: every extra of pyproject.toml is
named in Getting started's install section, and every API page in the nav (mkdocs.yml)
is linked from the API reference index."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def _section(page: Path, heading: str) -> str:
    """The text of a ``## heading`` section of a Markdown page, up to the next ``## ``."""
    text = page.read_text()
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_every_extra_is_named_in_getting_started():
    install = _section(ROOT / "docs" / "getting-started.md", "Install")
    named = set(re.findall(r"`([a-z0-9-]+)`", install))
    missing = sorted(set(_extras()) - named)
    assert not missing, f"extras not named in Getting started's Install section: {missing}"


def test_the_plot_extra_is_matplotlib_and_bench_includes_it():
    extras = _extras()
    assert [re.split(r"[<>=!~ ]", d)[0] for d in extras["plot"]] == ["matplotlib"]
    assert set(extras["plot"]) <= set(extras["bench"])


def _nav_pages(nav) -> list[str]:
    """Every page path in a mkdocs nav (nested lists of ``title: path`` mappings)."""
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_api_page_in_the_nav_is_linked_from_the_api_index():
    # mkdocs.yml has a !!python/name tag: read it with a loader that leaves tags alone.
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)["nav"]
    api = [p.removeprefix("api/") for p in _nav_pages(nav)
           if p.startswith("api/") and p != "api/index.md"]
    assert len(api) >= 12, api  # the nav was read: rl, rl.config, ... rl.checkpoint
    index = (ROOT / "docs" / "api" / "index.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", index))
    missing = sorted(set(api) - linked)
    assert not missing, f"API pages in the nav but not linked from docs/api/index.md: {missing}"


def test_no_file_holds_merge_conflict_markers():
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    marked = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".cfg"} \
                or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "=======":
                marked.append(f"{name}:{n}")
    assert not marked, marked
