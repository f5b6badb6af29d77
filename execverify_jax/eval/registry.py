"""Benchmark names of `execverify eval --benchmark` and how to build each one."""

from __future__ import annotations

from typing import Callable

from execverify_jax.eval.base import Benchmark


def _crux(name: str, mode: str, source: str = "cruxeval") -> Callable[[], Benchmark]:
    def make() -> Benchmark:
        from execverify_jax.eval.cruxeval import CruxEval
        return CruxEval(name, mode, source)
    return make


def _reval(name: str, tasks: tuple[str, ...]) -> Callable[[], Benchmark]:
    def make() -> Benchmark:
        from execverify_jax.eval.reval import REval
        return REval(tasks, name)
    return make


def _humaneval() -> Benchmark:
    from execverify_jax.eval.codegen import HumanEval
    return HumanEval()


def _codegen() -> Benchmark:
    from execverify_jax.eval.codegen import CodeGen
    return CodeGen()


def _synthetic() -> Benchmark:
    from execverify_jax.eval.synthetic import Synthetic
    return Synthetic()


BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
    "cruxeval-o": _crux("cruxeval-o", "output"),
    "cruxeval-i": _crux("cruxeval-i", "input"),
    "lcb-exec": _crux("lcb-exec", "output", "lcb"),
    "reval-coverage": _reval("reval-coverage", ("coverage",)),
    "reval-path": _reval("reval-path", ("path",)),
    "reval-state": _reval("reval-state", ("state",)),
    "reval-output": _reval("reval-output", ("output",)),
    "reval-ic": _reval("reval-ic", ("coverage", "path", "state", "output")),
    "humaneval": _humaneval,
    "codegen": _codegen,
    "synthetic": _synthetic,
}


def make(name: str) -> Benchmark:
    """The benchmark called `name`; unknown names are an error listing the known ones."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]()
