"""Compile-only per-device memory of every jitted function for the shipped 7B configs, on fake CPU
devices: nothing is allocated. Inputs are `jax.ShapeDtypeStruct`s carrying their shardings; each
function is `.lower(...).compile()`d for the config's mesh and `memory_analysis()` read back.

    python benchmarks/bench_memory.py                       # every 7B config, every function, 28 layers
    python benchmarks/bench_memory.py --quick               # the same at 2 layers (minutes, not hours)
    python benchmarks/bench_memory.py --layers 2 --configs stage1_qwen2p5_coder_7b.yaml \
        --functions grpo_update,logprob --compile-layers 2,28

Per function and device (GB = 1e9 bytes): args_gb (inputs: params, optimizer state, batch, KV
cache), temp_gb (XLA's scratch), out_gb, alias_gb (outputs written into donated inputs),
peak_gb = args + out - alias + temp, resident_gb (train state held while the function runs but not
its argument: the optimizer state in the log-prob pass, the whole train state while sampling) and
total_gb = peak + resident, the number held against 90% of the target's HBM (fits_90pct). Exactness: argument and output sizes are exact (shapes and
shardings); temp is an XLA:CPU estimate that overstates an accelerator's (XLA:CPU upcasts bf16
dot/elementwise work to f32 and hoists gathers out of loops, see docs/BENCHMARKS.md).
Functions: sft_update, grpo_update (one mini-batch), logprob (the whole rollout batch), prefill
and decode (one sampler call: rollout.prompts_per_call prompts x G, prompt bucket + max_new_tokens),
engine_admit, engine_attach and engine_run (the rollout engine, model/engine.py: rollout.slots
slots of prompt bucket + max_new_tokens cache positions, sharded over data x fsdp; one admission
prefill of rollout.prefill_batch rows, which with prefix sharing (rollout.share_prompts) is one
prompt-store fill of that many prompts, the slot state held beside it; engine_attach: copying
prefill_batch rows from the store into slots; `steps_per_call` decode steps attending over the
whole cache, the prompt store held beside them).
Writes benchmarks/results/memory.json (merged with what is there, so partial runs accumulate).
"""

from __future__ import annotations

import argparse
import os
import sys

if "jax" not in sys.modules:  # fake devices must exist before jax initialises
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=16").strip()

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from execverify_jax.config_loader import load  # noqa: E402
from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.model.params import abstract_model, param_shardings  # noqa: E402
from execverify_jax.rl.infra.optim import build_optimizer  # noqa: E402
from execverify_jax.rl.infra.train_state import abstract_train_state, state_shardings, with_shardings  # noqa: E402
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn, make_sft_update  # noqa: E402
from execverify_jax.rl.run_config import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("sft_qwen2p5_coder_7b.yaml", "stage1_qwen2p5_coder_7b.yaml",
           "stage1_qwen2p5_coder_7b_v5p.yaml", "stage2_qwen2p5_coder_7b.yaml")
HBM_GB = {"v5p": 95.0, "h100": 80.0}  # target accelerator per config (file name has _v5p or not)
DEVICES = {"v5p": 16, "h100": 8}
SFT_FUNCS = ("sft_update",)
GRPO_FUNCS = ("grpo_update", "logprob", "prefill", "decode", "engine_admit", "engine_attach", "engine_run")
GB = 1e9
COMPILE_CONFIG = "stage1_qwen2p5_coder_7b.yaml"  # whose GRPO-update compile seconds are compile_s


def target_of(name: str) -> str:
    return "v5p" if "v5p" in name else "h100"


def model_config(cfg: TrainConfig, layers: int | None) -> ModelConfig:
    """Qwen2.5-Coder-7B with the config's numerics (dtype, remat); `layers` overrides the depth."""
    m = ModelConfig.qwen2p5_coder_7b()
    numerics = {k: v for k, v in (("dtype", cfg.model.dtype), ("remat", cfg.model.remat)) if v is not None}
    if layers:
        numerics["num_layers"] = layers
    return m.replace(**numerics)


def sds(shape: tuple, dtype, mesh, logical: tuple) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype),
                                sharding=shd.named_sharding(logical, shape, mesh, shd.TRAIN_RULES))


def rows(shape: tuple, dtype, mesh) -> jax.ShapeDtypeStruct:
    """An abstract batch array sharded on axis 0 like `put_batch` does."""
    return sds(shape, dtype, mesh, (shd.BATCH,) + (None,) * (len(shape) - 1))


def analyse(lowered) -> tuple[dict, float]:
    t0 = time.perf_counter()
    compiled = lowered.compile()
    secs = time.perf_counter() - t0
    ma = compiled.memory_analysis()
    args, out = ma.argument_size_in_bytes, ma.output_size_in_bytes
    alias, temp = ma.alias_size_in_bytes, ma.temp_size_in_bytes
    return {"peak_gb": round((args + out - alias + temp) / GB, 3), "args_gb": round(args / GB, 3),
            "temp_gb": round(temp / GB, 3), "out_gb": round(out / GB, 3), "alias_gb": round(alias / GB, 3),
            "compile_s": round(secs, 1)}, secs


def per_device_bytes(tree) -> int:
    """Bytes one device holds of a tree of sharded ShapeDtypeStructs (exact: shard shapes)."""
    return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def resident_gb(fn: str, cfg: TrainConfig, mcfg: ModelConfig, mesh) -> float:
    """Train-state bytes per device that stay allocated while `fn` runs but are not its arguments:
    the optimizer state during the log-prob pass, the whole train state while sampling."""
    if fn in ("sft_update", "grpo_update"):
        return 0.0
    state = abstract_train_state(mcfg, build_optimizer(cfg.optim, 1000), mesh)
    held = state.opt_state if fn == "logprob" else state
    extra = engine_held_bytes(fn, cfg, mcfg, mesh) if fn.startswith("engine_") else 0
    return round((per_device_bytes(held) + extra) / GB, 3)


def train_lengths(cfg: TrainConfig) -> tuple[int, int]:
    """(prompt bucket P, completion length C) of the largest update batch."""
    return max(cfg.data.buckets), cfg.rollout.max_new_tokens


def lower_function(name: str, cfg: TrainConfig, mcfg: ModelConfig, mesh) -> object:
    """The lowered jitted function `name` on abstract inputs for this config and mesh."""
    if name == "sft_update":
        s = cfg.sft
        tx = build_optimizer(s.optim, 1000)
        state = abstract_train_state(mcfg, tx, mesh)
        upd = make_sft_update(abstract_model(mcfg)[0], tx, mesh, state_shardings(mcfg, tx, mesh),
                              micro_batch_size=s.micro_batch_size, mode=s.mode)
        B, T = s.batch_size, s.max_len
        batch = {"ids_BT": rows((B, T), np.int32, mesh), "attn_BT": rows((B, T), bool, mesh),
                 "loss_mask_BT": rows((B, T), bool, mesh)}
        return upd.lower(state, batch)
    g, r = cfg.grpo, cfg.rollout
    graphdef = abstract_model(mcfg)[0]
    P, C = train_lengths(cfg)
    G = g.group_size
    if name in ("grpo_update", "logprob"):
        tx = build_optimizer(cfg.optim, 1000)
        B = g.prompts_per_step * G // (g.num_minibatches if name == "grpo_update" else 1)
        batch = {"tokens_BT": rows((B, P + C), np.int32, mesh), "attn_BT": rows((B, P + C), bool, mesh),
                 "mask_BC": rows((B, C), np.float32, mesh), "adv_B": rows((B,), np.float32, mesh),
                 "old_logp_BC": rows((B, C), np.float32, mesh)}
        if name == "logprob":
            params = with_shardings(abstract_model(mcfg)[1], param_shardings(mcfg, mesh))
            fn = make_logprob_fn(graphdef, mesh, micro_batch_size=g.micro_batch_size,
                                 temperature=r.temperature, chunk=r.logprob_chunk)
            return fn.lower(params, batch)
        state = abstract_train_state(mcfg, tx, mesh)
        upd = make_grpo_update(graphdef, tx, g, mesh, state_shardings(mcfg, tx, mesh),
                               temperature=r.temperature, chunk=r.logprob_chunk)
        return upd.lower(state, batch)
    if name.startswith("engine_"):
        return lower_engine(name, cfg, mcfg, mesh, P)
    return lower_sampler(name, cfg, mcfg, mesh, P)


def _sampling_params(cfg: TrainConfig, mcfg: ModelConfig, mesh):
    """(rules, sampling model config, graphdef, abstract sharded params) of the rollout copy."""
    r = cfg.rollout
    rules = shd.SAMPLE_RULES if r.sample_reshard else shd.TRAIN_RULES
    scfg = mcfg if not r.sample_dtype else mcfg.replace(param_dtype=r.sample_dtype, dtype=r.sample_dtype)
    graphdef, abstract = abstract_model(scfg)
    return rules, scfg, graphdef, with_shardings(abstract, param_shardings(scfg, mesh, rules))


def _engine_abstract(cfg: TrainConfig, mcfg: ModelConfig, mesh, P: int):
    """(engine, its graphdef and sampling params, abstract sharded slot state, abstract prompt
    store or None without prefix sharing, rules) for the config's rollout section."""
    from execverify_jax.model.engine import Engine
    from execverify_jax.model.engine_ops import constrain_store, map_with_axes, zeros_state, zeros_store

    r = cfg.rollout
    rules, scfg, graphdef, params = _sampling_params(cfg, mcfg, mesh)
    eng = Engine(scfg, graphdef, slots=r.slots, steps_per_call=r.steps_per_call, block=r.block,
                 prefill_batch=min(r.prefill_batch, r.slots), share_prompts=r.share_prompts, mesh=mesh, rules=rules)
    S, C = eng.slots, r.max_new_tokens
    M = -(-(P + C) // eng.block) * eng.block
    with_sharding = lambda ax, x: jax.ShapeDtypeStruct(  # noqa: E731
        x.shape, x.dtype, sharding=shd.named_sharding(ax, x.shape, mesh, rules))
    shapes = jax.eval_shape(lambda: zeros_state(S, M, C, scfg.num_layers, scfg.num_kv_heads,
                                                 scfg.head_dim, eng.cache_dtype))
    state = map_with_axes(with_sharding, shapes)
    store = None
    if eng.share_prompts and cfg.grpo.group_size > 1:
        shapes = jax.eval_shape(lambda: zeros_store(eng.prefill_batch, P, scfg.vocab_size, scfg.num_layers,
                                                     scfg.num_kv_heads, scfg.head_dim, eng.cache_dtype))
        store = constrain_store(shapes, fn=with_sharding)
    return eng, graphdef, params, state, store, rules, M


def engine_held_bytes(fn: str, cfg: TrainConfig, mcfg: ModelConfig, mesh) -> int:
    """Engine buffers held while `fn` runs but not its arguments: the slot state during a store
    fill, the prompt store during decode (with prefix sharing)."""
    _, _, _, state, store, _, _ = _engine_abstract(cfg, mcfg, mesh, train_lengths(cfg)[0])
    if store is None:
        return 0
    return per_device_bytes(state) if fn == "engine_admit" else per_device_bytes(store) if fn == "engine_run" else 0


def lower_engine(name: str, cfg: TrainConfig, mcfg: ModelConfig, mesh, P: int) -> object:
    """engine_admit / engine_attach / engine_run of the rollout engine on abstract, sharded slot
    state. engine_admit: one admission prefill of rollout.prefill_batch rows; with prefix sharing
    (rollout.share_prompts, G > 1) that is a prompt-store fill of prefill_batch prompts, and
    engine_attach copies prefill_batch rows from the store into slots."""
    from execverify_jax.model.strategies import make_strategy

    r = cfg.rollout
    eng, graphdef, params, state, store, rules, M = _engine_abstract(cfg, mcfg, mesh, P)
    scfg = eng.cfg
    key = jax.eval_shape(lambda: jax.random.key(0))
    key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    statics = dict(strategy=make_strategy(temperature=r.temperature, top_k=r.top_k, top_p=r.top_p), stop_ids=(0,))
    J = eng.prefill_batch
    i32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)  # noqa: E731
    with shd.use_rules(mesh, rules):
        if name == "engine_run":
            # The per-layer weights `generate` slices once: each stacked leaf without its layer axis.
            one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=jax.sharding.NamedSharding(
                mesh, jax.sharding.PartitionSpec(*x.sharding.spec[1:]))), params["layers"])
            layers = [one] * scfg.num_layers
            exit_free = jax.ShapeDtypeStruct((), jnp.int32)
            return eng._run.lower(graphdef, params, layers, state, key, exit_free, A=M, k=eng.k, **statics)
        if name == "engine_attach":
            if store is None:
                raise ValueError("engine_attach needs rollout.share_prompts and group_size > 1")
            return eng._attach.lower(state, store, i32(J), i32(J), i32(J, 2), i32(J), key, **statics)
        if store is not None:
            return eng._fill.lower(graphdef, params, store, i32(J, P), i32(J), i32(J))
        return eng._admit.lower(graphdef, params, state, i32(J, P), i32(J), i32(J), i32(J, 2), i32(J), key, **statics)


def lower_sampler(name: str, cfg: TrainConfig, mcfg: ModelConfig, mesh, P: int) -> object:
    """prefill / decode of one sampler call, on the sampling copy of the weights (SAMPLE_RULES
    and sample_dtype when rollout.sample_reshard, else the training params)."""
    from execverify_jax.model.sampler import Sampler
    from execverify_jax.model.strategies import make_strategy

    r, g = cfg.rollout, cfg.grpo
    rules, scfg, graphdef, params = _sampling_params(cfg, mcfg, mesh)
    sampler = Sampler(scfg, graphdef, mesh=mesh, rules=rules)
    B = (r.prompts_per_call or g.prompts_per_step) * g.group_size
    prompt = sds((B, P), np.int32, mesh, (shd.BATCH, None))
    lengths = sds((B,), np.int32, mesh, (shd.BATCH,))  # also the per-row caps' shape
    key = jax.eval_shape(lambda: jax.random.key(0))
    key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    statics = dict(strategy=make_strategy(temperature=r.temperature, top_k=r.top_k, top_p=r.top_p),
                   max_new=r.max_new_tokens, pad_id=0, stop_ids=(0,))
    with shd.use_rules(mesh, rules):
        pre = sampler._prefill.lower(graphdef, params, prompt, lengths, lengths, key, cache_dtype=sampler.cache_dtype, **statics)
        if name == "prefill":
            return pre
        compiled = pre.compile()
        out = jax.eval_shape(lambda *a: sampler._prefill(*a, cache_dtype=sampler.cache_dtype, **statics),
                             graphdef, params, prompt, lengths, lengths, key)
        state = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), out,
                             compiled.output_shardings)
        return sampler._decode.lower(graphdef, params, state, **statics)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help="config files under configs/ (comma-separated)")
    ap.add_argument("--functions", default="", help="subset of sft_update,grpo_update,logprob,prefill,decode,engine_admit,engine_attach,engine_run")
    ap.add_argument("--layers", type=int, default=None, help="override the depth (28 = the real model)")
    ap.add_argument("--quick", action="store_true", help="= --layers 2 (benchmarks/run_all.py --run)")
    ap.add_argument("--compile-layers", default="", help="e.g. 2,28: GRPO-update compile seconds of "
                    f"{COMPILE_CONFIG} at these depths (also recorded whenever its grpo_update is analysed)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (all configs)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "memory.json"))
    a = ap.parse_args(argv)
    if a.quick and a.layers is None:
        a.layers = 2
    wanted = set(filter(None, a.functions.split(",")))
    out_path = Path(a.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.setdefault("configs", {})
    result.setdefault("compile_s", {})
    result["compile_s"]["config"] = COMPILE_CONFIG
    result["machine"] = "XLA:CPU, fake devices (--xla_force_host_platform_device_count), shared 2-core host"
    for name in filter(None, a.configs.split(",")):
        cfg = load(TrainConfig, REPO / "configs" / name, list(a.set))
        target = target_of(name)
        mesh = shd.make_mesh(cfg.mesh, jax.devices()[:DEVICES[target]])
        mcfg = model_config(cfg, a.layers)
        entry = result["configs"].setdefault(name, {})
        entry.update({"hbm_gb": HBM_GB[target], "devices": int(mesh.size), "mesh": dict(mesh.shape),
                      "layers": mcfg.num_layers, "overrides": list(a.set)})
        funcs = entry.setdefault("functions", {})
        for fn in SFT_FUNCS if cfg.stage == "sft" else GRPO_FUNCS:
            if wanted and fn not in wanted:
                continue
            t0 = time.perf_counter()
            try:
                stats, _ = analyse(lower_function(fn, cfg, mcfg, mesh))
            except Exception as exc:  # noqa: BLE001 - recorded, the other functions still run
                stats = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            stats["layers"] = mcfg.num_layers
            stats["wall_s"] = round(time.perf_counter() - t0, 1)
            if "peak_gb" in stats:
                stats["resident_gb"] = resident_gb(fn, cfg, mcfg, mesh)
                stats["total_gb"] = round(stats["peak_gb"] + stats["resident_gb"], 3)
                stats["fits_90pct"] = stats["total_gb"] <= 0.9 * HBM_GB[target]
            funcs[fn] = stats
            if fn == "grpo_update" and name == COMPILE_CONFIG and "compile_s" in stats:
                result["compile_s"][f"layers_{mcfg.num_layers}"] = stats["compile_s"]
            print(f"{name} {fn} layers={mcfg.num_layers}: {stats}", flush=True)
            out_path.write_text(json.dumps(result, indent=2) + "\n")
    for n in (int(x) for x in filter(None, a.compile_layers.split(","))):
        name = COMPILE_CONFIG
        cfg = load(TrainConfig, REPO / "configs" / name, list(a.set))
        mesh = shd.make_mesh(cfg.mesh, jax.devices()[:DEVICES[target_of(name)]])
        lowered = lower_function("grpo_update", cfg, model_config(cfg, n), mesh)
        _, secs = analyse(lowered)
        result["compile_s"][f"layers_{n}"] = round(secs, 1)
        print(f"compile grpo_update layers={n}: {secs:.1f} s", flush=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
