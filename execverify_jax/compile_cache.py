"""JAX's persistent compilation cache, turned on for every `execverify` command.

A CLI run compiles the same prefill/decode/train-step shapes every time it starts (minutes on a
small CPU for a 30-layer model); with the cache, a second run loads the executables from disk.

Where: `--compile-cache DIR|off` (any command), else `EXECVERIFY_COMPILE_CACHE` (a directory or
`off`), else `$XDG_CACHE_HOME/execverify/jax-compile` (`~/.cache/...` without XDG_CACHE_HOME).
Every compiled entry is written (minimum compile time 0 s, minimum size 0 bytes): on CPU most
executables compile in well under JAX's default 1 s threshold, and would never be cached.

`enable` does not import jax: it sets the `JAX_*` environment variables that jax reads when it is
first imported (so `execverify run`, which never loads jax, pays nothing), and updates
`jax.config` directly when jax is already loaded (commands called in-process, tests).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "EXECVERIFY_COMPILE_CACHE"
OFF = ("off", "0", "false", "none", "")

# jax config name -> value written (the env var is the upper-cased name).
_SETTINGS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


def default_dir() -> Path:
    """The per-user cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "execverify" / "jax-compile"


def resolve(flag: str | None) -> Path | None:
    """The cache directory chosen by the flag, else the environment, else the default; None = off."""
    value = flag if flag is not None else os.environ.get(ENV)
    if value is None:
        return default_dir()
    if value.strip().lower() in OFF:
        return None
    return Path(value).expanduser()


def enable(flag: str | None = None) -> Path | None:
    """Turns the persistent cache on (or leaves it off); returns the directory used."""
    path = resolve(flag)
    if path is None:
        # An explicit off also undoes a cache configured by an earlier in-process call.
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        if "jax" in sys.modules:
            sys.modules["jax"].config.update("jax_compilation_cache_dir", None)
            _reset()
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # an unwritable cache must not stop the command: run uncached
        print(f"[execverify] compilation cache disabled: cannot create {path}: {exc}", file=sys.stderr)
        return None
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    for name, value in _SETTINGS.items():
        os.environ[name.upper()] = str(value)
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        jax.config.update("jax_compilation_cache_dir", str(path))
        for name, value in _SETTINGS.items():
            jax.config.update(name, value)
        _reset()
    return path


def _reset() -> None:
    # jax reads the cache directory once, at its first compile: make it read it again.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
