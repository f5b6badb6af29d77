"""How wrong is naive micro-batch normalisation, and what does the GRPO loss cost?

Part 1 (numerics, deterministic): a paper-shaped mini-batch (512 sequences = 64 prompts x G 8,
response lengths log-normal around 600 tokens, capped at `--max-len` with ~10% truncated). We take
dL/dlogp, the gradient of the GRPO loss w.r.t. its per-token input, at ratio 1.
- exact: the full mini-batch, or micro-batches with the global `LossNorm`; these agree to float
  rounding, and we check that.
- naive: each micro-batch normalised by its own counts, then averaged over micro-batches (the
  verl 0.3.x / older-TRL pattern).
We report the relative L2 error and the cosine of naive vs exact for each aggregation mode and
micro-batch size. With overlong filtering on, some sequences are fully masked, which also breaks
naive seq-mean.

Part 2 (timing, CPU, noisy on a shared machine): jitted forward+backward of `policy_loss` alone, in
ms per 1M tokens: full batch vs `accumulate_grads` (lax.scan) over micro-batches. It shows the loss
is negligible next to a model's forward/backward.

Writes benchmarks/results/grpo_accumulation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from execverify_jax.rl.infra.accumulate import accumulate_grads, split_microbatches  # noqa: E402
from execverify_jax.rl.objective.advantages import group_advantages, overlong_filter  # noqa: E402
from execverify_jax.rl.objective.aggregation import loss_norm  # noqa: E402
from execverify_jax.rl.objective.config import AGG_MODES, GRPOConfig  # noqa: E402
from execverify_jax.rl.objective.loss import policy_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def make_batch(seed: int, B: int, C: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lens = np.minimum(rng.lognormal(np.log(600), 0.9, B).astype(int) + 1, C)
    mask = (np.arange(C)[None] < lens[:, None]).astype(np.float32)
    reward = rng.choice([0.0, 1.0, 1.5, 2.0], size=B).astype(np.float32)
    reward[lens >= C] = 0.0  # truncated answers score 0, as in the paper
    adv = np.asarray(group_advantages(jnp.asarray(reward), 8, GRPOConfig()))
    logp = rng.normal(-1.0, 0.5, (B, C)).astype(np.float32)
    return {"logp": logp, "adv": adv, "mask": mask, "truncated": lens >= C}


def grad_logp(cfg: GRPOConfig, logp, adv, mask, norm=None):
    f = lambda lp: policy_loss(lp, jax.lax.stop_gradient(lp), adv, mask, cfg, norm=norm)[0]
    return jax.grad(f)(logp)


def numerics(batch: dict, C: int, micro_sizes: list[int], overlong: bool) -> list[dict]:
    mask = batch["mask"]
    if overlong:
        mask = np.asarray(overlong_filter(jnp.asarray(mask), jnp.asarray(batch["truncated"])))
    B = mask.shape[0]
    rows = []
    for mode in AGG_MODES:
        cfg = GRPOConfig(loss_agg_mode=mode, max_response_len=C)
        g = jax.jit(lambda lp, a, m, n: grad_logp(cfg, lp, a, m, n))
        full = np.asarray(g(batch["logp"], batch["adv"], mask, loss_norm(jnp.asarray(mask))))
        for mbs in micro_sizes:
            norm = loss_norm(jnp.asarray(mask))
            exact, naive = [], []
            for lo in range(0, B, mbs):
                sl = slice(lo, lo + mbs)
                args = (batch["logp"][sl], batch["adv"][sl], mask[sl])
                exact.append(np.asarray(g(*args, norm)))
                naive.append(np.asarray(g(*args, loss_norm(jnp.asarray(mask[sl])))) / (B // mbs))
            exact, naive = np.concatenate(exact), np.concatenate(naive)
            err = float(np.linalg.norm(naive - full) / np.linalg.norm(full))
            cos = float((naive * full).sum() / (np.linalg.norm(naive) * np.linalg.norm(full)))
            rows.append({"mode": mode, "micro_batch": mbs, "overlong_filter": overlong,
                         "exact_max_abs_diff": float(np.abs(exact - full).max()),
                         "naive_rel_err": err, "naive_cosine": cos,
                         "naive_norm_ratio": float(np.linalg.norm(naive) / np.linalg.norm(full))})
    return rows


def timing(batch: dict, micro: int, repeats: int) -> dict:
    cfg = GRPOConfig()
    data = {k: jnp.asarray(batch[k]) for k in ("logp", "adv", "mask")}
    n_tok = float(data["mask"].sum())
    norm = loss_norm(data["mask"])

    # params = a per-token offset so micro-batches can slice it like the data
    def loss_fn(theta, mb, norm):
        lp = mb["logp"] + mb["theta"] * theta
        return policy_loss(lp, mb["logp"], mb["adv"], mb["mask"], cfg, norm=norm)

    full_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    acc_fn = jax.jit(lambda t, mbs, n: accumulate_grads(loss_fn, t, mbs, n))
    theta = jnp.ones(())
    mb_full = {**data, "theta": jnp.ones_like(data["logp"])}
    mbs = split_microbatches(mb_full, micro)
    out = {}
    for name, fn, args in (("full_batch", full_fn, (theta, mb_full, norm)),
                           (f"scan_{micro}", acc_fn, (theta, mbs, norm))):
        jax.block_until_ready(fn(*args))
        t0 = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(fn(*args))
        dt = (time.perf_counter() - t0) / repeats
        out[name] = {"ms_per_call": 1e3 * dt, "ms_per_1M_tokens": 1e3 * dt / n_tok * 1e6}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--micro", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "grpo_accumulation.json")
    args = ap.parse_args()
    batch = make_batch(0, args.batch, args.max_len)
    rows = numerics(batch, args.max_len, args.micro, False) + numerics(batch, args.max_len, args.micro, True)
    print(f"{'mode':26s} {'micro':>5s} {'ovl':>4s} {'exact maxdiff':>13s} {'naive relerr':>12s} "
          f"{'cos':>7s} {'|naive|/|exact|':>15s}")
    for r in rows:
        print(f"{r['mode']:26s} {r['micro_batch']:5d} {str(r['overlong_filter'])[0]:>4s} "
              f"{r['exact_max_abs_diff']:13.2e} {r['naive_rel_err']:12.4f} {r['naive_cosine']:7.4f} "
              f"{r['naive_norm_ratio']:15.4f}")
    tim = timing(batch, 8, args.repeats)
    for k, v in tim.items():
        print(f"policy_loss fwd+bwd {k:12s}: {v['ms_per_call']:8.1f} ms/call, {v['ms_per_1M_tokens']:8.1f} ms per 1M tokens (CPU)")
    stats = {"tokens": float(batch["mask"].sum()), "sequences": args.batch, "max_len": args.max_len,
             "truncated": int(batch["truncated"].sum()),
             "mean_len": float(batch["mask"].sum(1).mean())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"batch": stats, "numerics": rows, "timing_cpu": tim,
                                    "device": str(jax.devices()[0]),
                                    "note": "timings on a shared 2-core CPU box; noisy"}, indent=2))
    print(f"batch: {stats}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
