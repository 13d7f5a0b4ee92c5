"""The README and the documentation pages: short README, links that resolve, no references outside
the repository, and a configuration reference that lists every schema field."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
# [text](target), with an optional title; images' ![alt](target) match too.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def load_hook():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "hooks" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relative_links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # absolute URL, mailto:, or an anchor on the same page
        targets.append(target)
    return targets


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 220, f"README.md has {n} lines; keep it to about 200 and move detail into docs/"


def test_there_are_pages():
    names = {p.relative_to(ROOT / "docs").as_posix() for p in PAGES}
    assert {"index.md", "method.md", "results.md", "configuration.md"} <= names


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files(path):
    broken = []
    for target in relative_links(path):
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).resolve().exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_references_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    for name in ("DESIGN.md", "../shared"):
        assert name not in text, f"{path.relative_to(ROOT)} mentions {name}, which readers do not have"


def test_configuration_page_has_the_marker():
    hook = load_hook()
    assert hook.MARKER in (ROOT / "docs" / hook.PAGE).read_text(encoding="utf-8")


def test_reference_lists_every_schema_field():
    hook = load_hook()
    import lvsweep.config.schema

    classes = hook.schema_classes()
    schemas = [c for c in vars(lvsweep.config.schema).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == "lvsweep.config.schema"]
    assert set(schemas) <= set(classes)
    paths = hook.config_paths()
    for cls in classes:
        path = paths.get(cls, cls.__name__)
        table = hook.schema_table(cls, path)
        for f in dataclasses.fields(cls):
            key = f"{path}.{f.name}" if path else f.name
            assert f"| `{key}` |" in table, f"{cls.__name__}.{f.name} is missing from the reference"
    reference = hook.reference()
    for cls in classes:
        assert f"### {cls.__name__}" in reference


def test_reference_lists_every_config_group_and_option():
    hook = load_hook()
    reference = hook.group_tables()
    conf = ROOT / "conf"
    for path in conf.rglob("*.yaml"):
        if path.parent == conf:
            continue
        group = path.parent.relative_to(conf).as_posix()
        assert f"### `{group}`" in reference
        if path.name.startswith("base_"):
            assert f"| `{path.stem}` |" not in reference
        else:
            assert f"| `{path.stem}` |" in reference, f"{group}/{path.name} is missing from the reference"
    for group in ("experiment", "search"):
        assert f"### `{group}`" in reference
