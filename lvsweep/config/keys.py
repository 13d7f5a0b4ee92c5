"""Unknown keys, with or without `+`: the composed config walked against the schemas, and the
nearest known key named ("did you mean trainer.epochs?"), never a schema's class name."""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Mapping, Optional, Sequence

from lvsweep.config.schema import LinearModelConfig, LvsweepConfig, MultiHeadModelConfig, TransformerModelConfig
from lvsweep.errors import LvsweepError, require

# The schema of each model, by `model.name` (each schema's default name is its option's name).
MODEL_SCHEMAS: dict[str, type] = {schema.name: schema for schema in (LinearModelConfig, MultiHeadModelConfig,
                                                                     TransformerModelConfig)}
# Mappings whose keys are not fixed by a schema: `system.params` is checked against the chosen
# system's parameter names when the system is built; tags are the user's own.
FREE_MAPPINGS = ("system.params", "tracking.tags", "estimate.priors")


def _schema_fields(schema: type) -> dict[str, Any]:
    """Field name → resolved type (the schemas use postponed annotations)."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _nested_schema(kind: Any) -> Optional[type]:
    return kind if isinstance(kind, type) and dataclasses.is_dataclass(kind) else None


def known_keys(schema: type = LvsweepConfig, prefix: str = "") -> list[str]:
    """Every dotted key a user can set, across all models: the candidates of "did you mean"."""
    keys: list[str] = []
    for name, kind in _schema_fields(schema).items():
        path = f"{prefix}{name}"
        keys.append(path)
        if schema is LvsweepConfig and name == "model":
            for model in MODEL_SCHEMAS.values():
                keys += [k for k in known_keys(model, "model.") if k not in keys]
        elif _nested_schema(kind):
            keys += known_keys(kind, f"{path}.")
    return keys


def nearest_key(path: str, candidates: Sequence[str] | None = None) -> Optional[str]:
    """The known key a mistyped `path` most likely meant: the closest full path, else the key whose
    last part is closest to the last part typed (`+epochs=5` → trainer.epochs)."""
    candidates = list(candidates) if candidates is not None else known_keys()
    close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.75)
    if close:
        return close[0]
    leaf = path.rpartition(".")[2]
    by_leaf: dict[str, str] = {}
    for key in candidates:
        by_leaf.setdefault(key.rpartition(".")[2], key)
    close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)
    if close:
        return by_leaf[close[0]]
    close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_problem(path: str, siblings: Sequence[str], where: str = "") -> str:
    """What to tell a user who set a key the schema does not have: the nearest known key and the
    keys allowed beside it, in the user's terms (never the names of internal schema classes)."""
    parent = path.rpartition(".")[0]
    near = [f"{parent}.{s}" if parent else str(s) for s in siblings]
    guess = nearest_key(path, [*near, *(k for k in known_keys() if k not in near)])
    hint = f"did you mean {guess}? " if guess and guess != path else ""
    where = where or parent or "the top level"
    return f"unknown key; {hint}keys of {where}: {', '.join(str(s) for s in siblings)}"


def check_keys(cfg: Mapping[str, Any] | Any) -> None:
    """Every key of the composed config must be one the schemas know. Hydra rejects an unknown
    key set without `+`; with `+` (or `++`) it adds the key, and a typo like `+trainer.epoch=5`
    would otherwise run in full and only show up as a stray param."""
    model_name = str(cfg["model"]["name"]) if "model" in cfg and "name" in cfg["model"] else None
    require(model_name is None or model_name in MODEL_SCHEMAS, "model.name",
             f"unknown model '{model_name}'; allowed: {', '.join(MODEL_SCHEMAS)}")
    _check_node(cfg, LvsweepConfig, "", model_name)


def _check_node(node: Any, schema: type, prefix: str, model_name: Optional[str]) -> None:
    fields = _schema_fields(schema)
    for key in list(node.keys()):
        path = f"{prefix}{key}"
        if not prefix and key == "hydra":  # Hydra's own settings
            continue
        if key not in fields:
            where = f"model (model={model_name})" if prefix == "model." else ""
            raise LvsweepError(path, unknown_key_problem(path, list(fields), where))
        if path in FREE_MAPPINGS:
            continue
        kind = MODEL_SCHEMAS.get(model_name or "") if path == "model" else _nested_schema(fields[key])
        value = node[key]
        if kind is not None and hasattr(value, "keys"):
            _check_node(value, kind, f"{path}.", model_name)


