"""Decode throughput of our KV-cache sampler vs transformers `generate`, same weights, CPU.

For each model shape: random weights are created with our initialiser, exported to a temporary
HF directory (fp32), loaded by both our importer and `AutoModelForCausalLM`, and both generate
`--new-tokens` greedy tokens for `--batch` random prompts of `--prompt-len` tokens (no stop
token; HF gets min_new_tokens so it cannot stop early). Throughput = batch * new tokens / wall
time of the whole generate call (prefill included for both), median of `--repeats` runs. Our
first call's extra time is reported as compile time and excluded from tokens/s. Each side runs in
a fresh process (no XLA thread pool next to torch's OpenMP threads). Ours is measured on 1 XLA
CPU device and on one device per core (`--cpu-devices`, the batch sharded over a data mesh axis);
transformers uses `--threads` torch threads (default 2 = all cores), always fp32. Ours in fp32
and in the `bf16-matmul` mode (bf16 weights and matmul inputs, fp32 accumulation, activations,
attention and KV cache; `--numerics`). Also reports how many greedy tokens agree with
transformers (bf16 rounding flips near-ties, so the bf16 rows agree less).

    python benchmarks/bench_sampler.py                 # tiny + 0.5B-shaped (slow on 2 cores)
    python benchmarks/bench_sampler.py --models tiny   # quick check

Writes benchmarks/results/sampler.json. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "tiny": dict(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_layers=4,
                 num_heads=4, num_kv_heads=2, head_dim=64, max_position_embeddings=4096),
    "qwen2p5_0p5b_shape": "qwen2p5_0p5b",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (XLA uses all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (median)")
    p.add_argument("--cpu-devices", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                   help="our sampler's XLA CPU device counts to measure (batch sharded over them)")
    p.add_argument("--numerics", nargs="+", default=["float32", "bf16-matmul"],
                   choices=["float32", "bf16-matmul"],
                   help="our inference numerics to measure (bf16-matmul: bf16 weights and matmul inputs, "
                        "fp32 accumulation, activations and attention); transformers always runs fp32")
    p.add_argument("--hf-dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                   help="transformers dtypes to measure (speedup is against the first, float32)")
    p.add_argument("--worker-numerics", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--hf-worker", default=None, help=argparse.SUPPRESS)  # internal: time HF only
    p.add_argument("--ours-worker", default=None, help=argparse.SUPPRESS)  # internal: time ours only
    p.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "sampler.json"))
    return p.parse_args()


def bench_model(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    import numpy as np

    from execverify_jax.model.config import ModelConfig
    from execverify_jax.model.hf_export import save_hf
    from execverify_jax.model.params import create_model
    from flax import nnx

    spec = MODELS[name]
    cfg = ModelConfig.preset(spec) if isinstance(spec, str) else ModelConfig(**spec)
    B, P, C = args.batch, args.prompt_len, args.new_tokens
    hf_dir = workdir / name
    t0 = time.perf_counter()
    save_hf(cfg, nnx.split(create_model(cfg, seed=0))[1], hf_dir, dtype="float32")
    print(f"[{name}] {cfg.num_params() / 1e6:.1f}M params exported in {time.perf_counter() - t0:.1f}s")
    prompts = np.random.RandomState(0).randint(0, cfg.vocab_size, (B, P)).astype(np.int32)
    np.save(workdir / f"{name}_prompts.npy", prompts)

    # ---- ours, one fresh process per CPU device count (XLA reads the count at start-up) ----
    ours: dict[tuple[str, int], dict] = {}
    for numerics in args.numerics:
        for n in args.cpu_devices:
            if B % n:
                print(f"[{name}] skipping {n} CPU devices: batch {B} does not divide")
                continue
            cmd = [sys.executable, __file__, "--ours-worker", str(hf_dir), "--devices", str(n),
                   "--worker-numerics", numerics, "--repeats", str(args.repeats), "--new-tokens", str(C)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            res["tokens"] = np.load(workdir / f"{name}_ours_{numerics}_{n}_tokens.npy")
            ours[(numerics, n)] = res
            run_s = statistics.median(res["times"])
            print(f"[{name}] ours, {numerics}, {n} CPU device(s): {B * C / run_s:,.0f} tok/s "
                  f"({run_s:.2f}s/run), compile ~{res['compile_s']:.1f}s")

    # ---- transformers, in a fresh process too: XLA's thread pool living in the same process
    # slowed torch's OpenMP threads down by 20x+ in our first measurements. ----
    hf: dict[str, dict] = {}
    for dtype in args.hf_dtypes:
        cmd = [sys.executable, __file__, "--hf-worker", str(hf_dir), "--threads", str(args.threads),
               "--worker-numerics", dtype, "--repeats", str(args.repeats), "--new-tokens", str(C)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        res["tokens"] = np.load(workdir / f"{name}_hf_{dtype}_tokens.npy")
        hf[dtype] = res
        hf_s = statistics.median(res["times"])
        print(f"[{name}] transformers {dtype}: {B * C / hf_s:,.0f} tok/s ({hf_s:.2f}s/run)")
    ref = "float32" if "float32" in hf else next(iter(hf))
    hf_tokens, hf_times = hf[ref]["tokens"], hf[ref]["times"]
    hf_s = statistics.median(hf_times)
    rows = []
    for (numerics, n), res in ours.items():
        ours_s = statistics.median(res["times"])
        ours_tokens = res["tokens"]
        # Greedy paths agree until a near-tie flips an argmax (fp32 sums in another order).
        same_prefix = [int(np.argmax(np.r_[a != b, True])) for a, b in zip(ours_tokens, hf_tokens)]
        rows.append({
            "model": name, "numerics": numerics, "cpu_devices": n, "params_m": round(cfg.num_params() / 1e6, 1), "batch": B,
            "prompt_len": P, "new_tokens": C, "ours_tok_s": round(B * C / ours_s, 1),
            "ours_run_s": round(ours_s, 3), "ours_compile_s": round(res["compile_s"], 2),
            "hf_tok_s": round(B * C / hf_s, 1), "hf_run_s": round(hf_s, 3), "speedup": round(hf_s / ours_s, 2),
            "ours_runs_s": [round(t, 3) for t in res["times"]], "hf_runs_s": [round(t, 3) for t in hf_times],
            "greedy_tokens_agree_frac": round(float((ours_tokens == hf_tokens).mean()), 4),
            "greedy_identical_prefix_mean": round(float(np.mean(same_prefix)), 1),
            "torch_threads": args.threads, "jax_devices": res["devices"], "hf_reference_dtype": ref,
            **{f"hf_{d}_tok_s": round(B * C / statistics.median(h["times"]), 1) for d, h in hf.items()},
            **{f"speedup_vs_hf_{d}": round(statistics.median(h["times"]) / ours_s, 2) for d, h in hf.items()},
        })
    return rows


def ours_worker(args: argparse.Namespace) -> int:
    """Times our sampler on `--ours-worker DIR` with `--devices` CPU devices; prints JSON.

    With n > 1 the batch is sharded over n XLA CPU devices (mesh data axis): each device runs
    its rows' decode loop on its own thread. At batch 16 a decode step is latency-bound (many
    small kernels), so one device uses a second core poorly (measured: +21% from 1 to 2 cores).
    """
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np

    from execverify_jax.model import sharding as shd
    from execverify_jax.model.config import inference_numerics
    from execverify_jax.model.hf_import import load_hf_state
    from execverify_jax.model.sampler import Sampler
    from execverify_jax.model.strategies import Greedy

    hf_dir = Path(args.ours_worker)
    prompts = np.load(hf_dir.parent / f"{hf_dir.name}_prompts.npy")
    mesh = shd.make_mesh({"data": args.devices, "fsdp": 1, "tensor": 1}) if args.devices > 1 else None
    cfg, graphdef, params = load_hf_state(hf_dir, mesh=mesh, rules=shd.SAMPLE_RULES,
                                          **inference_numerics(args.worker_numerics, "cpu"))
    sampler = Sampler(cfg, graphdef, buckets=(prompts.shape[1],), mesh=mesh)
    rows = [list(r) for r in prompts]

    def ours() -> np.ndarray:
        return sampler.generate(params, rows, args.new_tokens, Greedy()).tokens_BC

    t0 = time.perf_counter()
    first = ours()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tokens = ours()
        times.append(time.perf_counter() - t0)
    assert (first == tokens).all()
    np.save(hf_dir.parent / f"{hf_dir.name}_ours_{args.worker_numerics}_{args.devices}_tokens.npy", tokens)
    print(json.dumps({"times": times, "compile_s": first_s - statistics.median(times),
                      "devices": [str(d) for d in jax.devices()][:1] + [f"x{jax.device_count()}"]}))
    return 0


def hf_worker(args: argparse.Namespace) -> int:
    """Times transformers `generate` on `--hf-worker DIR`; prints {"times": [...]} as JSON."""
    import numpy as np
    import torch
    import transformers

    hf_dir = Path(args.hf_worker)
    prompts = np.load(hf_dir.parent / f"{hf_dir.name}_prompts.npy")
    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.worker_numerics]
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype).eval()
    inp = torch.tensor(prompts, dtype=torch.long)
    attn = torch.ones_like(inp)
    C, P = args.new_tokens, prompts.shape[1]

    def theirs(n: int) -> np.ndarray:
        with torch.no_grad():
            out = model.generate(inp, attention_mask=attn, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=0)
        return out[:, P:].numpy()

    theirs(2)  # warm-up (allocations, lazy init)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tokens = theirs(C)
        times.append(time.perf_counter() - t0)
    np.save(hf_dir.parent / f"{hf_dir.name}_hf_{args.worker_numerics}_tokens.npy", tokens)
    print(json.dumps({"times": times}))
    return 0


def main() -> int:
    args = parse_args()
    if args.hf_worker:
        return hf_worker(args)
    if args.ours_worker:
        return ours_worker(args)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            results.extend(bench_model(name, args, Path(tmp)))
    print()
    print(f"{'model':<22}{'params':>9}{'numerics':>13}{'CPU devs':>9}{'ours tok/s':>12}{'HF fp32':>9}"
          f"{'HF bf16':>9}{'vs fp32':>9}{'vs bf16':>9}{'compile s':>11}{'agree':>7}")
    for r in results:
        print(f"{r['model']:<22}{r['params_m']:>8}M{r['numerics']:>13}{r['cpu_devices']:>9}{r['ours_tok_s']:>12,.0f}"
              f"{r.get('hf_float32_tok_s', float('nan')):>9,.0f}{r.get('hf_bfloat16_tok_s', float('nan')):>9,.0f}"
              f"{r.get('speedup_vs_hf_float32', float('nan')):>8.2f}x{r.get('speedup_vs_hf_bfloat16', float('nan')):>8.2f}x"
              f"{r['ours_compile_s']:>11.1f}{r['greedy_tokens_agree_frac']:>7.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import jax
    import torch
    import transformers
    payload = {"benchmark": "sampler", "results": results,
               "env": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "jax": jax.__version__, "torch": torch.__version__,
                       "transformers": transformers.__version__,
                       "note": "shared 2-core machine; timings are noisy"}}
    # Merge with previous results for models not run this time (e.g. --models tiny).
    if out.is_file():
        try:
            old = json.loads(out.read_text()).get("results", [])
            payload["results"] = [r for r in old if r.get("model") not in args.models] + results
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
