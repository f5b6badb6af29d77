"""Worker for tests/rl/test_train_distributed.py: one JAX process of a 1- or 2-process CPU job.

    python dist_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR

Each process has 2 CPU devices; the mesh (data=2, fsdp=2) spans all 4 global devices. It runs two
sharded GRPO updates on a fixed global batch, saves the train state with the run checkpointer
(Orbax, all processes), restores it into fresh shardings, runs one more update, and process 0
writes the parameters and metrics to OUT_DIR/result.npz; all processes export OUT_DIR/hf.
"""

import os
import sys

pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // nproc}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
if nproc > 1:
    jax.distributed.initialize(f"localhost:{port}", nproc, pid)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.rl.infra.checkpoint import RunCheckpointer  # noqa: E402
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig  # noqa: E402
from execverify_jax.rl.infra.distributed import allgather_json  # noqa: E402
from execverify_jax.rl.infra.optim import build_optimizer  # noqa: E402
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn, put_batch  # noqa: E402
from execverify_jax.rl.infra.train_state import abstract_train_state, create_train_state, state_shardings  # noqa: E402

assert jax.device_count() == 4, jax.devices()
cfg = ModelConfig.tiny(vocab_size=64)
mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 1})
tx = build_optimizer(OptimConfig(lr=1e-3), 10)
gd, st = create_train_state(cfg, tx, seed=0, mesh=mesh)
sh = state_shardings(cfg, tx, mesh)
g = GRPOConfig(group_size=2, prompts_per_step=4, num_minibatches=1, micro_batch_size=4)
upd = make_grpo_update(gd, tx, g, mesh, sh)
lp = make_logprob_fn(gd, mesh, micro_batch_size=4)
rng = np.random.default_rng(0)
B, P, C = 8, 6, 5
host = dict(tokens_BT=rng.integers(0, 64, (B, P + C)).astype(np.int32), attn_BT=np.ones((B, P + C), bool),
            mask_BC=np.ones((B, C), np.float32), adv_B=rng.normal(size=B).astype(np.float32))
b = put_batch(host, mesh)
b["old_logp_BC"] = lp(st.params, b) - 0.05
metrics = []
for _ in range(2):
    st, m = upd(st, b)
    metrics.append(float(np.asarray(m["loss"].addressable_data(0))))  # replicated scalar
ck = RunCheckpointer(os.path.join(out, "run"), keep=1)
ck.save(2, st, {"rl_step": 2, "loader_states": allgather_json({"process": pid})})
ck.wait()
restored, meta = ck.restore(abstract_train_state(cfg, tx, mesh))
ck.close()
assert meta["loader_states"] == [{"process": i} for i in range(nproc)], meta
st, m = upd(restored, b)
metrics.append(float(np.asarray(m["loss"].addressable_data(0))))  # replicated scalar
params = [np.asarray(multihost_utils.process_allgather(x, tiled=True)) for x in jax.tree.leaves(st.params)]
# HF export from sharded weights: every process takes part in the gathers, process 0 writes.
from execverify_jax.model.hf_export import save_hf  # noqa: E402

save_hf(cfg, st.params, os.path.join(out, "hf"), dtype="float32")
if pid == 0:
    np.savez(os.path.join(out, "result.npz"), metrics=np.asarray(metrics), *params)
print("worker", pid, "done", metrics, flush=True)
