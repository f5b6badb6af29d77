"""Typed code templates: how each method-inventory entry is exercised, nested and safe.

Each entry of `builtin_methods.json` maps to one or more `Tpl`s: a Python snippet with
`string.Template` placeholders that the builder binds to typed names and literals:

  $A, $B   values of the group's type (params, or derived locals)   $E  an element of that type
           (char / int / float / dict key; the innermost loop variable when inside a `for`)
  $N       int param (5..20)      $J <= $K   small int literals (J in 0..2, K in J..4)
  $M       int literal 2..4       $T         int literal 6..15     $C, $D  element literals
  $W       a mutable working copy of $A (list/set/dict)           $P, $Q  fresh temporaries
  $AK      an existing key of dict $A (`list($A)[$J]`)

Every template is safe for all inputs in the synthesizer's domains (collections of 5..15
elements, ints 5..20, strings of 5..15 characters, floats in [5, 20] on a 0.25 grid): indexes
stay below 5, divisors are >= 2, removals target present elements (or declare a `needs`
precondition the input solver enforces). `kind` is the result kind of an expression template or
"stmt" for statement templates (which mutate $W). `pure`: uses no built-in method other than
the tested one (and value constructors list/tuple/set/dict/str/int/float/bool), as level 1
requires. `loop`: safe to execute any number of times in a loop body (no net shrinking, no
exponential growth).

Nesting (depth >= 2) is built in: the tested call's receiver or argument contains another call
of the same entry (`$A.replace(...).replace(...)`, `len($A[:len($B) - $K])`), or, for entries
whose result cannot feed the same entry (predicates, None-returning mutators, augmented
assignment), the entry is called at least twice. These generator templates are never used by
`checker.py`, which re-derives everything from the AST.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tpl:
    """One code template for an inventory entry."""

    src: str
    kind: str  # str|int|bool|float|list|tuple|set|dict|bytes|stmt
    pure: bool = True
    loop: bool = True
    needs: tuple[str, ...] = ()  # preconditions: "A_contains_C", "A_contains_D"


def _cmp(op: str, seq: bool) -> list[Tpl]:
    """Comparison entries: two comparisons combined (bool results cannot nest)."""
    if seq:
        return [Tpl(f"$A[:$K] {op} $B[:$K] or $A[$J] {op} $E", "bool"),
                Tpl(f"$B {op} $A and $E {op} $C", "bool")]
    return [Tpl(f"$A {op} $E or $B {op} $C", "bool")]


_COMPARE = ("==", "!=", ">=", ">", "<=", "<")

# ---------------------------------------------------------------- str ($E is a 1-char str)
_STR: dict[str, list[Tpl]] = {
    "+": [Tpl("$A[:$K] + $E + $B[$J:]", "str"), Tpl("$E + $A + $C", "str")],
    "in": [Tpl("$E in $A or $C in $B", "bool"), Tpl("$B[:$M] in $A and $E in $B", "bool")],
    "not in": [Tpl("$E not in $B and $C not in $A", "bool")],
    "str.format": [Tpl("str.format('{}-{}', $A[:$K], str.format('<{}>', $E))", "str")],
    "format()": [Tpl("format(format($A, '>12'), '*<16')", "str"),
                 Tpl("format(format($N, '03d') + $E, '_^9')", "str")],
    "[index]": [Tpl("$A[$K][0] + $B[$J]", "str"), Tpl("$A[$J] + $B[$K][-1]", "str")],
    "[:]": [Tpl("($A[:] + $E)[:]", "str")],
    "[index1:index2]": [Tpl("$A[1:9][$J:$K1]", "str")],
    "[index:]": [Tpl("$A[$J:][$K:]", "str")],
    "[:index2]": [Tpl("$A[:$K6][:$K2]", "str")],
    "len()": [Tpl("len($A[:len($B) - $K])", "int")],
    "*": [Tpl("$E * 2 * $M + $A[$J]", "str"), Tpl("$A[:2] * $M * 2", "str")],
    "capitalize": [Tpl("($E + $A.capitalize()).capitalize()", "str")],
    "casefold": [Tpl("($B[:$K] + $A.casefold()).casefold()", "str")],
    "center": [Tpl("$A.center($N, '*').center($N + 4, '-')", "str"),
               Tpl("($E + $A[:$M]).center(9, '.').center(11, $C)", "str")],
    "count": [Tpl("$A.count($E, $A.count($C))", "int")],
    "encode": [Tpl("$A.encode() + $B[:$K].encode('utf-8')", "bytes")],
    "endswith": [Tpl("$A.endswith($E) or $B.endswith($A[-$M:])", "bool")],
    "expandtabs": [Tpl("($A.expandtabs(4) + '\\t' + $E).expandtabs($M)", "str")],
    "find": [Tpl("$A.find($E, $A.find($C))", "int")],
    "format": [Tpl("'{}:{}'.format($A[:$K], '[{}]'.format($E))", "str")],
    "format_map": [Tpl("'{w}-{v}'.format_map({'w': $A[:$K], 'v': '<{u}>'.format_map({'u': $E})})", "str")],
    "index": [Tpl("$A.index($A[$K], $A.index($A[$J]))", "int")],
    "join": [Tpl("', '.join([$A[:$K], '-'.join($B[:$M])])", "str"),
             Tpl("$E.join(['', '+'.join($A[$J:$J4])])", "str")],
    "ljust": [Tpl("$A.ljust($N, '.').ljust($N + 3, '#')", "str")],
    "rjust": [Tpl("$A.rjust($N, '0').rjust($N + $M, ' ')", "str")],
    "lstrip": [Tpl("$A.lstrip($E).lstrip($A[:$M])", "str")],
    "rstrip": [Tpl("$A.rstrip($E).rstrip($A[-$M:])", "str")],
    "strip": [Tpl("$A.strip($E).strip($C)", "str")],
    "maketrans": [Tpl("[str.maketrans($A[:$K], $B[:$K]), str.maketrans($E, $C)]", "list")],
    "partition": [Tpl("$A.partition($E)[2].partition($C)", "tuple")],
    "rpartition": [Tpl("$A.rpartition($E)[0].rpartition($C)", "tuple")],
    "removeprefix": [Tpl("$A.removeprefix($A[:$J]).removeprefix($E)", "str")],
    "removesuffix": [Tpl("$A.removesuffix($A[-$M:]).removesuffix($E)", "str")],
    "replace": [Tpl("$A.replace($E, $C).replace($D, $E)", "str"),
                Tpl("$B.replace($A[$J], $E).replace($C, '')", "str")],
    "rfind": [Tpl("$A.rfind($E, 0, $A.rfind($C) + $K)", "int")],
    "rindex": [Tpl("$A.rindex($A[$J], 0, $A.rindex($A[$K]) + 1)", "int")],
    "split": [Tpl("$A.split($E)[0].split($C)", "list")],
    "rsplit": [Tpl("$A.rsplit($E)[-1].rsplit($C, 1)", "list")],
    "splitlines": [Tpl("($A + '\\n' + $B).splitlines()[-1].splitlines()", "list")],
    "startswith": [Tpl("$A.startswith($E) or $B.startswith($A[:$M])", "bool")],
    "translate": [Tpl("$A.translate({101: '3', 97: '4'}).translate({111: '0', 115: '5'})", "str"),
                  Tpl("($E + $A[$J:]).translate({105: '!'}).translate({108: '1', 116: '7'})", "str")],
    "zfill": [Tpl("$A.zfill($N).zfill($N + $M)", "str")],
}
for _m in ("lower", "upper", "swapcase", "title"):
    _STR[_m] = [Tpl(f"($B[:$K] + $A.{_m}()).{_m}()", "str"), Tpl(f"($E + $A[$J:].{_m}()).{_m}()", "str")]
for _m in ("isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower",
           "isnumeric", "isprintable", "isspace", "istitle", "isupper"):
    _STR[_m] = [Tpl(f"$A.{_m}() or $E.{_m}()", "bool"), Tpl(f"$A[:$K].{_m}() and $B.{_m}()", "bool")]
for _op in _COMPARE:
    _STR[_op] = _cmp(_op, seq=True)

# ---------------------------------------------------------------- list / tuple ($E is an int)
_SEQ_COMMON: dict[str, list[Tpl]] = {
    "[index]": [Tpl("$A[$A[$J] % 5]", "int"), Tpl("$B[$A[$K] % 5] + $A[$J]", "int")],
    "[:]": [Tpl("($A[:] + $B[:$M])[:]", "SEQ")],
    "[index1:index2]": [Tpl("$A[1:9][$J:$K1]", "SEQ")],
    "[index:]": [Tpl("$A[$J:][$K:]", "SEQ")],
    "[:index2]": [Tpl("$A[:$K6][:$K2]", "SEQ")],
    "in": [Tpl("$E in $A or $C in $B", "bool")],
    "not in": [Tpl("$E not in $B and $C not in $A", "bool")],
    "len": [Tpl("len($A[:len($B) - $K])", "int")],
    "*": [Tpl("$A[:2] * $M * 2", "SEQ")],
    "count": [Tpl("$A.count($A[$A.count($E) % 5])", "int")],
    "index": [Tpl("$A.index($A[$K], $A.index($A[$J]))", "int")],
}
for _op in _COMPARE:
    _SEQ_COMMON[_op] = _cmp(_op, seq=True)

_LIST: dict[str, list[Tpl]] = {k: [dataclasses.replace(t, kind="list" if t.kind == "SEQ" else t.kind)
                                   for t in v] for k, v in _SEQ_COMMON.items()}
_LIST.update({
    "+": [Tpl("$A[:$K] + [$E] + $B[$J:]", "list")],
    "*=": [Tpl("$P = $A[:$M]\n$P *= 2\n$P *= $M\n$W += $P[:$M]", "stmt")],
    "reversed": [Tpl("list(reversed(list(reversed($A))[$J:]))", "list")],
    "append": [Tpl("$W.append($E)\n$W.append($E + $C)", "stmt")],
    "clear": [Tpl("$P = $W[-2:]\n$W.clear()\n$W += $P + [$E]\n$P.clear()", "stmt")],
    "copy": [Tpl("$A.copy()[$J:].copy()", "list")],
    "extend": [Tpl("$W.extend($B[:$K])\n$W.extend([$E])", "stmt")],
    "insert": [Tpl("$W.insert($J, $E)\n$W.insert(-1, $C)", "stmt")],
    "pop": [Tpl("$W.pop($W.pop() % 3)", "int", loop=False),
            Tpl("$W.extend([$W.pop($W.pop(0) % 3), $E])", "stmt", pure=False)],
    "remove": [Tpl("$W.remove($W[$K])\n$W.remove($W[$J])", "stmt", loop=False),
               Tpl("$W.append($E)\n$W.remove($W[0])\n$W.append($C)\n$W.remove($W[$J])", "stmt", pure=False)],
    "reverse": [Tpl("$W.reverse()\n$W[0] = $E\n$W.reverse()", "stmt")],
    "sort": [Tpl("$W.sort(reverse=True)\n$W[$J] = $E\n$W.sort()", "stmt")],
})

_TUPLE: dict[str, list[Tpl]] = {k: [dataclasses.replace(t, kind="tuple" if t.kind == "SEQ" else t.kind)
                                    for t in v] for k, v in _SEQ_COMMON.items()}
_TUPLE["+"] = [Tpl("$A[:$K] + ($E,) + $B[$J:]", "tuple")]

# ---------------------------------------------------------------- set ($E is an int)
_SET: dict[str, list[Tpl]] = {
    "&": [Tpl("$A & $B & {$E, $C, $N}", "set"), Tpl("$A & ($B | {$E}) & $A", "set")],
    "-": [Tpl("$A - $B - {$E}", "set")],
    "^": [Tpl("$A ^ $B ^ {$E, $C}", "set")],
    "in": [Tpl("$E in $A or $C in $B", "bool")],
    "not in": [Tpl("$E not in $B and $C not in $A", "bool")],
    "&=": [Tpl("$W &= $B | {$E}\n$W &= $A", "stmt")],
    "|=": [Tpl("$W |= {$E}\n$W |= $B", "stmt")],
    "-=": [Tpl("$W -= {$E}\n$W -= {$C}", "stmt")],
    "^=": [Tpl("$W ^= {$E}\n$W ^= {$C}", "stmt")],
    "len": [Tpl("len({len($A), len($B), $E})", "int")],
    "add": [Tpl("$W.add($E)\n$W.add($E + $C)", "stmt")],
    "clear": [Tpl("$P = $W - {$E}\n$W.clear()\n$W |= $P\n$P.clear()", "stmt")],
    "copy": [Tpl("($A.copy() - {$E}).copy()", "set")],
    "difference": [Tpl("$A.difference($B.difference({$E}))", "set")],
    "intersection": [Tpl("$A.intersection($B.intersection($A | {$E}))", "set")],
    "symmetric_difference": [Tpl("$A.symmetric_difference($B.symmetric_difference({$E}))", "set")],
    "union": [Tpl("$A.union($B.union({$E}))", "set")],
    "difference_update": [Tpl("$W.difference_update({$E})\n$W.difference_update($B)", "stmt")],
    "intersection_update": [Tpl("$W.intersection_update($A | {$E})\n$W.intersection_update($B | {$C})", "stmt")],
    "symmetric_difference_update": [Tpl("$W.symmetric_difference_update({$E})\n$W.symmetric_difference_update({$C})", "stmt")],
    "update": [Tpl("$W.update({$E})\n$W.update($B)", "stmt")],
    "discard": [Tpl("$W.discard($E)\n$W.discard($C)", "stmt")],
    "isdisjoint": [Tpl("$A.isdisjoint($B) or $B.isdisjoint({$E})", "bool")],
    "issubset": [Tpl("{$E}.issubset($A) or $B.issubset($A)", "bool")],
    "issuperset": [Tpl("$A.issuperset({$E}) or $A.issuperset($B)", "bool")],
    # int sets iterate in a hash order that does not depend on PYTHONHASHSEED: pop is stable.
    "pop": [Tpl("$W.pop() + $W.pop()", "int", loop=False),
            Tpl("$P = set($W)\n$W.add($P.pop() + $P.pop())", "stmt", pure=False)],
    "remove": [Tpl("$W.remove($C)\n$W.remove($D)", "stmt", loop=False, needs=("A_contains_C", "A_contains_D")),
               Tpl("$W.add($E)\n$W.remove($E)\n$W.add($E + $C)\n$W.remove(min($W))", "stmt", pure=False)],
}
for _op in _COMPARE:
    _SET[_op] = [Tpl(f"$A {_op} $B or {{$E}} {_op} $A", "bool"), Tpl(f"$B {_op} $A and $A {_op} {{$E, $C}}", "bool")]

# ---------------------------------------------------------------- dict[str, int] ($E is a key)
_DICT: dict[str, list[Tpl]] = {
    "in": [Tpl("$E in $A or $C in $A", "bool")],
    "not in": [Tpl("$E not in $A and $C not in $A", "bool")],
    "==": [Tpl("$A[$AK] == $N or $A == {$C: $N}", "bool")],
    "!=": [Tpl("$A[$AK] != $N and $A != {$E: $N}", "bool")],
    "dict[key]": [Tpl("$A[list($A)[$A[$AK] % 5]]", "int")],
    "len": [Tpl("len(list($A)[len($A) % 5])", "int")],
    "|": [Tpl("$A | {$E: $N} | {$C: $M}", "dict")],
    "dict[key] = value": [Tpl("$W[$E] = $N\n$W[$C] = $W[$E] + $M", "stmt")],
    "clear": [Tpl("$P = {$E: $N}\n$W.clear()\n$W |= $P\n$P.clear()", "stmt")],
    "copy": [Tpl("($A.copy() | {$E: $N}).copy()", "dict")],
    "fromkeys": [Tpl("dict.fromkeys(dict.fromkeys($A, $N), $M)", "dict")],
    "get": [Tpl("$A.get($E, $A.get($C, $N))", "int")],
    "items": [Tpl("list($A.items())[:$K] + list({$E: $N}.items())", "list")],
    "keys": [Tpl("list($A.keys())[$J:] + list({$C: 0}.keys())", "list")],
    "values": [Tpl("list($A.values())[:$K] + list({$E: $N}.values())", "list")],
    "pop": [Tpl("$W.pop($E, $W.pop($C, $N))", "int")],
    "popitem": [Tpl("$P = $W.popitem()\n$Q = $W.popitem()\n$W[$Q[0]] = $P[1]\n$W[$P[0]] = $Q[1]", "stmt")],
    "setdefault": [Tpl("$W.setdefault($E, $W.setdefault($C, $N))", "int")],
    "update": [Tpl("$W.update({$E: $N})\n$W.update([($C, $M)])", "stmt")],
}

# ---------------------------------------------------------------- float ($E is a float)
_FLOAT: dict[str, list[Tpl]] = {
    "+": [Tpl("$A + $E + $N", "float")],
    "bool()": [Tpl("bool($A % 1) or bool($E - $N)", "bool")],
    "math.ceil()": [Tpl("math.ceil($A / math.ceil($E))", "int")],
    "divmod": [Tpl("divmod(divmod($A, $E)[0] + $N, $M)", "tuple")],
    "math.floor()": [Tpl("math.floor($A * math.floor($E) / $M)", "int")],
    "-": [Tpl("$A - $E - $C", "float")],
    "%": [Tpl("$A % $E % $M", "float")],
    "int()": [Tpl("int(int($A) / $M + $E)", "int")],
    "round": [Tpl("round(round($A * $E, 1) / $M, 2)", "float")],
    "as_integer_ratio": [Tpl("$A.as_integer_ratio() + ($E / 2).as_integer_ratio()", "tuple")],
    "conjugate": [Tpl("($A + $E.conjugate()).conjugate()", "float")],
    "is_integer": [Tpl("$A.is_integer() or ($E * 2).is_integer()", "bool")],
}
for _op in (">=", ">", "<", "<=", "!="):
    _FLOAT[_op] = [Tpl(f"$A {_op} $E or $A - $N {_op} $C", "bool")]

# ---------------------------------------------------------------- iterator built-ins (list[int])
_ITER: dict[str, dict[str, list[Tpl]]] = {
    "enumerate": {"enumerate": [Tpl("list(enumerate(list(enumerate($A, $J))[$K:]))", "list")]},
    "filter": {"filter": [Tpl("list(filter(lambda v: v > $T, filter(lambda v: v % $M != 0, $A)))", "list"),
                          Tpl("list(filter(lambda v: v != $E, filter(lambda v: v < $T, $B)))", "list")]},
    "range": {"range": [Tpl("list(range($J, $N, list(range(1, 4))[$J]))", "list"),
                        Tpl("list(range($E % 4, list(range($N, 30, $M))[1]))", "list")]},
    "zip": {"zip": [Tpl("list(zip($A, zip($B, $A[$J:])))", "list")]},
    "reverse": {"reversed": [Tpl("list(reversed(list(reversed($A))[$J:]))", "list")]},
}

TEMPLATES: dict[str, dict[str, list[Tpl]]] = {
    "str": _STR, "list": _LIST, "tuple": _TUPLE, "set": _SET, "dict": _DICT, "float": _FLOAT, **_ITER,
}

# ---------------------------------------------------------------- second variants (diversity)
_EXTRA: dict[str, dict[str, list[Tpl]]] = {
    "str": {
        "not in": [Tpl("$A[:$M] not in $B or $E not in $A[$J:]", "bool")],
        "str.format": [Tpl("str.format('{0}{1}{0}', $E, str.format('{:>6}', $A[:$K]))", "str")],
        "[:]": [Tpl("($A[:] * 2)[:]", "str")],
        "[index1:index2]": [Tpl("$A[$J:$K6][1:3] + $B[1:2]", "str")],
        "[index:]": [Tpl("($A + $B[$K:])[$J:]", "str")],
        "[:index2]": [Tpl("($E + $A[:$K2])[:$M]", "str")],
        "len()": [Tpl("len($A[len($B) % 5:])", "int")],
        "capitalize": [Tpl("$A.capitalize()[::-1].capitalize()", "str")],
        "casefold": [Tpl("($E + $A[::-1].casefold()).casefold()", "str")],
        "count": [Tpl("$B.count($A[$A.count($E) % 5])", "int")],
        "encode": [Tpl("[$A[:$K].encode(), ($E * 2).encode('ascii')]", "list")],
        "endswith": [Tpl("$A[:$K6].endswith($E) and $A.endswith($B[-1])", "bool")],
        "expandtabs": [Tpl("($E + '\\t' + ($A[:4] + '\\t').expandtabs($M) + $B[:2]).expandtabs(6)", "str")],
        "find": [Tpl("$B.find($A[$J], $B.find($E) + 1)", "int")],
        "format": [Tpl("'{0}{1}'.format($E, '{}-{}'.format($A[$J], $N))", "str")],
        "format_map": [Tpl("'<{a}>'.format_map({'a': '{b}{b}'.format_map({'b': $A[:$M]})})", "str")],
        "index": [Tpl("$B.index($B[$B.index($B[$J]) + 1])", "int")],
        "ljust": [Tpl("$A[:$K1].ljust(6, $C).ljust($N, '.')", "str")],
        "rjust": [Tpl("($E + $A[:$M]).rjust(6, $C).rjust(9, '*')", "str")],
        "lstrip": [Tpl("($E * 3 + $A).lstrip($E).lstrip($C)", "str")],
        "rstrip": [Tpl("($A + $E * 2).rstrip($E).rstrip($C)", "str")],
        "strip": [Tpl("($E + $A + $E).strip($E).strip($A[0])", "str")],
        "maketrans": [Tpl("[str.maketrans($E, $C), str.maketrans($A[:$M], $B[-$M:])]", "list")],
        "partition": [Tpl("$A.partition($A[$K])[0].partition($E)", "tuple")],
        "rpartition": [Tpl("$B.rpartition($E)[2].rpartition($A[$J])", "tuple")],
        "removeprefix": [Tpl("($E + $A).removeprefix($E).removeprefix($B[:$M])", "str")],
        "removesuffix": [Tpl("($A + $E).removesuffix($E).removesuffix($B[-$M:])", "str")],
        "rfind": [Tpl("$B.rfind($E, $B.rfind($A[$J]) + 1)", "int")],
        "split": [Tpl("$B.split($A[$J])[-1].split($E)", "list")],
        "rsplit": [Tpl("$A.rsplit($A[$K], 1)[0].rsplit($E)", "list")],
        "splitlines": [Tpl("($E + '\\n' + $A).splitlines()[0].splitlines()", "list")],
        "startswith": [Tpl("$A.startswith($E) and ($B + $A).startswith($B[:$K])", "bool")],
        "zfill": [Tpl("($E + $A[:$M]).zfill(7).zfill($N)", "str")],
    },
    "list": {
        "[index1:index2]": [Tpl("$A[$J:$K6][1:3] + $B[1:2]", "list")],
        "[index:]": [Tpl("($A + $B[$K:])[$J:]", "list")],
        "[:index2]": [Tpl("([$E] + $A[:$K2])[:$M]", "list")],
        "in": [Tpl("($E in $A) != ($E in $B)", "bool")],
        "not in": [Tpl("$A[$J] not in $B or $E not in $A[$K:]", "bool")],
        "len": [Tpl("len($A[len($B) % 5:])", "int")],
        "*": [Tpl("[$E] * $M * 2 + $A[:1]", "list")],
        "count": [Tpl("$B.count($A[$A.count($E) % 5])", "int")],
        "index": [Tpl("$B.index($B[$B.index($B[$J]) + 1])", "int")],
        "+": [Tpl("[$E] + $A[$K:] + [$C]", "list")],
        "*=": [Tpl("$P = $B[:2]\n$P *= 2\n$Q = [$E]\n$Q *= $M\n$W += $P + $Q", "stmt")],
        "reversed": [Tpl("list(reversed($B[$J:])) + list(reversed(list(reversed($A))[:$K1]))", "list")],
        "append": [Tpl("$W.append($W[-1] + $E)\n$W.append($C)", "stmt")],
        "copy": [Tpl("($A.copy() + [$E]).copy()", "list")],
        "extend": [Tpl("$W.extend([$E, $C])\n$W.extend($B[$K:$K2])", "stmt")],
        "insert": [Tpl("$W.insert(0, $W[-1])\n$W.insert($K, $E)", "stmt")],
        "reverse": [Tpl("$P = $B[:$K2]\n$P.reverse()\n$W.reverse()\n$W[$J] = $P[0]", "stmt")],
        "sort": [Tpl("$P = $B[:$M]\n$P.sort()\n$W.sort(reverse=True)\n$W[0] = $P[0] + $E", "stmt")],
    },
    "tuple": {
        "[index1:index2]": [Tpl("$A[$J:$K6][1:3] + $B[1:2]", "tuple")],
        "[index:]": [Tpl("($A + $B[$K:])[$J:]", "tuple")],
        "[:index2]": [Tpl("(($E,) + $A[:$K2])[:$M]", "tuple")],
        "in": [Tpl("($E in $A) != ($E in $B)", "bool")],
        "not in": [Tpl("$A[$J] not in $B or $E not in $A[$K:]", "bool")],
        "len": [Tpl("len($A[len($B) % 5:])", "int")],
        "*": [Tpl("($E,) * $M * 2 + $A[:1]", "tuple")],
        "count": [Tpl("$B.count($A[$A.count($E) % 5])", "int")],
        "index": [Tpl("$B.index($B[$B.index($B[$J]) + 1])", "int")],
        "+": [Tpl("($E,) + $A[$K:] + ($C,)", "tuple")],
    },
    "set": {
        "-": [Tpl("($A | {$E}) - ($B - {$C})", "set")],
        "^": [Tpl("($A ^ {$E}) ^ ($B ^ $A)", "set")],
        "in": [Tpl("($E in $A) != ($E in $B)", "bool")],
        "not in": [Tpl("$C not in $A or $E not in $B", "bool")],
        "&=": [Tpl("$W &= $A | {$E, $C}\n$W &= $B | {$E}", "stmt")],
        "|=": [Tpl("$W |= {$E, $E + 1}\n$W |= {$C}", "stmt")],
        "len": [Tpl("len($A - $B) + len({len($A)})", "int")],
        "add": [Tpl("$W.add($E * 2)\n$W.add($C)", "stmt")],
        "copy": [Tpl("($B | $A.copy()).copy()", "set")],
        "difference": [Tpl("$A.difference({$E}).difference($B)", "set")],
        "intersection": [Tpl("$A.intersection($B | {$E}).intersection($A)", "set")],
        "symmetric_difference": [Tpl("$A.symmetric_difference({$E}).symmetric_difference({$C})", "set")],
        "union": [Tpl("$A.union({$E}).union($B)", "set")],
        "difference_update": [Tpl("$W.difference_update({$E, $C})\n$W.difference_update($B & $A)", "stmt")],
        "intersection_update": [Tpl("$W.intersection_update($B | {$E})\n$W.intersection_update($A | {$C})", "stmt")],
        "symmetric_difference_update": [Tpl("$W.symmetric_difference_update({$E, $C})\n$W.symmetric_difference_update($B)", "stmt")],
        "update": [Tpl("$W.update({$E, $C})\n$W.update($B, {$E + 1})", "stmt")],
        "discard": [Tpl("$W.discard($E + 1)\n$W.discard($C)", "stmt")],
        "isdisjoint": [Tpl("$A.isdisjoint({$E, $C}) and $B.isdisjoint($A)", "bool")],
        "issubset": [Tpl("$A.issubset($B | {$E}) or ($B & $A).issubset({$C})", "bool")],
        "issuperset": [Tpl("($A | $B).issuperset({$E}) and $B.issuperset({$C})", "bool")],
    },
    "dict": {
        "in": [Tpl("($E in $A) != ($C in $A)", "bool")],
        "not in": [Tpl("$E not in $A or $C not in $A", "bool")],
        "==": [Tpl("($E in $A) == ($C in $A) or $A[$AK] == $N", "bool")],
        "!=": [Tpl("$A[$AK] != $N or ($E in $A) != ($C in $A)", "bool")],
        "dict[key]": [Tpl("$A[$AK] + $A[list($A)[-1]]", "int")],
        "len": [Tpl("len(list($A)[len($A) % 5]) + len($A)", "int")],
        "|": [Tpl("($A | {$E: $N}) | ({$C: $M} | $A)", "dict")],
        "dict[key] = value": [Tpl("$W[$C] = $N\n$W[$E] = $W[$C] * 2", "stmt")],
        "fromkeys": [Tpl("dict.fromkeys(list(dict.fromkeys($A))[:$K1], $N)", "dict")],
        "get": [Tpl("$A.get($C, 0) + $A.get($E, $A.get($AK))", "int")],
        "items": [Tpl("list($A.items())[-$M:] + list({$C: $N}.items())", "list")],
        "keys": [Tpl("list($A.keys())[:$M] + list({$E: 1}.keys())", "list")],
        "values": [Tpl("list($A.values())[$J:] + list({$C: $M}.values())", "list")],
        "pop": [Tpl("$W.pop($C, 0) + $W.pop($E, $W.pop($C, $N))", "int")],
        "popitem": [Tpl("$P = $W.popitem()\n$W[$P[0]] = $P[1] + $M\n$Q = $W.popitem()\n$W[$Q[0]] = $Q[1] - 1", "stmt")],
        "setdefault": [Tpl("$W.setdefault($C, $W.setdefault($E, 0) + $M)", "int")],
        "update": [Tpl("$W.update({$E: $N, $C: $M})\n$W.update({$E: $W[$E] + 1})", "stmt")],
    },
    "float": {
        "+": [Tpl("($A + $E) + ($N + 0.5)", "float")],
        "bool()": [Tpl("bool($A > $E) and bool($N % 2)", "bool")],
        "math.ceil()": [Tpl("math.ceil(math.ceil($A) / $M + $E)", "int")],
        "divmod": [Tpl("divmod($A, divmod($E, $M)[1] + 1)", "tuple")],
        "math.floor()": [Tpl("math.floor(math.floor($A / $M) * $E)", "int")],
        "-": [Tpl("($A - $E) - ($N - $C)", "float")],
        "%": [Tpl("($A % $M) % ($E % 4 + 1)", "float")],
        "int()": [Tpl("int($A - int($E / $M))", "int")],
        "round": [Tpl("round(round($A) / $M, 1)", "float")],
        "as_integer_ratio": [Tpl("($A - $E).as_integer_ratio() + $C.as_integer_ratio()", "tuple")],
        "conjugate": [Tpl("($A * $E).conjugate().conjugate()", "float")],
        "is_integer": [Tpl("($A - $E).is_integer() or ($A * 4).is_integer()", "bool")],
        **{op: [Tpl(f"($A - $E) {op} $N or $E {op} $C", "bool")] for op in (">=", ">", "<", "<=", "!=")},
    },
    "enumerate": {"enumerate": [Tpl("list(enumerate(enumerate($A[$J:$K6]), 1))", "list")]},
    "zip": {"zip": [Tpl("list(zip(zip($A, $B), $A[::-1]))", "list")]},
    "reverse": {"reversed": [Tpl("list(reversed($B[$J:])) + list(reversed(list(reversed($A))[:$K1]))", "list")]},
}
for _g, _d in _EXTRA.items():
    for _m, _ts in _d.items():
        TEMPLATES[_g][_m] = TEMPLATES[_g][_m] + _ts

# Value types of $A/$B per group (the "iterable" groups test built-ins over int lists).
GROUP_TYPE: dict[str, str] = {
    "str": "str", "list": "list", "tuple": "tuple", "set": "set", "dict": "dict", "float": "float",
    "enumerate": "list", "filter": "list", "range": "list", "zip": "list", "reverse": "list",
}

# Level >= 2 "other built-in method" transforms, per value type; `$X` is the transformed value.
# Each keeps the value's type and length (so templates' index bounds stay safe). The key is the
# method name, used to avoid picking the tested entry itself.
OTHER_METHODS: dict[str, list[tuple[str, str]]] = {
    "str": [("lower", "$X.lower()"), ("upper", "$X.upper()"), ("swapcase", "$X.swapcase()"),
            ("title", "$X.title()"), ("join", "''.join(sorted($X))")],
    "list": [("sorted", "sorted($X)"), ("sorted", "sorted($X, reverse=True)"), ("copy", "$X.copy()"),
             ("reversed", "list(reversed($X))")],
    "tuple": [("sorted", "tuple(sorted($X))"), ("reversed", "tuple(reversed($X))")],
    "set": [("union", "$X.union({$N})"), ("copy", "$X.copy()"), ("symmetric_difference", "$X.symmetric_difference({$N})")],
    "dict": [("copy", "$X.copy()"), ("items", "dict(sorted($X.items()))")],
    "float": [("abs", "abs($X)"), ("max", "max($X, $C)"), ("min", "min($X, 19.75)")],
    "int": [("abs", "abs($X)"), ("max", "max($X, 6)"), ("min", "min($X, 18)")],
}


def templates_for(group: str, method: str) -> list[Tpl]:
    """The templates of one inventory entry; KeyError names the missing entry."""
    try:
        return TEMPLATES[group][method]
    except KeyError:
        raise KeyError(f"no synthesis template for {group}.{method!r}") from None
