"""The independent constraint checker on hand-written positive and negative programs."""

import pytest

from execverify_jax.data.synth import checker


def C(method="replace", group="str", level=1, chain=(), helper=False, other=False):
    return {"group": group, "method": method, "level": level, "cf_chain": list(chain), "helper": helper,
            "nested": True, "other_methods": other}


OK_L1 = "def f(s, t):\n    return s.replace(t[0], 'x').replace('a', t[1])\n"


def test_positive_level1():
    assert checker.check(OK_L1, "f", C()) == []


@pytest.mark.parametrize("code,entry,cons,needle", [
    ("def f(s):\n    return s.replace('a', 'b')\n", "f", C(), "not nested"),
    ("def f(s):\n    return s.upper()\n", "f", C(), "never used"),
    ("def f(s):\n    return s.replace('a', 'b').replace('c', 'd')  # hi\n", "f", C(), "comments"),
    ("def f(s='x'):\n    return s.replace('a', 'b').replace('c', 'd')\n", "f", C(), "default"),
    ("def f():\n    return 'ab'.replace('a', 'b').replace('c', 'd')\n", "f", C(), "no arguments"),
    ("def f(s):\n    print(s)\n    return s.replace('a', 'b').replace('c', 'd')\n", "f", C(), "print"),
    ("import os\ndef f(s):\n    return s.replace('a', 'b').replace('c', 'd')\n", "f", C(), "import"),
    ("X = 1\ndef f(s):\n    return s.replace('a', 'b').replace('c', 'd')\n", "f", C(), "module-level"),
    ("def f(s):\n    global g\n    return s.replace('a', 'b').replace('c', 'd')\n", "f", C(), "global"),
    (OK_L1, "g", C(), "not defined"),
    ("def f(s):\n    return s.strip().replace('a', 'b').replace('c', 'd')\n", "f", C(), "forbids"),
    (OK_L1, "f", C(level=2, other=True), "requires one"),
    ("def f(s):\n    for c in s:\n        s = s.replace(c, 'b').replace('c', 'd')\n    return s\n", "f", C(), "chain"),
    ("def h(s):\n    return s.replace('a', 'b').replace('c', 'd')\n\ndef f(s):\n    return h(s)\n", "f", C(), "exactly 1"),
    ("def h(s):\n    return s.replace('a', 'b').replace('c', 'd')\n\ndef f(s):\n    return s\n", "f",
     C(level=6, helper=True, other=False), "does not call"),
    ("def f(s):\n    try:\n        return s.replace('a', 'b').replace('c', 'd')\n    except Exception:\n        return s\n",
     "f", C(), "Try"),
    ("def f(s):\n    return s.replace('a', 'b').replace('c', 'd'\n", "f", C(), "syntax error"),
    ("def f(s):\n    return s.replace('a', 'b').replace('c', 'd')\n\ndef f(s):\n    return s\n", "f", C(), "duplicate"),
    ("def f(s):\n    import math\n    return s.replace('a', 'b').replace('c', 'd')\n", "f", C(), "inside a function"),
    ("def f(s):\n    return s.__class__.replace('a', 'b').replace('c', 'd')\n", "f", C(), "dunder"),
    ("def h(s):\n    return f(s).replace('a', 'b').replace('c', 'd')\n\ndef f(s):\n    return h(s)\n", "f",
     C(level=6, helper=True), "helper calls the entry"),
    ("def h(s):\n    for c in s:\n        s = s.replace(c, 'b').replace('c', 'd')\n    return s\n\n"
     "def f(s):\n    if s:\n        s = h(s)\n    return s\n", "f", C(level=6, helper=True, chain=("for",)), "more than one function"),
    ("def f(s):\n    for c in s:\n        s = s.replace(c, 'b').replace('c', 'd')\n    else:\n        s = s\n    return s\n",
     "f", C(level=3, chain=("for",)), "for-else"),
    ("def f(n, s):\n    if n > 1:\n        s = s.replace('a', 'b').replace('c', 'd')\n    elif n > 2:\n        s = s\n"
     "    elif n > 3:\n        s = s\n    return s\n", "f", C(level=3, chain=("if-elif",)), "if-elif-elif"),
])
def test_negative_rules(code, entry, cons, needle):
    v = checker.check(code, entry, cons)
    assert any(needle in x for x in v), v


def test_control_flow_chain_exact():
    code = ("def f(s, n):\n    out = ''\n    for c in s:\n        if c.isupper():\n            k = n\n"
            "            while k > 3:\n                out = out.replace(c, 'x').replace('a', c)\n                k -= 2\n"
            "        elif c.isdigit():\n            out += c\n    return out\n")
    assert checker.check(code, "f", C(level=5, chain=("for", "if-elif", "while"), other=True)) == []
    v = checker.check(code, "f", C(level=5, chain=("for", "if", "while"), other=True))
    assert any("chain" in x for x in v)
    side = ("def f(s):\n    for c in s:\n        s = s.replace(c, 'x').replace('y', c)\n    for c in s:\n"
            "        s = s.upper()\n    return s\n")
    assert any("side by side" in x for x in checker.check(side, "f", C(level=3, chain=("for",), other=True)))


def test_if_else_is_plain_if_and_elif_else_is_if_elif():
    base = "def f(x):\n    if x > 1:\n        x = x + 1 + 2\n    {tail}\n    return abs(x)\n"
    plain = base.format(tail="else:\n        x = x + 2 + 3")
    assert checker.check(plain, "f", C("+", "float", 3, ("if",), other=True)) == []
    assert any("chain" in v for v in checker.check(plain, "f", C("+", "float", 3, ("if-elif",), other=True)))
    elif_ = base.format(tail="elif x > 0:\n        x = x + 3 + 4")
    assert checker.check(elif_, "f", C("+", "float", 3, ("if-elif",), other=True)) == []
    assert any("chain" in v for v in checker.check(elif_, "f", C("+", "float", 3, ("if",), other=True)))


def test_nesting_through_loop_target():
    code = "def f(n):\n    out = []\n    for i in range(n):\n        out += list(range(i))\n    return out\n"
    assert not any("nested" in v for v in checker.check(code, "f", C("range", "range", 3, ("for",), other=True)))
    flat = "def f(n):\n    return list(range(n)) + list(range(3))\n"
    assert any("not nested" in v for v in checker.check(flat, "f", C("range", "range")))


def test_nesting_through_local_variable_and_repeat_only_entries():
    flow = "def f(s):\n    a = s.replace('a', 'b')\n    return a.replace('c', 'd')\n"
    assert checker.check(flow, "f", C()) == []
    once = "def f(xs):\n    w = list(xs)\n    w.append(1)\n    return w\n"
    assert any("twice" in v for v in checker.check(once, "f", C("append", "list")))
    twice = "def f(xs):\n    w = list(xs)\n    w.append(1)\n    w.append(2)\n    return w\n"
    assert checker.check(twice, "f", C("append", "list")) == []


def test_operator_and_slice_entries():
    assert checker.check("def f(xs):\n    return xs[1:9][0:3]\n", "f", C("[index1:index2]", "list")) == []
    v = checker.check("def f(xs):\n    return xs[1:][0:3]\n", "f", C("[index1:index2]", "list"))
    assert any("not nested" in x for x in v)
    assert checker.check("import math\n\ndef f(x, y):\n    return math.ceil(x / math.ceil(y))\n", "f",
                         C("math.ceil()", "float")) == []
    assert checker.check("def f(w, x):\n    w *= 2\n    w *= x\n    return w\n", "f", C("*=", "list")) == []


def test_lambda_defaults_rejected():
    code = "def f(xs):\n    return list(filter(lambda v=1: v, filter(lambda v: v, xs)))\n"
    assert any("default" in x for x in checker.check(code, "f", C("filter", "filter")))
