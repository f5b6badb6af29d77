"""Trains the demo's warm-start policy (docs/TRAINING.md §6b): the demo's own model and SFT recipe
(configs/demo_cpu.yaml's `train` section), run for as many epochs as a time budget allows on a
large synthesized corpus, then saved as a Hugging Face directory the demo starts from
(`--set train.model.init=DIR`).

    python benchmarks/device/warmstart_prepare.py --synth SYNTH --out .warm        # CPU side
    python benchmarks/device/warmstart.py --warm .warm --budget-s 200 --out OUT/ws \
        [--set train.sft.batch_size=64 ...]                                        # GPU (or CPU)

A short calibration run (one pass over `--calib-batches` batches, compiles included) measures the
wall time per step; the real run then gets the most whole epochs that fit `--budget-s` at that rate, so
the cosine schedule ends where the run ends. OUT gets config.json + model.safetensors (float32),
the tokenizer files, programs.txt (the programs it saw) and warmstart.json (what ran).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from execverify_jax.rl.infra.metrics import read_metrics  # noqa: E402


def wall_per_step_s(run_dir: Path, wall_s: float, skip: int) -> float:
    """Wall seconds per SFT step after the first `skip` steps (the compiles): the run's wall time
    less those steps' `time/step`, over the other steps. `time/step` alone leaves out the host's
    batching and metrics writing: on an H200 it read 7.7 ms where a step took 20 ms of wall
    time, and a budget set from it ran 2.6x over (stop 23)."""
    ts = [r["time/step"] for r in read_metrics(run_dir) if "time/step" in r]
    if len(ts) <= skip:
        raise ValueError(f"calibration ran {len(ts)} steps, fewer than the {skip} compiling ones: raise --calib-batches")
    return (wall_s - sum(ts[:skip])) / (len(ts) - skip)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", required=True, help="warmstart_prepare.py's output directory")
    ap.add_argument("--demo-config", default=str(REPO / "configs/demo_cpu.yaml"))
    ap.add_argument("--set", action="append", default=[], help="DemoConfig override, e.g. train.sft.batch_size=64")
    ap.add_argument("--budget-s", type=float, default=200.0, help="wall time for the real run's steps")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--calib-batches", type=int, default=40)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    import jax

    from execverify_jax import compile_cache
    from execverify_jax import config_loader as config_lib
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model.hf_export import save_hf
    from execverify_jax.rl.apps.demo import WARM_PROGRAMS, DemoConfig
    from execverify_jax.rl.sft.trainer import read_conversations, run_sft

    compile_cache.enable(None)  # the calibration's compiles serve the real run
    t_all = time.perf_counter()
    warm, out = Path(a.warm), Path(a.out)
    demo = config_lib.load(DemoConfig, a.demo_config, a.set)
    tcfg = demo.train.replace(seed=demo.seed, progress=False, tensorboard=False)
    work = Path(tempfile.mkdtemp(prefix="warmstart_"))
    convs, bad = read_conversations(warm / "convs.jsonl.gz")
    tok = Tokenizer(warm / "tokenizer")
    s = tcfg.sft
    steps_per_epoch = -(-len(convs) // s.batch_size)

    calib_n = min(len(convs), a.calib_batches * s.batch_size)
    calib = tcfg.replace(sft=dataclasses.replace(s, epochs=1, max_samples=calib_n))
    t0 = time.perf_counter()
    calib_res = run_sft(calib, work / "calib", convs, tok, log=lambda *_: None)
    calib_wall = time.perf_counter() - t0
    step_s = wall_per_step_s(work / "calib", calib_res["wall_s"], skip=len(s.buckets))
    epochs = int(max(1, min(a.max_epochs, a.budget_s / (step_s * steps_per_epoch))))
    print(f"[warmstart] {len(convs)} examples, {steps_per_epoch} steps/epoch, {step_s * 1e3:.1f} ms/step "
          f"(calibration {calib_wall:.0f} s) -> {epochs} epochs", flush=True)

    t0 = time.perf_counter()
    res = run_sft(tcfg.replace(sft=dataclasses.replace(s, epochs=epochs, max_samples=None)), work / "sft", convs, tok)
    train_wall = time.perf_counter() - t0
    if out.exists():
        shutil.rmtree(out)
    save_hf(res["model_cfg"], res["params"], out, dtype="float32", tokenizer_dir=warm / "tokenizer")
    shutil.copy(warm / WARM_PROGRAMS, out / WARM_PROGRAMS)
    rows = read_metrics(work / "sft")
    curve = {str(r["step"]): round(r["sft/loss"], 4) for r in rows[:: max(1, len(rows) // 20)] if "step" in r}
    info = {"examples": res["examples"], "dropped_examples": res["dropped_examples"] + bad, "epochs": epochs,
            "steps": res["steps"], "batch_size": s.batch_size, "optim": config_lib.to_dict(s.optim),
            "step_ms": round(step_s * 1e3, 2), "train_wall_s": round(train_wall, 1),
            "total_wall_s": round(time.perf_counter() - t_all, 1),
            "final": {k: round(v, 4) for k, v in res["last"].items()}, "loss_curve": curve,
            "model": {**res["model_cfg"].to_json_dict(), "num_params": res["model_cfg"].num_params()},
            "device": str(jax.devices()[0]), "jax": jax.__version__,
            "prepare": json.loads((warm / "prepare.json").read_text()) if (warm / "prepare.json").is_file() else None}
    (out / "warmstart.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in info.items() if k not in ("loss_curve", "model", "prepare")}), flush=True)
    return info


if __name__ == "__main__":
    main()
