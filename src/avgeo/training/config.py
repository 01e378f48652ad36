"""Typed run configuration: the core trainer settings, config files (TOML / JSON / YAML) with a
schema version, `section.key=value` overrides, and merging CLI flags over a file."""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from avgeo.errors import ConfigError

#: Version of the config file layout ({schema_version, <section>: {key: value}}).
SCHEMA_VERSION = 1


@dataclasses.dataclass
class TrainerConfig:
    """Settings of the shared training loop (the `[run]` section of a config file).

    Sentinels are 0 / "" rather than None so that every value can be written to TOML.
    """

    seed: int = 0
    #: cpu, cuda, cuda:N or auto; under torchrun "cuda" means cuda:LOCAL_RANK.
    device: str = "cpu"
    epochs: int = 1
    #: Stop after this many optimizer steps in all (0: no limit).
    max_steps: int = 0
    #: Stop at the first epoch end past this many seconds of training (0: no limit).
    max_seconds: float = 0.0
    #: Clip the global gradient norm to this (0: off).
    grad_clip: float = 1.0
    #: One metrics row per this many steps (and one at the end).
    log_every: int = 10
    #: Write a checkpoint every this many steps (0: only at epoch ends, see checkpoint_s).
    checkpoint_every: int = 0
    #: At an epoch end, write a checkpoint when the last one is older than this.
    checkpoint_s: float = 120.0
    #: Folder for metrics.csv, TensorBoard events and config.json ("": none).
    run_dir: str = ""
    #: Checkpoint file ("": run_dir/checkpoint.pt, or none without a run_dir).
    checkpoint: str = ""
    #: Also write TensorBoard event files when the tensorboard package is importable.
    tensorboard: bool = True
    #: torch.use_deterministic_algorithms (and cuDNN without autotuning).
    deterministic: bool = False

    def checkpoint_path(self) -> Path | None:
        if self.checkpoint:
            return Path(self.checkpoint)
        return Path(self.run_dir) / "checkpoint.pt" if self.run_dir else None


# ---------------------------------------------------------------- typed values

def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _parse_bool(v: Any, name: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {v!r} is not a boolean", hint="use true or false")


def coerce(value: Any, typ: Any, name: str = "value") -> Any:
    """`value` (native, or a string from the command line) as type `typ`; ConfigError if not."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        is_null = value is None or (isinstance(value, str)
                                    and value.strip().lower() in ("none", "null"))
        if is_null and len(args) < len(typing.get_args(typ)):
            return None
        for a in args:
            try:
                return coerce(value, a, name)
            except ConfigError:
                pass
        raise ConfigError(f"{name}: {value!r} fits none of {typ}")
    if origin in (list, tuple):
        (item,) = typing.get_args(typ)[:1] or (Any,)
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("["):
                try:
                    value = json.loads(s)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{name}: {value!r} is not a JSON list") from exc
            else:
                value = [v.strip() for v in s.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: {value!r} is not a list")
        out = [coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if typ is Any:
        return value
    if typ is bool:
        return _parse_bool(value, name)
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: {value!r} is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name}: {value!r} is not an integer")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: {value!r} is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 as a string
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name}: {value!r} is not a number")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name}: {value!r} is not a string")
    if dataclasses.is_dataclass(typ) and isinstance(typ, type):
        return build_config(typ, value, section=name)
    return value


def build_config(cls: type, data: Mapping[str, Any] | None = None, *, section: str = "",
                 base: Any = None) -> Any:
    """An instance of dataclass `cls` from `data` (typed, unknown keys refused), on top of
    `base` (an instance) or the dataclass defaults."""
    types_ = _field_types(cls)
    data = dict(data or {})
    where = f"[{section}] " if section else ""
    for key in data:
        if key not in types_:
            close = difflib.get_close_matches(key, list(types_), n=1)
            raise ConfigError(f"{where}unknown setting {key!r}",
                              hint=(f"did you mean {close[0]!r}? " if close else "")
                              + f"known: {', '.join(types_)}")
    values = {}
    if base is not None:
        values = {k: getattr(base, k) for k in types_}
    for key, val in data.items():
        values[key] = coerce(val, types_[key], f"{section + '.' if section else ''}{key}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}{exc}") from exc


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (init fields only, JSON-able values)."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return to_dict(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def record(**sections: Any) -> dict[str, Any]:
    """The full config of a run, {schema_version, section: {...}}, as saved with it."""
    return {"schema_version": SCHEMA_VERSION,
            **{name: (to_dict(c) if dataclasses.is_dataclass(c) else dict(c))
               for name, c in sections.items()}}


# ---------------------------------------------------------------- files

def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, JSON or YAML config file into a dict; checks the schema version."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no config file at {p}", hint="pass --config FILE (.toml/.json/.yaml)")
    suffix = p.suffix.lower()
    text = p.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise ConfigError("reading YAML needs PyYAML",
                                  hint="pip install pyyaml, or use a .toml/.json file") from exc
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"{p}: unknown config format {suffix!r}",
                              hint="use a .toml, .json or .yaml file")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot parse {p}: {exc}", hint="fix the file's syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a table of settings")
    ver = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1 or ver > SCHEMA_VERSION:
        raise ConfigError(f"{p}: schema_version {ver!r}; this avgeo reads up to {SCHEMA_VERSION}",
                          hint="upgrade avgeo or rewrite the file")
    return data


def _toml_value(v: Any, key: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and v != v:
            return "nan"
        if isinstance(v, float) and v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML ones
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, key) for x in v) + "]"
    raise ConfigError(f"{key}: {type(v).__name__} cannot be written to TOML")


def _toml_table(lines: list[str], prefix: str, table: Mapping[str, Any]) -> None:
    subs = []
    for k, v in table.items():
        if v is None:
            continue  # TOML has no null: the field keeps its default
        if isinstance(v, Mapping):
            subs.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v, k)}")
    for k, v in subs:
        name = f"{prefix}.{k}" if prefix else k
        lines.append("")
        lines.append(f"[{name}]")
        _toml_table(lines, name, v)


def dump_config(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write a config dict as TOML, JSON or YAML (by suffix), atomically.

    TOML has no null, so None values are left out (the field then keeps its default).
    """
    from avgeo.training.checkpoint import atomic_write_text

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    elif suffix == ".toml":
        lines: list[str] = []
        _toml_table(lines, "", data)
        text = "\n".join(lines).lstrip("\n") + "\n"
    elif suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(dict(data), sort_keys=False)
    else:
        raise ConfigError(f"{p}: unknown config format {suffix!r}",
                          hint="use a .toml, .json or .yaml file")
    return atomic_write_text(p, text)


# ---------------------------------------------------------------- overrides and CLI merging

def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """`section.key=value` strings as {section: {key: value}} (values stay strings and are
    typed by build_config)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not section or not name:
            raise ConfigError(f"--set {item!r}", hint="write --set section.key=value, "
                                                      "e.g. --set run.log_every=50")
        out.setdefault(section, {})[name] = value
    return out


def explicit_params(ctx: Any) -> set[str]:
    """Names of the click/typer parameters that were given on the command line (or by an
    environment variable), as opposed to left at their defaults."""
    # By name: typer may vendor its own click, whose ParameterSource is a different enum.
    return {name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE",
                                                                        "ENVIRONMENT")}


def resolve(sections: Mapping[str, type], *,
            defaults: Mapping[str, Mapping[str, Any]] | None = None,
            explicit: Mapping[str, Mapping[str, Any]] | None = None,
            file: str | Path | None = None, sets: Iterable[str] = ()
            ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Merge, lowest first: dataclass defaults, `defaults` (e.g. CLI option defaults), the
    config file, `explicit` (flags given on the command line), then `--set` overrides.

    Returns ({section: instance}, the run's config record, the file's text or "").
    """
    merged: dict[str, dict[str, Any]] = {s: dict((defaults or {}).get(s, {})) for s in sections}
    text = ""
    if file is not None:
        data = load_config_file(file)
        text = Path(file).read_text(encoding="utf-8")
        for key, val in data.items():
            if key == "schema_version":
                continue
            if key not in sections:
                raise ConfigError(f"{file}: unknown section [{key}]",
                                  hint=f"this command reads [{'], ['.join(sections)}]")
            if not isinstance(val, Mapping):
                raise ConfigError(f"{file}: [{key}] must be a table of settings")
            merged[key].update(val)
    for layer in (explicit or {}), parse_overrides(sets):
        for key, val in layer.items():
            if key not in sections:
                raise ConfigError(f"unknown config section {key!r}",
                                  hint=f"use one of {', '.join(sections)}")
            merged[key].update(val)
    built = {s: build_config(cls, merged[s], section=s) for s, cls in sections.items()}
    return built, record(**built), text


def cli_layers(ctx: Any, table: Mapping[str, tuple[str, str, Any]]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Split CLI values into (defaults, explicit) layers for `resolve`. `table` maps each
    parameter name to (section, field, value); explicit ones beat the config file."""
    given = explicit_params(ctx) if ctx is not None else set()
    defaults: dict[str, dict[str, Any]] = {}
    explicit: dict[str, dict[str, Any]] = {}
    for param, (section, name, value) in table.items():
        layer = explicit if param in given else defaults
        layer.setdefault(section, {})[name] = value
    return defaults, explicit
