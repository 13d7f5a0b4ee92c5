"""The wheel's package list in pyproject.toml covers the source tree: a subpackage missing from it
would install without its modules and fail only outside a checkout."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_source_tree_is_listed_for_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "lvsweep").rglob("__init__.py")
             if "conf" not in p.parent.relative_to(ROOT).parts}
    found |= {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "hydra_plugins").iterdir()
              if p.is_dir() and (p / "__init__.py").exists()} | {"hydra_plugins"}
    assert found | {"lvsweep.conf"} == listed
    assert setuptools["package-dir"]["lvsweep.conf"] == "conf" and (ROOT / "conf" / "config.yaml").is_file()
