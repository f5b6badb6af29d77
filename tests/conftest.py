"""Test-wide setup: 8 fake CPU devices, strict numpy rank promotion, absl flags parsed (grain).

Environment variables must be set before jax is first imported anywhere, hence module level.
Area-specific fixtures live in tests/<area>/conftest.py.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUMPY_RANK_PROMOTION", "raise")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
# The tokenizers library forks badly once its thread pool started; tests fork sandboxes.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# CLI commands called in-process would turn on the user's persistent compilation cache for the
# rest of the session; tests opt in explicitly (tests/test_compile_cache.py).
os.environ.setdefault("EXECVERIFY_COMPILE_CACHE", "off")

import pytest  # noqa: E402

try:  # grain reads absl flags in multiprocess iteration (google/grain#1355).
    from absl import flags as _absl_flags

    _absl_flags.FLAGS.mark_as_parsed()
except ImportError:  # absl comes with grain/jax; data-only installs may lack it
    pass

REPO = Path(__file__).resolve().parents[1]
# tests/testing.py (shared tiny-model helpers) imports as `testing` from every test folder.
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
SHARED_DATA = Path(os.environ.get("EXECVERIFY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared benchmark folder (CRUXEval, DREval); tests using it skip when it is absent."""
    if not (SHARED_DATA / "benchmarks").is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set EXECVERIFY_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cruxeval_path(shared_data: Path) -> Path:
    p = shared_data / "benchmarks" / "cruxeval.jsonl"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def text_files(tmp_path_factory) -> list[Path]:
    """Local training text: this package's own source files."""
    root = REPO / "execverify_jax"
    files = sorted(root.rglob("*.py"))
    assert files
    return files


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory, text_files) -> Path:
    from execverify_jax.data.tokenizer_train import train_bpe
    return train_bpe(text_files, tmp_path_factory.mktemp("bpe"), 400)
