"""Compile time vs depth: scanned vs unrolled layers (issue 12, item 7).

Lowers and compiles, from abstract ShapeDtypeStruct inputs on 8 fake CPU devices
(data=2, fsdp=2, tensor=2), the body of the GRPO update: the gradient of a completion log-prob
loss (chunked log-probs, rematerialised blocks), and the sampler's prefill, for a narrow model
(D=64) at several depths. Prints JSON lines; docs/BENCHMARKS.md records the numbers.
`--memory-7b` instead compiles the model-side functions at the Qwen2.5-Coder-7B shape (fsdp=8)
and prints their per-device compiled memory (arguments, outputs, temporaries). Those use the
CPU attention path (`chunked`); on GPU `auto` picks cuDNN, on TPU splash.

    python benchmarks/bench_compile_depth.py --layers 2 28
    python benchmarks/bench_compile_depth.py --memory-7b
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
from execverify_jax.model.params import abstract_params, param_shardings  # noqa: E402
from execverify_jax.model.sampler import _prefill  # noqa: E402
from execverify_jax.model.strategies import Temperature  # noqa: E402


def _report(what: str, seconds: float, compiled) -> None:
    ma = compiled.memory_analysis()
    print(json.dumps({"what": what, "compile_s": round(seconds, 1),
                      "arg_GB": round(ma.argument_size_in_bytes / 1e9, 2),
                      "out_GB": round(ma.output_size_in_bytes / 1e9, 2),
                      "temp_GB": round(ma.temp_size_in_bytes / 1e9, 2)}), flush=True)


def compile_logprob_grad(cfg: ModelConfig, mesh, B: int, T: int, C: int, chunk: int):
    """(compiled gradient of a completion log-prob loss, seconds to lower + compile), abstract
    inputs; the gradient comes out on the parameters' own shardings."""
    graphdef, params = abstract_params(cfg, mesh)
    sh = shd.named_sharding((shd.BATCH, None), (B, T), mesh, shd.TRAIN_RULES)
    tokens = jax.ShapeDtypeStruct((B, T), jnp.int32, sharding=sh)
    mask = jax.ShapeDtypeStruct((B, T), jnp.bool_, sharding=sh)

    def loss(p, t, m):
        return completion_logprobs(nnx.merge(graphdef, p), t, C, m, chunk=chunk).sum()

    start = time.perf_counter()
    with shd.use_rules(mesh, shd.TRAIN_RULES):
        fn = jax.jit(jax.grad(loss), out_shardings=param_shardings(cfg, mesh))
        compiled = fn.lower(params, tokens, mask).compile()
    return compiled, time.perf_counter() - start


def memory_7b() -> None:
    """Per-device compiled memory of the 7B log-prob gradient and prefill on fsdp=8."""
    mesh = shd.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
    cfg = ModelConfig.qwen2p5_coder_7b(param_dtype="float32", dtype="bfloat16", remat=True, attention="chunked")
    B, T, C = 8, 6144, 4096
    compiled, seconds = compile_logprob_grad(cfg, mesh, B, T, C, 1024)
    _report(f"grad of completion log-probs: fp32 params, bf16 compute, {B} x {T} tokens (1 row per "
            f"device), C={C}, remat nothing_saveable, logits chunk 1024", seconds, compiled)

    scfg = cfg.replace(param_dtype="bfloat16", remat=False)
    graphdef, params = abstract_params(scfg, mesh, shd.SAMPLE_RULES)
    B, P, C = 64, 2048, 4096
    sh = shd.named_sharding((shd.BATCH, None), (B, P), mesh, shd.SAMPLE_RULES)
    lengths = jax.ShapeDtypeStruct((B,), jnp.int32, sharding=shd.named_sharding((shd.BATCH,), (B,), mesh, shd.SAMPLE_RULES))
    fn = jax.jit(_prefill, static_argnums=(0,),
                 static_argnames=("strategy", "max_new", "pad_id", "stop_ids", "cache_dtype"))
    start = time.perf_counter()
    with shd.use_rules(mesh, shd.SAMPLE_RULES):
        compiled = fn.lower(graphdef, params, jax.ShapeDtypeStruct((B, P), jnp.int32, sharding=sh), lengths,
                            lengths, jax.random.key(0), strategy=Temperature(1.0), max_new=C, pad_id=0,
                            stop_ids=(151643,), cache_dtype="bfloat16").compile()
    _report(f"sampler prefill: bf16 sampling copy (SAMPLE_RULES), {B} x {P}-token prompts, cache "
            f"{P} + {C} slots", time.perf_counter() - start, compiled)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[2, 28])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--completion", type=int, default=128)
    p.add_argument("--memory-7b", action="store_true", help="7B per-device compiled memory instead")
    a = p.parse_args()
    if a.memory_7b:
        memory_7b()
        return
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    for scan in (True, False):
        for L in a.layers:
            cfg = ModelConfig.tiny(num_layers=L, remat=True, scan_layers=scan, attention="chunked",
                                   attention_chunk=64)
            _, s = compile_logprob_grad(cfg, mesh, a.batch, a.length, a.completion, 64)
            print(json.dumps({"scan_layers": scan, "layers": L, "compile_s": round(s, 2)}), flush=True)


if __name__ == "__main__":
    main()
