"""safe_codec: exact round trips of literal values, Opaque for the rest, hostile input rejected."""

import json
import math

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.data.safe_codec import CodecError, Opaque

VALUES = [
    None, True, False, 0, -7, 2 ** 100, 1.5, "", "héllo\n\x00", [], [1, [2, [3]]],
    (), (1,), ("a", (2.5, None)), {1, 2}, set(), frozenset({"x"}), {}, {"a": 1, 2: [3], (1, 2): None, None: {}},
    b"\x00\xffbytes", 3 + 4j, range(2, 10, 3), -0.0, float("inf"), float("-inf"),
]


def _same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_round_trip_is_exact(value):
    text = safe_codec.dumps(value)
    json.loads(text)  # plain JSON
    assert _same(safe_codec.loads(text), value)
    assert safe_codec.is_literal(value)


def test_nan_round_trips():
    assert math.isnan(safe_codec.loads(safe_codec.dumps(float("nan"))))


def test_subclasses_and_objects_become_opaque():
    class MyInt(int):
        pass

    class Hostile:
        def __repr__(self):
            raise RuntimeError("boom")

    out = safe_codec.loads(safe_codec.dumps([MyInt(3), Hostile(), iter([])]))
    assert out[0] == Opaque("MyInt", "3")
    assert out[1].type_name == "Hostile" and "repr failed" in out[1].repr
    assert out[2].type_name == "list_iterator"
    assert not safe_codec.is_literal(out)


def test_set_encoding_is_canonical():
    assert safe_codec.dumps({3, 1, 2}) == safe_codec.dumps({2, 3, 1})
    assert safe_codec.dumps({"b", 1, "a"}) == safe_codec.dumps({1, "a", "b"})


def test_deep_nesting_is_capped_not_crashing():
    v = []
    for _ in range(500):
        v = [v]
    enc = safe_codec.to_jsonable(v)
    assert safe_codec.from_jsonable(enc) is not None


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',  # a plain object is never a valid encoding
        '{"__t": "pickle", "v": "x"}',
        '{"__t": "float", "v": "1e5"}',
        '{"__t": "tuple", "v": 3}',
        '{"__t": "dict", "v": [[1]]}',
        '{"__t": "range", "v": ["a", 1, 1]}',
        '{"__t": "set", "v": [[1]]}',  # unhashable element
        "not json",
        "[" * 100000 + "]" * 100000,
    ],
)
def test_malformed_input_raises_codec_error(text):
    with pytest.raises(CodecError):
        safe_codec.loads(text)


def test_opaque_repr_is_capped():
    class Long:
        def __repr__(self):
            return "x" * 10_000

    enc = safe_codec.to_jsonable(Long())
    assert len(enc["repr"]) == safe_codec.OPAQUE_REPR_CAP


def test_huge_ints_round_trip():
    for v in (10 ** 5000, -(2 ** 20000) + 1, 2 ** 4096):
        assert safe_codec.loads(safe_codec.dumps(v)) == v
    with pytest.raises(CodecError):
        safe_codec.loads('{"__t": "int", "v": "0xzz"}')
