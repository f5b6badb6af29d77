"""The synthesis pipeline: programs -> execution filter -> tracer -> questions -> shards (docs/DATA.md).

driver.py    `run_synth`: plans shards and chunks, resumes, finalizes;  signal.py  outputs that carry signal
config.py    `DataConfig` and its sections;  stages.py  `RealStages` (the sandboxed stages)
chunk.py     one chunk: synthesize, filter, trace, ask;  files.py  chunk files and locks
finalize.py  dedup, decontamination, splits, stats
"""

# driver.py's __all__ is the package's public API (one list, kept there).
from execverify_jax.data.pipeline.driver import *  # noqa: F401,F403
from execverify_jax.data.pipeline.driver import __all__  # noqa: F401
