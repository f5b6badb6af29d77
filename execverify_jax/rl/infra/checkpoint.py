"""Run checkpoints: Orbax CheckpointManager over the whole train state plus JSON metadata.

Layout: RUN/checkpoints/<step>/{state, meta}
  state  TrainState (params, AdamW state, step, RNG), each array restored onto its shards
  meta   JSON: the RL step, every process's grain iterator state, the resolved config, counters
Saves are asynchronous (the loop continues while the arrays are written); `keep` bounds the number
of checkpoints. RUN may be any path Orbax accepts (`gs://bucket/run`; execverify_jax/paths.py).
A run directory with checkpoints resumes from the latest one. Multi-host: every
process calls save/restore (Orbax coordinates); the meta is written by process 0 and holds the
iterator states of all processes (gathered by the loop).
"""

from __future__ import annotations

from typing import Any

import orbax.checkpoint as ocp

from execverify_jax.paths import PathLike, run_path
from execverify_jax.rl.infra.train_state import TrainState


class RunCheckpointer:
    """Thin wrapper over `ocp.CheckpointManager` for (TrainState, meta dict)."""

    def __init__(self, run_dir: PathLike, keep: int = 3, async_save: bool = True) -> None:
        self.dir = run_path(run_dir) / "checkpoints"  # gs:// kept (epath, not pathlib)
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                            enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.dir, options=opts)

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint (None when there is none)."""
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, meta: dict[str, Any], force: bool = False) -> None:
        """Starts saving (returns before the write finishes when async)."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=force)

    def restore(self, abstract_state: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """(state on its shards, meta) of `step` (default: the latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.dir}")
        res = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                                 meta=ocp.args.JsonRestore()))
        return res["state"], dict(res["meta"])

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are durable."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
