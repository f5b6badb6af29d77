"""Decode throughput of our KV-cache sampler vs transformers `generate`, same weights, CPU.

For each model shape: random weights are created with our initialiser, exported to a temporary
HF directory (fp32), loaded by both our importer and `AutoModelForCausalLM`, and both generate
`--new-tokens` greedy tokens for `--batch` random prompts of `--prompt-len` tokens (no stop
token; HF gets min_new_tokens so it cannot stop early). Throughput = batch * new tokens / wall
time of the whole generate call (prefill included for both), median of `--repeats` runs. Our
first call's extra time is reported as compile time and excluded from tokens/s. transformers runs
in a separate process (no XLA thread pool next to torch's OpenMP threads). Also reports how many
greedy tokens agree.

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
    p.add_argument("--hf-worker", default=None, help=argparse.SUPPRESS)  # internal: time HF only
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "sampler.json"))
    return p.parse_args()


def bench_model(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    import jax
    import numpy as np

    from execverify_jax.model.config import ModelConfig
    from execverify_jax.model.hf_export import save_hf
    from execverify_jax.model.hf_import import load_hf_state
    from execverify_jax.model.params import create_model
    from execverify_jax.model.sampler import Sampler
    from execverify_jax.model.sampling import Greedy
    from flax import nnx

    spec = MODELS[name]
    cfg = ModelConfig.preset(spec) if isinstance(spec, str) else ModelConfig(**spec)
    B, P, C = args.batch, args.prompt_len, args.new_tokens
    hf_dir = workdir / name
    t0 = time.perf_counter()
    save_hf(cfg, nnx.split(create_model(cfg, seed=0))[1], hf_dir, dtype="float32")
    print(f"[{name}] {cfg.num_params() / 1e6:.1f}M params exported in {time.perf_counter() - t0:.1f}s")
    prompts = np.random.RandomState(0).randint(0, cfg.vocab_size, (B, P)).astype(np.int32)

    # ---- ours ----
    cfg2, graphdef, params = load_hf_state(hf_dir)
    sampler = Sampler(cfg2, graphdef, buckets=(P,))
    rows = [list(r) for r in prompts]

    def ours() -> np.ndarray:
        out = sampler.generate(params, rows, C, Greedy())
        return out.tokens_BC

    t0 = time.perf_counter()
    first_tokens = ours()
    first_s = time.perf_counter() - t0

    ours_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours_tokens = ours()
        ours_times.append(time.perf_counter() - t0)
    ours_s = statistics.median(ours_times)
    assert (first_tokens == ours_tokens).all()
    print(f"[{name}] ours: {B * C / ours_s:,.0f} tok/s ({ours_s:.2f}s/run), compile ~{first_s - ours_s:.1f}s")
    del params, sampler

    # ---- transformers, in a fresh process: XLA's thread pool living in the same process
    # slowed torch's OpenMP threads down by 20x+ in our first measurements. ----
    np.save(workdir / f"{name}_prompts.npy", prompts)
    cmd = [sys.executable, __file__, "--hf-worker", str(hf_dir), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--new-tokens", str(C)]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    hf_times = res["times"]
    hf_tokens = np.load(workdir / f"{name}_hf_tokens.npy")
    hf_s = statistics.median(hf_times)
    print(f"[{name}] transformers: {B * C / hf_s:,.0f} tok/s ({hf_s:.2f}s/run)")
    # Greedy paths agree until a near-tie flips an argmax (fp32 sums in another order).
    same_prefix = [int(np.argmax(np.r_[a != b, True])) for a, b in zip(ours_tokens, hf_tokens)]
    return {
        "model": name, "params_m": round(cfg.num_params() / 1e6, 1), "batch": B, "prompt_len": P,
        "new_tokens": C, "ours_tok_s": round(B * C / ours_s, 1), "ours_run_s": round(ours_s, 3),
        "ours_compile_s": round(first_s - ours_s, 2), "hf_tok_s": round(B * C / hf_s, 1),
        "hf_run_s": round(hf_s, 3), "speedup": round(hf_s / ours_s, 2),
        "ours_runs_s": [round(t, 3) for t in ours_times], "hf_runs_s": [round(t, 3) for t in hf_times],
        "greedy_tokens_agree_frac": round(float((ours_tokens == hf_tokens).mean()), 4),
        "greedy_identical_prefix_mean": round(float(np.mean(same_prefix)), 1),
        "torch_threads": args.threads, "jax_devices": [str(d) for d in jax.devices()][:1],
    }


def hf_worker(args: argparse.Namespace) -> int:
    """Times transformers `generate` on `--hf-worker DIR`; prints {"times": [...]} as JSON."""
    import numpy as np
    import torch
    import transformers

    hf_dir = Path(args.hf_worker)
    prompts = np.load(hf_dir.parent / f"{hf_dir.name}_prompts.npy")
    torch.set_num_threads(args.threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
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
    np.save(hf_dir.parent / f"{hf_dir.name}_hf_tokens.npy", tokens)
    print(json.dumps({"times": times}))
    return 0


def main() -> int:
    args = parse_args()
    if args.hf_worker:
        return hf_worker(args)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            results.append(bench_model(name, args, Path(tmp)))
    print()
    print(f"{'model':<22}{'params':>9}{'ours tok/s':>12}{'HF tok/s':>10}{'speedup':>9}{'compile s':>11}{'agree':>7}")
    for r in results:
        print(f"{r['model']:<22}{r['params_m']:>8}M{r['ours_tok_s']:>12,.0f}{r['hf_tok_s']:>10,.0f}"
              f"{r['speedup']:>8.2f}x{r['ours_compile_s']:>11.1f}{r['greedy_tokens_agree_frac']:>7.2f}")
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
            payload["results"] = [r for r in old if r["model"] not in args.models] + results
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
