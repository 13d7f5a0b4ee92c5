"""The configuration: where the YAML lives, its schemas, unknown-key checks and range checks.

- `schema`: one dataclass per group, registered with Hydra as `base_*`;
- `keys`: unknown keys rejected with the nearest known one;
- `validation`: ranges and cross-field rules, checked before any work starts.
"""
from __future__ import annotations

from pathlib import Path

from lvsweep.config.validation import validate

# The configs travel inside the package (the repository's top-level conf/ is mapped to
# lvsweep.conf), so an installed wheel finds them wherever it is run from: Hydra through
# pkg://lvsweep.conf, the help text through the folder that module lives in.
CONF_MODULE = "lvsweep.conf"


def conf_dir() -> Path:
    """The folder holding config.yaml and the groups, in a checkout or an installed wheel."""
    from importlib.resources import files

    return Path(str(files(CONF_MODULE)))

__all__ = ["CONF_MODULE", "conf_dir", "validate"]
