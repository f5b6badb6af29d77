"""The persistent compilation cache every `execverify` command turns on (compile_cache.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from execverify_jax import compile_cache
from execverify_jax.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def test_resolve_order(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve(None) == tmp_path / "xdg" / "execverify" / "jax-compile"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve(None) == tmp_path / "env"
    assert compile_cache.resolve(str(tmp_path / "flag")) == tmp_path / "flag"  # the flag wins
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.resolve(None) is None
    assert compile_cache.resolve("OFF") is None


def test_every_command_has_the_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert any(a.dest == "compile_cache" for a in p._actions), name


def _jit_once(cache: str) -> subprocess.CompletedProcess:
    # A fresh interpreter: the cache is configured before jax is imported, as the CLI does.
    code = ("from execverify_jax import compile_cache\n"
            f"compile_cache.enable({cache!r})\n"
            "import jax, jax.numpy as jnp\n"
            "print(float(jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.float32(0.5))))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_cpu_entries_are_written(tmp_path):
    cache = tmp_path / "cache"
    out = _jit_once(str(cache))
    assert out.returncode == 0, out.stderr[-2000:]
    assert any(p.is_file() for p in cache.rglob("*")), "no cache entry written"
    off = _jit_once("off")
    assert off.returncode == 0 and off.stdout == out.stdout


def test_unwritable_directory_runs_uncached(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert compile_cache.enable(str(blocker / "sub")) is None
    assert "compilation cache disabled" in capsys.readouterr().err
