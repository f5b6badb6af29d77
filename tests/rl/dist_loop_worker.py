"""Worker for tests/rl/test_train_distributed.py: one process of a multi-controller GRPO run.

    python dist_loop_worker.py PROCESS_ID NUM_PROCESSES PORT RUN_DIR MAX_STEPS [SET ...]

Each process has 4 // NUM_PROCESSES CPU devices; the mesh spans all 4. The whole loop runs as in
production: per-process grain shards, all-gathered prompt batches, the sampler on the global
mesh, each process scoring its own rows, sharded updates, Orbax checkpoints written by all
processes, resume from RUN_DIR when it has checkpoints.
"""

import os
import sys

pid, nproc, port, run_dir, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // nproc}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
if nproc > 1:
    jax.distributed.initialize(f"localhost:{port}", nproc, pid)

from pathlib import Path  # noqa: E402

from execverify_jax.config_loader import load  # noqa: E402
from execverify_jax.rl.grpo.trainer import train  # noqa: E402
from execverify_jax.rl.run_config import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
           [f"max_steps={steps}", "tensorboard=false", "save_every=1", "progress=false",
            "mesh={data: 4, fsdp: 1, tensor: 1}", "data.worker_count=0", *sys.argv[6:]])
assert jax.device_count() == 4, jax.devices()
_, summary = train(cfg, run_dir)
print("worker", pid, "done", summary["rl_steps"], flush=True)
