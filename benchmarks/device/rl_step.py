"""One-accelerator GRPO stage-I steps, timed by part (issue 13): generate / log-prob / update /
scoring wait, from the trainer's own `time/*` metrics (RUN/metrics.jsonl), with the compiles each
step ran (count and seconds: a step that still compiles is not the steady state).

The trainer is the real one (rl/grpo/trainer.py: continuous engine, sandbox scoring of each row as
it finishes, the update as the config sets it: padded in the 7B config, `grpo.packing` off) on
benchmarks/device/stage1_1p5b.yaml; the first step includes the compiles, so the split is
reported for the later steps. Checkpoints are not written (a 1.5B
fp32 train state is ~25 GB of disk writes that would only time the disk).

    bash benchmarks/device/prepare.sh       # on the CPU side: .devdata/ (questions, tokenizer)
    python benchmarks/device/rl_step.py --out $OUT/rl_step.json [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.device.check import write_result  # noqa: E402
from execverify_jax import config_loader as config_lib  # noqa: E402
from execverify_jax.rl.grpo.trainer import GRPOTrainer  # noqa: E402
from execverify_jax.rl.run_config import TrainConfig  # noqa: E402

PARTS = ("time/generate", "time/logprob", "time/score_wait", "time/update", "time/step")


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "benchmarks/device/stage1_1p5b.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "rl_step.json"))
    a = ap.parse_args()
    import jax

    cfg = config_lib.load(TrainConfig, a.config, a.set)
    run_dir = Path(a.run_dir or tempfile.mkdtemp(prefix="rl_step_"))
    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg, run_dir)
    trainer.save = lambda force=False: None  # see the module docstring
    # Compiles per step (jax.monitoring: tracing, lowering and backend compile durations), so a
    # reader can tell a step that still compiled from a steady one.
    comp = {"n": 0, "s": 0.0}
    per_step: list[dict] = []

    def on_event(name: str, secs: float, **_: object) -> None:
        if name.startswith("/jax/core/compile/"):
            comp["s"] += secs
            comp["n"] += name.endswith("backend_compile_duration")

    jax.monitoring.register_event_duration_secs_listener(on_event)
    inner_step = trainer.step

    def step(batch):
        before = dict(comp)
        out = inner_step(batch)
        per_step.append({"compiles": comp["n"] - before["n"], "compile_s": round(comp["s"] - before["s"], 3)})
        return out

    trainer.step = step
    t_init = time.perf_counter() - t0
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    keep = PARTS + ("throughput/gen_tokens_per_s", "throughput/train_tokens_per_s", "response_len/mean",
                    "rollout/useful_row_step_fraction", "rollout/decode_steps", "train/padding_ratio",
                    "train/num_tokens", "reward/mean", "time/data")
    steps = [{k: round(r[k], 4) for k in keep if k in r} | {"step": r.get("step")} | c
             for r, c in zip(rows, per_step)]
    # The first step compiles; a later step can still compile a shape it has not seen (a new
    # prompt / completion bucket, attended length or admission size), so the median of the later
    # steps is the summary.
    later = steps[1:] or steps
    median = {k: round(float(np.median([s.get(k, 0.0) for s in later])), 3) for k in PARTS}
    share = {k: round(median[k] / median["time/step"], 3) for k in PARTS[:-1]} if median["time/step"] else {}
    dev = jax.devices()[0]
    res = {"device": dev.device_kind, "platform": dev.platform, "jax": jax.__version__,
           "model": {"params": trainer.model_cfg.num_params(), "vocab": trainer.model_cfg.vocab_size,
                     "layers": trainer.model_cfg.num_layers, "hidden": trainer.model_cfg.hidden_size},
           "config": {"prompts_per_step": cfg.grpo.prompts_per_step, "group_size": cfg.grpo.group_size,
                      "max_new_tokens": cfg.rollout.max_new_tokens, "slots": cfg.rollout.slots,
                      "engine": cfg.rollout.engine, "packing": cfg.grpo.packing,
                      "sandbox_workers": cfg.sandbox_workers, "overrides": a.set},
           "init_s": round(t_init, 1), "rl_steps": summary.get("rl_steps"),
           "steps": steps, "median_after_first": median, "share_of_step": share}
    write_result(a.out, res)
    return res


if __name__ == "__main__":
    main()
