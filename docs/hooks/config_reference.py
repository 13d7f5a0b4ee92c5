"""MkDocs hook: the configuration reference, built from the code at build time so it cannot drift.

`docs/configuration.md` holds the marker `<!-- config-reference -->`; on build it is replaced by

- one table per schema dataclass in `lvsweep.config` (and the Optuna sweeper's schema): field,
  type, default, and the comment above the field in the dataclass source as its description;
- one table per config group: the options in `conf/<group>/*.yaml` (files starting with `base_`
  are internal and hidden), the first comment of each file, and every value the option sets.

`schema_tables()` and `group_tables()` are plain functions, so tests can call them without MkDocs.
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _schema_modules() -> list[Any]:
    import lvsweep.config.schema
    from hydra_plugins.lvsweep_optuna_sweeper import config as sweeper_config

    return [lvsweep.config.schema, sweeper_config]


def schema_classes() -> list[type]:
    """Every dataclass defined in the schema modules, in source order."""
    classes = []
    for module in _schema_modules():
        found = [obj for obj in vars(module).values()
                 if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__]
        classes += sorted(found, key=lambda c: inspect.getsourcelines(c)[1])
    return classes


def config_paths() -> dict[type, str]:
    """Where each schema sits in the composed config: `system`, `analysis.perturb`, `hydra.sweeper`, ...

    Walked from the root schema through its dataclass-typed fields; a subclass of a placed schema
    (the model options) shares its base's place."""
    import lvsweep.config.schema as c
    from hydra_plugins.lvsweep_optuna_sweeper.config import OptunaSweeperConf

    paths: dict[type, str] = {c.LvsweepConfig: "", OptunaSweeperConf: "hydra.sweeper"}
    todo = [c.LvsweepConfig]
    classes = schema_classes()
    while todo:
        cls = todo.pop()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            t = hints[f.name]
            if inspect.isclass(t) and dataclasses.is_dataclass(t):
                for sub in [t, *(k for k in classes if issubclass(k, t) and k is not t)]:
                    if sub not in paths:
                        paths[sub] = f"{paths[cls]}.{f.name}".lstrip(".")
                        todo.append(sub)
    return paths


def field_comments(cls: type) -> dict[str, str]:
    """The comment lines directly above each field in the class body, along the MRO (a subclass's
    own comment wins, else the base's)."""
    comments: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        lines, start = inspect.getsourcelines(klass)
        tree = ast.parse(textwrap.dedent("".join(lines)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above: list[str] = []
                i = node.lineno - 2  # the line above, 0-based
                while i >= 0 and lines[i].strip().startswith("#"):
                    above.insert(0, lines[i].strip().lstrip("#").strip())
                    i -= 1
                if above:
                    comments[node.target.id] = " ".join(above)
    return comments


def _type_name(t: Any) -> str:
    if inspect.isclass(t) and issubclass(t, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in t)
    if inspect.isclass(t) and dataclasses.is_dataclass(t):
        return f"[{t.__name__}](#{t.__name__.lower()})"
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " \\| ".join(_type_name(a) for a in rest) + " or `null`"
    if origin in (list, typing.List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, typing.Dict):
        return f"mapping of {_type_name(args[1])}" if args else "mapping"
    if t is typing.Any:
        return "any"
    if inspect.isclass(t):
        return f"`{t.__name__}`"
    return f"`{t}`"


def _yaml_value(v: Any) -> str:
    if isinstance(v, enum.Enum):
        v = v.value
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return text.removesuffix("...").strip()


def _default(f: dataclasses.Field) -> str:
    from omegaconf import MISSING

    if f.default is not dataclasses.MISSING:
        if f.default == MISSING:
            return "required"
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "see its table"
    else:
        return "required"
    return f"`{_yaml_value(value)}`".replace("|", "\\|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def schema_table(cls: type, path: str) -> str:
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    where = f"`{path}`" if path else "the top level"
    doc = (cls.__doc__ or "").strip()
    intro = "" if doc.startswith(f"{cls.__name__}(") else f"{_cell(doc)} "
    rows = [f"### {cls.__name__}", "", f"{intro}Keys under {where}.", "",
            "| field | type | default | description |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        rows.append(f"| `{key}` | {_type_name(hints[f.name])} | {_default(f)} | {_cell(comments.get(f.name, ''))} |")
    return "\n".join(rows) + "\n"


def schema_tables() -> str:
    """Markdown: one table per schema dataclass."""
    paths = config_paths()
    return "\n".join(schema_table(cls, paths.get(cls, cls.__name__)) for cls in schema_classes())


# --- config groups --------------------------------------------------------------------------------

def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def _first_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("# @package"):
            continue
        if not s.startswith("#"):
            if lines:
                break
            continue
        lines.append(s.lstrip("#").strip())
    return " ".join(lines)


def groups() -> list[str]:
    """Every config group: each folder under conf/ holding YAML options (nested ones as a/b)."""
    found = {str(p.parent.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.parent != CONF}
    return sorted(found, key=lambda g: (g.count("/"), g))


def options(group: str) -> list[Path]:
    return sorted(p for p in (CONF / group).glob("*.yaml") if not p.name.startswith("base_"))


def default_choices() -> dict[str, str]:
    """The option `conf/config.yaml` picks for each group (null: none)."""
    cfg = yaml.safe_load((CONF / "config.yaml").read_text())
    out = {}
    for entry in cfg.get("defaults", []):
        if isinstance(entry, dict):
            for k, v in entry.items():
                out[str(k)] = "none" if v is None else str(v)
    return out


def option_sets(path: Path) -> list[str]:
    """What an option sets: the groups it overrides, then every value it sets, as `key=value`."""
    data = yaml.safe_load(path.read_text()) or {}
    out = []
    for entry in data.pop("defaults", []) or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                k = str(k)
                if k.startswith("override "):
                    out.append(f"{k.removeprefix('override ').lstrip('/')}={v}")
                elif not k.startswith("base_"):
                    out.append(f"{k}={v}")
        elif isinstance(entry, str) and not entry.startswith("base_") and entry != "_self_":
            out.append(f"(extends {entry})")
    out += [f"{k}={_yaml_value(v)}" for k, v in _flatten(data)]
    return out


def group_table(group: str) -> str:
    default = default_choices().get(group)
    rows = [f"### `{group}`", ""]
    if default is not None:
        rows += [f"Default: `{default}`." if default != "none" else "Default: none (opt in with "
                 f"`{group}=<option>`).", ""]
    rows += ["| option | what it is | sets |", "| --- | --- | --- |"]
    for path in options(group):
        sets = "<br>".join(f"`{_cell(s)}`" for s in option_sets(path))
        rows.append(f"| `{path.stem}` | {_cell(_first_comment(path.read_text()))} | {sets} |")
    return "\n".join(rows) + "\n"


def group_tables() -> str:
    """Markdown: one table per config group."""
    return "\n".join(group_table(g) for g in groups())


def reference() -> str:
    return ("## Config groups and their options\n\n" + group_tables()
            + "\n## Schema: every field\n\n" + schema_tables())


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == PAGE:
        if MARKER not in markdown:
            raise ValueError(f"{PAGE} lost its marker {MARKER}")
        return markdown.replace(MARKER, reference())
    return markdown
