"""Command-line edits of `hydra.sweeper.params`, rewritten into overrides Hydra can apply.

Hydra alone cannot do what a user means by these edits: `~hydra.sweeper.params` is refused (a
field of a structured config cannot be deleted), `hydra.sweeper.params={...}` merges into the
preset's params instead of replacing them, `hydra.sweeper.params.a.b=...` without `+` is refused
(the mapping is closed), a sweep as the value is refused in a multirun ("sweeping over Hydra's
configuration"), and a dotted key is split into nested mappings, so `~hydra.sweeper.params.model.lr`
cannot reach the preset's `model.lr` key. The CLI therefore rewrites each such edit before Hydra
composes the config:

- replacing the mapping (`=`, `++`, or `=null`, or `~`): the field is first reset to missing
  (`'???'`), then the new mapping is merged into it, so nothing of the preset's remains;
- one param (`hydra.sweeper.params.KEY=VALUE`, with or without `+`/`++`): merged as
  `{KEY: 'VALUE'}`, so KEY stays one dotted key and a sweep stays its text, parsed by the sweeper;
- removing one (`~hydra.sweeper.params.KEY` or `hydra.sweeper.params.KEY=null`): merged as
  `{KEY: null}`, which the search space reads as "not searched" (see `_search_space`).

Imports only Hydra's override parser: the CLI calls this before its heavy imports.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException

PARAMS = "hydra.sweeper.params"
PLAIN_STRING = re.compile(r"[A-Za-z_][\w\-./]*")
# A key Hydra's grammar reads back unchanged inside a dict literal.
PLAIN_KEY = re.compile(r"[A-Za-z_+][\w\-./@]*")


class NotRewritable(Exception):
    """An edit this module cannot express (a value that is not a mapping, an odd key): Hydra then
    sees it as given and reports it, and the CLI turns that report into one line."""


def format_value(value: Any) -> str:
    """A value as Hydra override text that parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if PLAIN_STRING.fullmatch(text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def value_text(value: Any) -> str:
    """A parsed override value (sweeps included) as the sweep syntax the search space parses."""
    if isinstance(value, (ChoiceSweep, IntervalSweep, RangeSweep)):
        if isinstance(value, ChoiceSweep):
            body = f"choice({', '.join(value_text(v) for v in value.list)})"
        elif isinstance(value, IntervalSweep):
            body = f"interval({value.start!r}, {value.end!r})"
        else:
            step = "" if value.step is None else f", {value.step!r}"
            body = f"range({value.start!r}, {value.stop!r}{step})"
        return f"tag({', '.join(sorted(value.tags))}, {body})" if value.tags else body
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, Glob):  # kept as typed, so that the search space says it cannot search it
        exclude = f", exclude=[{', '.join(map(format_value, value.exclude))}]" if value.exclude else ""
        return f"glob([{', '.join(map(format_value, value.include))}]{exclude})"
    if value is None or isinstance(value, (str, bool, int, float)):
        return format_value(value)
    raise NotRewritable(type(value).__name__)


def entries(value: Any, prefix: str, raw: Optional[str] = None) -> dict[str, Optional[str]]:
    """Flat `{dotted key: sweep text or None}` for the value given to `prefix`; `raw` is the
    user's own text of a top-level value, kept as typed (`1e-4` stays `1e-4`)."""
    if isinstance(value, Mapping):
        flat: dict[str, Optional[str]] = {}
        for key, item in value.items():
            flat.update(entries(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if value is None:
        return {prefix: None}
    if isinstance(value, str):
        return {prefix: value}
    return {prefix: raw if raw is not None else value_text(value)}


def merge_line(flat: Mapping[str, Optional[str]]) -> str:
    """`++hydra.sweeper.params={...}` merging these keys in as they are (a dotted key stays one key)."""
    bad = [key for key in flat if not PLAIN_KEY.fullmatch(key)]
    if bad:
        raise NotRewritable(bad[0])
    items = ", ".join(f"{key}: {'null' if text is None else format_value(text)}" for key, text in flat.items())
    return f"++{PARAMS}={{{items}}}"


def rewrite(override: Override) -> list[str]:
    """The overrides doing what this edit of `hydra.sweeper.params` means (see the module's doc)."""
    key = override.key_or_group
    value = None if override.is_delete() else override.value()
    raw = (override.input_line or "").partition("=")[2].strip() or None
    if key == PARAMS:
        if value is not None and not isinstance(value, Mapping):
            raise NotRewritable(key)  # not a mapping: Hydra says so, the CLI names the field
        if override.is_add() and value is not None:  # `+`: add these params to the preset's
            return [merge_line(entries(value, ""))]
        return [f"{PARAMS}='???'", merge_line(entries(value or {}, ""))]
    name = key[len(PARAMS) + 1:]
    return [merge_line(entries(value, name, raw if override.is_sweep_override() else None))]


def search_space_edits(args: Sequence[str]) -> list[str]:
    """The command line with every edit of `hydra.sweeper.params` rewritten; all else untouched
    (an argument that does not parse is left for Hydra to report)."""
    parser = OverridesParser.create()
    out: list[str] = []
    for arg in args:
        if not arg.lstrip("~+").startswith(PARAMS):
            out.append(arg)
            continue
        try:
            override = parser.parse_override(arg)
            key = override.key_or_group
            if override.package is not None or not (key == PARAMS or key.startswith(PARAMS + ".")):
                raise NotRewritable(key)
            out += rewrite(override)
        except (HydraException, NotRewritable):
            out.append(arg)
    return out
