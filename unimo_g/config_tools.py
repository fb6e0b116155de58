"""Loading frozen-dataclass configs from one YAML file plus `--set key=value` overrides.

Every config in the project is a tree of frozen dataclasses that validate themselves in
`__post_init__`. This module turns YAML into such a tree, refusing unknown keys and wrong types
with a `ConfigError` that names the dotted key and the bad value.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

from unimo_g.presets import PresetNotFound, resolve_preset

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, key or value that cannot be used. The message names the key and value."""


def parse_overrides(items: Iterable[str]) -> dict:
    """Turn `["a.b=1", "c=x"]` into a nested dict `{"a": {"b": 1}, "c": "x"}` (values parsed as YAML)."""
    nested: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err}") from None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is set to a value and also used as a section")
        node[parts[-1]] = value
    return nested


def deep_merge(base: Mapping, update: Mapping) -> dict:
    """A copy of `base` with `update` merged into it, recursively for nested mappings."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:  # checked once, by the class (`check_choices` in its __post_init__)
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
        return from_dict(hint, value, prefix=f"{key}.")
    if origin in (tuple, list):
        if isinstance(value, str) and args and args[-1] is Ellipsis and args[0] is str:
            value = [item.strip() for item in value.split(",") if item.strip()]  # --set key=a,b
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        items = list(value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
        item_hint = args[0] if args else Any
        coerced = [_coerce(v, item_hint, f"{key}[{i}]") for i, v in enumerate(items)]
        return tuple(coerced) if origin is tuple else coerced
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and bad types raise `ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from None


def check_choices(config, section: str) -> None:
    """Refuse a `Literal` field of dataclass `config` whose value is not one of its choices, named
    `section.field`. The one check of a `Literal` value: a config class calls it in `__post_init__`,
    so values built in code are checked as loaded ones are (`from_dict` leaves them to it)."""
    for name, choices in _literal_fields(type(config)).items():
        value = getattr(config, name)
        if value not in choices:
            spelled = [str(choice) for choice in choices]
            listed = spelled[0] if len(spelled) == 1 else f"{', '.join(spelled[:-1])} or {spelled[-1]}"
            raise ValueError(f"{section}.{name} must be {listed}, got {value!r}")


@functools.lru_cache(maxsize=None)
def _literal_fields(cls: type) -> dict[str, tuple]:
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is typing.Literal}


def to_dict(config) -> dict:
    """A dataclass config as plain JSON-able values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def config_hash(config) -> str:
    """A stable short hash of a config's values (canonical JSON, sorted keys)."""
    canonical = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; raise `ConfigError` naming the file on any problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config {path} must hold a mapping at its top level")
    return dict(data)


def load_config(cls: type[T], path: str | Path | None, overrides: Iterable[str] = ()) -> T:
    """Load `cls` from a YAML file (or its defaults when `path` is None) with `--set` overrides."""
    data = read_yaml(path) if path is not None else {}
    return from_dict(cls, deep_merge(data, parse_overrides(overrides)))


def load_preset(cls: type[T], name: str, overrides: Iterable[str] = ()) -> T:
    """`load_config` of a --config value: a YAML path or a bundled preset name (`unimo_g.presets`)."""
    try:
        path = resolve_preset(name)
    except PresetNotFound as err:
        raise ConfigError(str(err)) from None
    return load_config(cls, path, overrides)


TRANSFORMERS_BACKEND = "transformers"


def check_backend(section: str, backend: str) -> None:
    """Refuse a model section's `backend` other than `transformers`, the one way its model loads (the
    key stays in configs and in the lineage of the runs that recorded it)."""
    if backend != TRANSFORMERS_BACKEND:
        raise ValueError(f"{section}.backend {backend!r} is not supported; the one backend is {TRANSFORMERS_BACKEND!r}")
