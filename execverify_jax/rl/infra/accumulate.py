"""Exact gradient accumulation over micro-batches.

Contract: `loss_fn(params, microbatch, *args) -> (loss, metrics)` returns the micro-batch's
*contribution* to the mini-batch loss, i.e. it already divides by the global normaliser of the
whole mini-batch (`aggregation.loss_norm` computed before splitting, passed through `args`). Then

    grad(full-batch loss) = sum over micro-batches of grad(contribution)

holds exactly for every aggregation mode, whatever the micro-batch sizes or lengths. The
accumulators here only *sum*; they never divide by the number of micro-batches (dividing is the
verl/TRL bug this design avoids). Metrics are combined by key suffix: `*_max` by max, `*_min` by
min, all others by sum (the GRPO/SFT losses return metrics normalised so that sums are exact).

Two drivers:
  accumulate_grads       jax.lax.scan over micro-batches stacked on a leading axis (same shapes;
                         pad with `split_microbatches`). One compiled body, O(1) code size, usable
                         inside an outer `jax.jit`. The default.
  accumulate_grads_loop  Python loop over a list of micro-batches of any shapes, each step jitted
                         (one compile per distinct shape). For length-bucketed micro-batches.
Gradients are summed in `accum_dtype` (float32 by default) so bf16 parameters do not lose small
contributions.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _metric_identity(key: str, like: jax.ShapeDtypeStruct) -> jax.Array:
    if key.endswith("_max"):
        return jnp.full(like.shape, -jnp.inf, like.dtype)
    if key.endswith("_min"):
        return jnp.full(like.shape, jnp.inf, like.dtype)
    return jnp.zeros(like.shape, like.dtype)


def combine_metrics(acc: dict[str, jax.Array], new: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Combines two micro-batches' metrics: max for `*_max`, min for `*_min`, else sum."""
    out = {}
    for key, value in new.items():
        if key.endswith("_max"):
            out[key] = jnp.maximum(acc[key], value)
        elif key.endswith("_min"):
            out[key] = jnp.minimum(acc[key], value)
        else:
            out[key] = acc[key] + value
    return out


def _add_grads(acc: Any, grads: Any) -> Any:
    return jax.tree.map(lambda a, g: a + g.astype(a.dtype), acc, grads)


def _zero_grads(params: Any, accum_dtype: Any) -> Any:
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), accum_dtype or jnp.result_type(p)), params)


def accumulate_grads(loss_fn: LossFn, params: Any, microbatches: Any, *args: Any,
                     accum_dtype: Any = jnp.float32,
                     grad_shardings: Any = None) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
    """(loss, grads, metrics) summed over micro-batches stacked on axis 0 of every leaf.

    `microbatches` is a pytree whose leaves have shape (M, micro_batch, ...); `args` are passed
    unchanged to every call (e.g. the mini-batch `LossNorm`). Differentiates w.r.t. `params` only.
    `grad_shardings` (a prefix tree of shardings, normally the params'): the accumulators are
    constrained to it, so they are laid out exactly like the parameters (XLA would otherwise be
    free to replicate the zeros they start from).
    """
    leaves = jax.tree.leaves(microbatches)
    if not leaves:
        raise ValueError("microbatches: empty pytree")
    num_micro = leaves[0].shape[0]
    if any(leaf.shape[:1] != (num_micro,) for leaf in leaves):
        raise ValueError(f"microbatches: leaves disagree on the micro-batch axis: {[l.shape for l in leaves]}")
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    first = jax.tree.map(lambda x: x[0], microbatches)
    (_, metrics_shape), _ = jax.eval_shape(grad_fn, params, first, *args)
    init_metrics = {k: _metric_identity(k, v) for k, v in metrics_shape.items()}

    def body(carry: tuple, mb: Any) -> tuple[tuple, None]:
        loss_acc, grads_acc, metrics_acc = carry
        (loss, metrics), grads = grad_fn(params, mb, *args)
        return (loss_acc + loss.astype(jnp.float32), constrain(_add_grads(grads_acc, grads)),
                combine_metrics(metrics_acc, metrics)), None

    def constrain(grads: Any) -> Any:
        if grad_shardings is None:
            return grads
        return jax.lax.with_sharding_constraint(grads, grad_shardings)

    init = (jnp.zeros((), jnp.float32), constrain(_zero_grads(params, accum_dtype)), init_metrics)
    (loss, grads, metrics), _ = jax.lax.scan(body, init, microbatches)
    return loss, grads, metrics


def accumulate_grads_loop(loss_fn: LossFn, params: Any, microbatches: list[Any], *args: Any,
                          accum_dtype: Any = jnp.float32) -> tuple[jax.Array, Any, dict[str, jax.Array]]:
    """Like `accumulate_grads` for a list of micro-batches that may differ in shape."""
    if not microbatches:
        raise ValueError("microbatches: empty list")
    step = _jitted_value_and_grad(loss_fn)
    loss_acc = jnp.zeros((), jnp.float32)
    grads_acc = _zero_grads(params, accum_dtype)
    metrics_acc: dict[str, jax.Array] | None = None
    for mb in microbatches:
        (loss, metrics), grads = step(params, mb, *args)
        loss_acc = loss_acc + loss.astype(jnp.float32)
        grads_acc = _add_grads(grads_acc, grads)
        if metrics_acc is None:
            metrics_acc = {k: _metric_identity(k, v) for k, v in metrics.items()}
        metrics_acc = combine_metrics(metrics_acc, metrics)
    return loss_acc, grads_acc, metrics_acc or {}


# Weakly keyed by the loss function, so repeated calls with the same function reuse their compiled
# steps (pass a stable function, not a fresh closure per step) and dropped functions are freed.
_JIT_CACHE: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def _jitted_value_and_grad(loss_fn: LossFn) -> Callable:
    step = _JIT_CACHE.get(loss_fn)
    if step is None:
        step = _JIT_CACHE[loss_fn] = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    return step


def split_microbatches(batch: Any, micro_batch_size: int, strided: bool = False) -> Any:
    """Reshapes every leaf (B, ...) to (M, micro_batch_size, ...), zero-padding B up to M * size.

    Padded rows are all zeros, so their mask is 0 and they contribute nothing to losses built on
    `aggregation` (which zeroes masked positions with `where`).

    strided=False: micro-batch m is rows [m * size, (m + 1) * size). strided=True: micro-batch m is
    rows m, m + M, m + 2M, ...: when axis 0 is sharded over n devices (n dividing the size), every
    micro-batch then takes size / n rows from each device's own block, so splitting moves no data
    and every micro-batch is spread over all n devices. Sums over micro-batches (gradients,
    metrics) do not depend on which rows go together; `merge_microbatches` undoes either order.
    """
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size={micro_batch_size!r}: must be >= 1")
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("batch: empty pytree")
    size = leaves[0].shape[0]
    if any(leaf.shape[:1] != (size,) for leaf in leaves):
        raise ValueError(f"batch: leaves disagree on the batch axis: {[l.shape for l in leaves]}")
    num_micro = max(1, -(-size // micro_batch_size))
    pad = num_micro * micro_batch_size - size

    def split(x: Any) -> Any:
        xp = jnp if isinstance(x, jax.Array) else np
        if pad:
            x = xp.concatenate([x, xp.zeros((pad, *x.shape[1:]), x.dtype)], axis=0)
        if strided:
            return x.reshape(micro_batch_size, num_micro, *x.shape[1:]).swapaxes(0, 1)
        return x.reshape(num_micro, micro_batch_size, *x.shape[1:])

    return jax.tree.map(split, batch)


def merge_microbatches(x_M: Any, size: int, strided: bool = False) -> Any:
    """Inverse of `split_microbatches` for one array (M, micro_batch_size, ...) -> (size, ...)."""
    if strided:
        x_M = x_M.swapaxes(0, 1)
    return x_M.reshape(-1, *x_M.shape[2:])[:size]
