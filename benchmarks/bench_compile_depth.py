"""Compile time vs depth: scanned vs unrolled layers (issue 12, item 7).

Lowers and compiles, from abstract ShapeDtypeStruct inputs on 8 fake CPU devices
(data=2, fsdp=2, tensor=2), the body of the GRPO update: the gradient of a completion log-prob
loss (chunked log-probs, rematerialised blocks), and the sampler's prefill, for a narrow model
(D=64) at several depths. Prints JSON lines; docs/BENCHMARKS.md records the numbers.

    python benchmarks/bench_compile_depth.py --layers 2 28
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.model.logprobs import completion_logprobs  # noqa: E402
from execverify_jax.model.params import abstract_params  # noqa: E402


def compile_seconds(cfg: ModelConfig, mesh, B: int, T: int, C: int) -> float:
    graphdef, params = abstract_params(cfg, mesh)
    sh = shd.named_sharding((shd.BATCH, None), (B, T), mesh, shd.TRAIN_RULES)
    tokens = jax.ShapeDtypeStruct((B, T), jnp.int32, sharding=sh)
    mask = jax.ShapeDtypeStruct((B, T), jnp.bool_, sharding=sh)

    def loss(p, t, m):
        return completion_logprobs(nnx.merge(graphdef, p), t, C, m, chunk=64).sum()

    start = time.perf_counter()
    with shd.use_rules(mesh, shd.TRAIN_RULES):
        jax.jit(jax.grad(loss)).lower(params, tokens, mask).compile()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[2, 28])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--completion", type=int, default=128)
    a = p.parse_args()
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    for scan in (True, False):
        for L in a.layers:
            cfg = ModelConfig.tiny(num_layers=L, remat=True, scan_layers=scan, attention="chunked",
                                   attention_chunk=64)
            s = compile_seconds(cfg, mesh, a.batch, a.length, a.completion)
            print(json.dumps({"scan_layers": scan, "layers": L, "compile_s": round(s, 2)}), flush=True)


if __name__ == "__main__":
    main()
