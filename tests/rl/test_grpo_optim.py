"""The optax optimiser built from OptimConfig matches torch AdamW + clip_grad_norm_ (verl / HF Trainer)."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from execverify_jax.rl.objective.config import OptimConfig
from execverify_jax.rl.infra.optim import build_optimizer, lr_schedule


def test_schedules_by_hand():
    const = lr_schedule(OptimConfig(), 100)
    assert float(const(0)) == pytest.approx(1e-6) and float(const(99)) == pytest.approx(1e-6)
    cos = lr_schedule(OptimConfig.sft(), 100)  # 10 warm-up steps, then cosine to 0 over 90
    assert float(cos(0)) == 0.0
    assert float(cos(5)) == pytest.approx(0.5e-5)
    assert float(cos(10)) == pytest.approx(1e-5)
    assert float(cos(55)) == pytest.approx(0.5e-5, rel=1e-5)  # half-way through the decay
    assert float(cos(100)) == pytest.approx(0.0, abs=1e-12)
    lin = lr_schedule(OptimConfig(lr=1.0, schedule="linear", min_lr_ratio=0.5), 10)
    assert float(lin(5)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="total_steps=0"):
        lr_schedule(OptimConfig(), 0)


def test_matches_torch_adamw_with_clipping_and_cosine_warmup():
    torch = pytest.importorskip("torch")
    cfg = OptimConfig(lr=1e-2, schedule="cosine", warmup_steps=2, weight_decay=0.1, grad_clip=0.5)
    total = 6
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) * s for s in (0.1, 3.0, 1.0, 0.2, 5.0, 1.0)]

    opt = build_optimizer(cfg, total)
    params = {"w": jnp.asarray(w0)}
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)

    tw = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.AdamW([tw], lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps, weight_decay=cfg.weight_decay)

    def lam(step):  # transformers.get_cosine_schedule_with_warmup
        if step < 2:
            return step / 2
        progress = (step - 2) / (total - 2)
        return 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(topt, lam)
    for g in grads:
        tw.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([tw], cfg.grad_clip)
        topt.step()
        sched.step()
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(w0, tw.detach().numpy())
