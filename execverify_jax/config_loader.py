"""The one config route: a YAML file (optional, with `base:` includes) plus `--set a.b=value`
overrides, filled into a tree of frozen dataclasses.

Unknown keys, missing required keys and values of the wrong type are `ConfigError`s that name
the key path and the value (and, for a key read from a file, the file). Each subsystem defines
its own frozen dataclasses (with defaults) and validates ranges in `__post_init__` with the
`check_*` helpers below, which raise `ConfigError` too: one error type for every config problem.

`base: other.yaml` (or a list of files) at the top of a YAML file includes other files first,
relative to the including file, recursively; the including file's keys are deep-merged over
them (mappings merge, anything else replaces). A cycle is an error.

A dataclass with a `parse(str)` classmethod also accepts a string in place of its mapping (the
mesh's `data=-1,tensor=2` shorthand).

Hand-written rather than draccus/dacite: the coercion is ~100 lines, the project's error format
(key, value, file) and the `base:` include need custom code either way, and no dependency is added
to the data side. Pure Python: the data side uses it too, so it must never import jax.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem: always names the key path and the offending value.

    `key` is the dotted key path when the problem is about one key (used to name the file the key
    came from); None otherwise.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# ------------------------------------------------------------------------------- range checks
def bad(key: str, value: object, why: str) -> ConfigError:
    """The standard error: `key=value: why`."""
    return ConfigError(f"{key}={value!r}: {why}", key)


def check_real(key: str, value: object) -> float:
    """A finite number (a YAML `true` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(key, value, "must be a finite number")
    return float(value)


def check_int(key: str, value: object, minimum: int | None = None) -> int:
    """An integer, at least `minimum` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(key, value, "must be an integer")
    if minimum is not None and value < minimum:
        raise bad(key, value, f"must be >= {minimum}")
    return value


def check_range(key: str, value: object, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in the interval [lo, hi] (`lo_open`/`hi_open` exclude the end)."""
    v = check_real(key, value)
    if lo is not None and (v <= lo if lo_open else v < lo) or hi is not None and (v >= hi if hi_open else v > hi):
        if hi is None:
            raise bad(key, value, f"must be {'>' if lo_open else '>='} {lo:g}")
        if lo is None:
            raise bad(key, value, f"must be {'<' if hi_open else '<='} {hi:g}")
        raise bad(key, value, f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
    return v


def check_choice(key: str, value: object, choices: typing.Iterable[object]) -> None:
    """One of `choices`."""
    if value not in tuple(choices):
        raise bad(key, value, f"must be one of {list(choices)}")


def check_bool(key: str, value: object) -> bool:
    """true or false (not 0/1)."""
    if not isinstance(value, bool):
        raise bad(key, value, "must be true or false")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: {value!r} does not match {tp}", path)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}", path)
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and hasattr(tp, "parse"):
            try:
                return tp.parse(value)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}", path) from None
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {_type_name(tp)}, got {value!r}", path)
        return from_dict(tp, value, path)
    if origin in (tuple,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}", path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} items, got {value!r}", path)
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, value))) if args else tuple(value)
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}", path)
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{path}.{k}"): _coerce(v, vt, f"{path}.{k}") for k, v in value.items()}
    expected = {float: "a number", int: "an integer", bool: "true/false", str: "a string"}.get(tp)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected {expected}, got {value!r}", path)
        return float(value)
    if tp in (int, bool, str):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {expected}, got {value!r}", path)
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}", path)
    return value


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]


def from_dict(cls: type[T], data: dict, path: str = "") -> T:
    """Builds dataclass `cls` from a nested dict; unknown or missing keys are errors naming the path."""
    where = f"{path}." if path else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {data!r}", path or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(
            f"unknown config key {where}{unknown[0]} (value {data[unknown[0]]!r}); "
            f"known keys here: {sorted(fields)}", f"{where}{unknown[0]}")
    missing = [name for name, f in fields.items() if _required(f) and name not in data]
    if missing:
        raise ConfigError(f"missing required config key {where}{missing[0]}", f"{where}{missing[0]}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}{name}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if not path:
            raise
        # A range check names the field (`field=value: why`); prefix the section so the message
        # names the full key path.
        if exc.key and str(exc).startswith(exc.key):
            raise ConfigError(f"{where}{exc}", f"{where}{exc.key}") from None
        raise ConfigError(f"{path}: {exc}", f"{where}{exc.key}" if exc.key else path) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or '<root>'}: {exc}", path or None) from None


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain data (for manifests and checkpoints)."""
    return dataclasses.asdict(cfg)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parses `a.b.c=value`; the value is read as YAML (so 8, 0.5, true, [1, 2] work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: bad value: {exc}") from None
    return key.split("."), value


def set_key(data: dict, keys: list[str], value: Any, what: str) -> None:
    """Sets `data[k0][k1]...[kn] = value` in place, creating intermediate mappings."""
    node = data
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{what}: {k} is not a mapping (it is {nxt!r})", ".".join(keys))
        node = nxt
    node[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Returns a copy of `data` with each `key=value` override set (intermediate maps created)."""
    out = _deep_copy(data)
    for item in overrides:
        keys, value = parse_override(item)
        set_key(out, keys, value, f"override {item!r}")
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings merge key by key, anything else replaces."""
    out = _deep_copy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else _deep_copy(v)
    return out


def _key_paths(data: dict, prefix: tuple[str, ...] = ()) -> typing.Iterator[tuple[str, ...]]:
    for k, v in data.items():
        yield prefix + (str(k),)
        if isinstance(v, dict):
            yield from _key_paths(v, prefix + (str(k),))


def _read_one(p: Path) -> dict:
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def read_tree(path: str | Path, _chain: tuple[Path, ...] = ()) -> tuple[dict, dict[tuple[str, ...], Path | None]]:
    """Reads a YAML mapping with its `base:` includes resolved.

    Returns (data, origins): origins maps every key path to the file that set it last.
    """
    p = Path(path)
    real = p.resolve()
    if real in _chain:
        cycle = " -> ".join(str(c) for c in (*_chain, real))
        raise ConfigError(f"{p}: base include cycle: {cycle}")
    own = _read_one(p)
    bases = own.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{p}: base={bases!r}: must be a file name or a list of file names", "base")
    data: dict = {}
    origins: dict[tuple[str, ...], Path | None] = {}
    for b in bases:
        sub, sub_origins = read_tree(p.parent / b, (*_chain, real))
        data = deep_merge(data, sub)
        origins.update(sub_origins)
    origins.update({kp: p for kp in _key_paths(own)})
    return deep_merge(data, own), origins


def read_yaml(path: str | Path) -> dict:
    """Reads a YAML mapping (`base:` includes resolved); an empty file is an empty mapping."""
    return read_tree(path)[0]


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
         values: dict[str, Any] | None = None) -> T:
    """Loads `cls` from an optional YAML file, then `values` ({dotted key: value}, e.g. the
    command's flags), then `key=value` overrides. Errors about a key read from a file name it."""
    data, origins = read_tree(path) if path is not None else ({}, {})
    set_here: list[list[str]] = []
    for key, value in (values or {}).items():
        set_key(data, key.split("."), value, f"option {key}")
        set_here.append(key.split("."))
    data = apply_overrides(data, overrides or [])
    set_here += [parse_override(item)[0] for item in overrides or []]
    for keys in set_here:  # the command line set these: no file to blame (mappings it created too)
        for i in range(1, len(keys)):
            origins.setdefault(tuple(keys[:i]), None)
        origins[tuple(keys)] = None
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        src = _origin(origins, exc.key)
        if src is None:
            raise
        raise ConfigError(f"{src}: {exc}", exc.key) from None


def _origin(origins: dict[tuple[str, ...], Path | None], key: str | None) -> Path | None:
    """The file that set `key` (or its closest enclosing mapping); None for flags and --set."""
    if not key:
        return None
    parts = tuple(key.replace("[", ".[").split("."))
    for n in range(len(parts), 0, -1):
        if parts[:n] in origins:
            return origins[parts[:n]]
    return None
