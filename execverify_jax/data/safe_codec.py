"""A JSON codec for Python literal values that never executes anything when decoding.

Used for every value that crosses a trust boundary (sandbox child -> parent) and for the
structured ground truth stored in dataset records. `pickle` is never used for those: unpickling
data written by untrusted code runs arbitrary code in the parent.

Encoding:
  None, bool, int, str, finite float  -> the JSON value itself
  list                                -> JSON list
  everything else                     -> {"__t": tag, ...}:
     tuple/set/frozenset   {"__t": "tuple", "v": [...]}
     dict                  {"__t": "dict", "v": [[k, v], ...]}   (keeps order and non-str keys)
     bytes                 {"__t": "bytes", "v": "<latin-1 text>"}
     float inf/nan/-0.0    {"__t": "float", "v": "inf" | "-inf" | "nan" | "-0.0"}
     complex               {"__t": "complex", "v": [re, im]}
     range                 {"__t": "range", "v": [start, stop, step]}
     int over 4096 bits    {"__t": "int", "v": "<hex>"}   (json cannot write huge ints)
     anything else         {"__t": "opaque", "type": type name, "repr": repr (capped)}

Plain JSON objects never appear unencoded, so decoding is unambiguous.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 100
_JSON_INT_BITS = 4096  # ~1233 decimal digits; larger ints travel as hex (no str-conversion limit)
_MAX_HEX_INT_CHARS = 1 << 20
OPAQUE_REPR_CAP = 1000


@dataclass(frozen=True)
class Opaque:
    """A value that is not a literal (iterator, object, function...): kept as type name + repr."""

    type_name: str
    repr: str

    def __repr__(self) -> str:
        return f"<opaque {self.type_name}: {self.repr}>"


class CodecError(ValueError):
    """Raised when encoded data is malformed or too deep."""


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a hostile __repr__ must not break encoding
        text = f"<repr failed: {type(exc).__name__}>"
    if not isinstance(text, str):
        text = "<repr returned non-str>"
    return text[:OPAQUE_REPR_CAP]


def to_jsonable(obj: Any, _depth: int = 0) -> Any:
    """Encodes `obj` into plain JSON-compatible data (see the module docstring)."""
    if _depth > MAX_DEPTH:
        return {"__t": "opaque", "type": type(obj).__name__, "repr": "<too deep>"}
    t = type(obj)  # exact types only: subclasses of int/str/list... are not literals
    if obj is None or t is bool or t is str:
        return obj
    if t is int:
        if obj.bit_length() > _JSON_INT_BITS:  # json refuses ints over 4300 digits
            return {"__t": "int", "v": hex(obj)}
        return obj
    if t is float:
        if math.isfinite(obj) and not (obj == 0.0 and math.copysign(1.0, obj) < 0):
            return obj
        return {"__t": "float", "v": repr(obj)}
    d = _depth + 1
    if t is list:
        return [to_jsonable(x, d) for x in obj]
    if t in (tuple, set, frozenset):
        items = list(obj)
        if t is not tuple:
            items = _sorted_if_possible(items)
        return {"__t": t.__name__, "v": [to_jsonable(x, d) for x in items]}
    if t is dict:
        return {"__t": "dict", "v": [[to_jsonable(k, d), to_jsonable(v, d)] for k, v in obj.items()]}
    if t is bytes:
        return {"__t": "bytes", "v": obj.decode("latin-1")}
    if t is complex:
        return {"__t": "complex", "v": [to_jsonable(obj.real, d), to_jsonable(obj.imag, d)]}
    if t is range:
        return {"__t": "range", "v": [obj.start, obj.stop, obj.step]}
    return {"__t": "opaque", "type": t.__name__, "repr": _safe_repr(obj)}


def _sorted_if_possible(items: list) -> list:
    # Sets have no order; sorting makes encodings of equal sets identical (for dedup and hashing).
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda x: (type(x).__name__, _safe_repr(x)))


def from_jsonable(data: Any, _depth: int = 0) -> Any:
    """Decodes what `to_jsonable` produced. Only builds literal types and `Opaque`."""
    if _depth > MAX_DEPTH + 2:
        raise CodecError("encoded value nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    d = _depth + 1
    if isinstance(data, list):
        return [from_jsonable(x, d) for x in data]
    if not isinstance(data, dict) or "__t" not in data:
        raise CodecError(f"not an encoded value: {str(data)[:80]!r}")
    tag = data["__t"]
    v = data.get("v")
    try:
        if tag == "tuple":
            return tuple(from_jsonable(x, d) for x in v)
        if tag == "set":
            return {from_jsonable(x, d) for x in v}
        if tag == "frozenset":
            return frozenset(from_jsonable(x, d) for x in v)
        if tag == "dict":
            return {from_jsonable(k, d): from_jsonable(x, d) for k, x in v}
        if tag == "int":
            if not isinstance(v, str) or len(v) > _MAX_HEX_INT_CHARS:
                raise CodecError("bad int")
            return int(v, 16)
        if tag == "bytes":
            return v.encode("latin-1")
        if tag == "float":
            if v not in ("inf", "-inf", "nan", "-0.0"):
                raise CodecError(f"bad float {v!r}")
            return float(v)
        if tag == "complex":
            return complex(from_jsonable(v[0], d), from_jsonable(v[1], d))
        if tag == "range":
            return range(int(v[0]), int(v[1]), int(v[2]))
        if tag == "opaque":
            return Opaque(str(data["type"]), str(data["repr"]))
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CodecError(f"malformed {tag!r} value: {exc}") from None
    raise CodecError(f"unknown tag {tag!r}")


def dumps(obj: Any) -> str:
    """Encodes to a compact JSON string."""
    return json.dumps(to_jsonable(obj), ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Decodes a JSON string produced by `dumps`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"invalid JSON: {exc}") from None
    return from_jsonable(data)


def is_literal(obj: Any, _depth: int = 0) -> bool:
    """True when `obj` is built only from literal types (no Opaque anywhere inside)."""
    if _depth > MAX_DEPTH:
        return False
    t = type(obj)
    if obj is None or t in (bool, int, float, str, bytes, complex, range):
        return True
    if t in (list, tuple, set, frozenset):
        return all(is_literal(x, _depth + 1) for x in obj)
    if t is dict:
        return all(is_literal(k, _depth + 1) and is_literal(v, _depth + 1) for k, v in obj.items())
    return False


def short_repr(obj: Any, limit: int = 200) -> str:
    """A bounded repr for logs and displays (never for labels or comparisons)."""
    r = reprlib.Repr()
    r.maxstring = limit
    r.maxother = limit
    return r.repr(obj)[: limit + 20]
