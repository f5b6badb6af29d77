"""KV-cache sampler: token ids in, token ids + per-token log-probs out.

    prompts (lists of ids) --host--> left-padded prompt_BP, P = smallest bucket >= longest prompt
    prefill (jit per (B, P, C)): one forward over prompt_BP (attention over the P prompt positions
            only), whose keys/values fill cache slots [0, P); draws token 0
    decode  (jit per (B, P, C), state donated): lax.while_loop, one token per step, until every
            row has hit a stop id or its own cap of tokens (C = the largest cap)

Prompts are LEFT-padded (see kv_cache.py) so all rows write the same cache slot each step.
The jitted functions take the parameters (nnx.State) as an argument, so the sampler reads the
current training weights with no host round trip and no recompilation when they change.
Log-probs are those of the temperature-scaled, untruncated distribution (see sampling.py).
Output row order is grouped: prompt 0's n samples, then prompt 1's, ... (GRPO groups).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from jax.sharding import Mesh

from execverify_jax.buckets import bucket_for
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.kv_cache import KVCache
from execverify_jax.model.strategies import Greedy, Strategy

DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


@struct.dataclass
class SamplingState:
    """Attributes:
    cache: the KV cache (donated between calls).
    tokens_BC: generated ids so far; pad_id after a row stops.
    logp_BC: log-prob of each generated id (0 after the row stops).
    step: int32 scalar, tokens generated so far (same for all rows).
    done_B: the row produced a stop id.
    lengths_B: generated tokens per row, the stop id included.
    cap_B: each row's own token cap (<= C); a row is finished once lengths_B reaches it.
    key: base PRNG key; step s uses fold_in(key, s).
    """

    cache: KVCache
    tokens_BC: jax.Array
    logp_BC: jax.Array
    step: jax.Array
    done_B: jax.Array
    lengths_B: jax.Array
    cap_B: jax.Array
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    """Host-side results; B = num_prompts * n in grouped order, C = max_new_tokens.

    tokens_BC: generated ids, padded with pad_id after `lengths_B`.
    lengths_B: number of generated ids, including the stop id when one was produced.
    logp_BC: per-token log-probs of the generated ids (0 in the padding).
    stopped_B: whether the row ended on a stop id (else it hit max_new_tokens).
    prompt_index_B: which input prompt each row continues.
    """

    tokens_BC: np.ndarray
    lengths_B: np.ndarray
    logp_BC: np.ndarray
    stopped_B: np.ndarray
    prompt_index_B: np.ndarray


def per_prompt_caps(max_new_tokens: int | Sequence[int], num_prompts: int) -> np.ndarray:
    """cap_N int32: one token cap for every prompt, or one per prompt (each >= 1)."""
    scalar = isinstance(max_new_tokens, (int, np.integer))
    if scalar:
        caps = [max_new_tokens] * num_prompts
    else:
        caps = list(max_new_tokens)
        if len(caps) != num_prompts:
            raise ValueError(f"max_new_tokens has {len(caps)} caps for {num_prompts} prompts")
    for i, c in enumerate(caps):
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {c!r}" + ("" if scalar else f" for prompt {i}"))
    return np.asarray(caps, np.int32)


def left_pad(prompts: Sequence[Sequence[int]], P: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(prompt_BP int32 left-padded, lengths_B int32)."""
    out = np.full((len(prompts), P), pad_id, np.int32)
    lengths = np.zeros((len(prompts),), np.int32)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; the sampler needs at least one token")
        out[i, P - len(p):] = np.asarray(p, np.int32)
        lengths[i] = len(p)
    return out, lengths


def _sample_step(strategy: Strategy, logits_BV, state: SamplingState, pad_id: int,
                 stop_ids: tuple[int, ...]) -> SamplingState:
    """Draws one token per row from logits_BV and records it (rows already finished: stopped
    or at their cap, get pad_id)."""
    tok_B, logp_B = strategy.select(logits_BV, jax.random.fold_in(state.key, state.step))
    live_B = ~_finished(state)
    tok_B = jnp.where(live_B, tok_B, pad_id)
    logp_B = jnp.where(live_B, logp_B, 0.0)
    tokens_BC = jax.lax.dynamic_update_slice(state.tokens_BC, tok_B[:, None], (0, state.step))
    logp_BC = jax.lax.dynamic_update_slice(state.logp_BC, logp_B[:, None], (0, state.step))
    is_stop_B = jnp.isin(tok_B, jnp.asarray(stop_ids, jnp.int32))  # an empty tuple: never stops
    return state.replace(tokens_BC=tokens_BC, logp_BC=logp_BC, step=state.step + 1,
                         lengths_B=state.lengths_B + live_B.astype(jnp.int32),
                         done_B=state.done_B | (live_B & is_stop_B))


def _finished(state: SamplingState) -> jax.Array:
    """finished_B: the row stopped or has its cap of tokens."""
    return state.done_B | (state.lengths_B >= state.cap_B)


def _prefill(graphdef, params, prompt_BP, lengths_B, cap_B, key, *, strategy: Strategy, max_new: int,
             pad_id: int, stop_ids: tuple[int, ...], cache_dtype: str, layout=None) -> SamplingState:
    model = nnx.merge(graphdef, params)
    B, P = prompt_BP.shape
    # Attention over the P prompt positions only; the cache (P + max_new slots) is filled after.
    logits_BV, cache = model.prefill(prompt_BP, lengths_B, P + max_new, jnp.dtype(cache_dtype))
    state = SamplingState(
        cache=cache, tokens_BC=jnp.full((B, max_new), pad_id, jnp.int32),
        logp_BC=jnp.zeros((B, max_new), jnp.float32), step=jnp.zeros((), jnp.int32),
        done_B=jnp.zeros((B,), jnp.bool_), lengths_B=jnp.zeros((B,), jnp.int32), cap_B=cap_B, key=key)
    return _sample_step(strategy, logits_BV, state, pad_id, stop_ids)


def _decode(graphdef, params, state: SamplingState, *, strategy: Strategy, max_new: int,
            pad_id: int, stop_ids: tuple[int, ...], layout=None) -> SamplingState:
    model = nnx.merge(graphdef, params)
    # Per-layer weights sliced once, outside the loop: slicing the stacked [L, ...] parameters
    # inside the body cost a copy of every layer's weights per step on XLA:CPU (measured).
    layers = model.unstacked_layers()

    def cond(s: SamplingState):
        return (s.step < max_new) & ~jnp.all(_finished(s))

    def body(s: SamplingState) -> SamplingState:
        last_B = jax.lax.dynamic_index_in_dim(s.tokens_BC, s.step - 1, axis=1, keepdims=False)
        logits_B1V, cache = model.decode_step(last_B[:, None], s.cache, s.cache.lengths_B + 1, layers=layers)
        return _sample_step(strategy, logits_B1V[:, 0], s.replace(cache=cache), pad_id, stop_ids)

    return jax.lax.while_loop(cond, body, state)


class Sampler:
    """Batched generation with a preallocated KV cache; compiled once per (B, P bucket, C)."""

    def __init__(self, cfg: ModelConfig, graphdef: nnx.GraphDef, *, mesh: Mesh | None = None,
                 rules: shd.Rules = shd.SAMPLE_RULES, buckets: Sequence[int] = DEFAULT_BUCKETS,
                 pad_id: int = 0, cache_dtype: str | None = None):
        """`graphdef` from `nnx.split(model)`; `cache_dtype` defaults to the compute dtype."""
        self.cfg = cfg
        self.graphdef = graphdef
        self.mesh = mesh
        self.rules = rules
        self.buckets = tuple(sorted(buckets))
        self.pad_id = int(pad_id)
        self.cache_dtype = cache_dtype or cfg.dtype
        # `layout`: a static argument the functions ignore (see shd.layout_key).
        self._prefill = shd.WithLayout(jax.jit(
            _prefill, static_argnums=(0,),
            static_argnames=("strategy", "max_new", "pad_id", "stop_ids", "cache_dtype", "layout")), mesh, rules)
        # The sampling state (KV cache included) is donated: decode updates it in place instead
        # of holding two copies of the cache.
        self._decode = shd.WithLayout(jax.jit(
            _decode, static_argnums=(0,), donate_argnums=(2,),
            static_argnames=("strategy", "max_new", "pad_id", "stop_ids", "layout")), mesh, rules)

    @classmethod
    def for_model(cls, model: nnx.Module, **kw) -> tuple["Sampler", nnx.State]:
        """(sampler, params) for an NNX Transformer."""
        graphdef, params = nnx.split(model)
        return cls(model.cfg, graphdef, **kw), params

    def generate_device(self, params: nnx.State, prompt_BP: np.ndarray, lengths_B: np.ndarray,
                        max_new_tokens: int | Sequence[int], strategy: Strategy = Greedy(),
                        stop_ids: Sequence[int] = (), seed: int | jax.Array = 0) -> SamplingState:
        """Runs prefill + decode on already left-padded prompts; returns the final device state.
        `max_new_tokens`: one cap, or one per row of prompt_BP."""
        B, P = prompt_BP.shape
        cap_B = per_prompt_caps(max_new_tokens, B)
        C = int(cap_B.max())
        if P + C > self.cfg.max_position_embeddings:
            raise ValueError(f"prompt bucket {P} + {C} new tokens exceeds "
                             f"max_position_embeddings {self.cfg.max_position_embeddings}")
        key = jax.random.key(seed) if isinstance(seed, int) else seed
        prompt_BP = jnp.asarray(prompt_BP, jnp.int32)
        lengths_B = jnp.asarray(lengths_B, jnp.int32)
        cap_B = jnp.asarray(cap_B, jnp.int32)
        if self.mesh is not None:
            # Shard the batch only when it divides; tiny batches stay replicated.
            prompt_BP = jax.device_put(prompt_BP, shd.named_sharding(
                (shd.BATCH, None), prompt_BP.shape, self.mesh, self.rules))
            lengths_B, cap_B = (jax.device_put(x, shd.named_sharding(
                (shd.BATCH,), x.shape, self.mesh, self.rules)) for x in (lengths_B, cap_B))
        statics = dict(strategy=strategy, max_new=C, pad_id=self.pad_id,
                       stop_ids=tuple(int(s) for s in stop_ids))
        # Activation constraints (shd.shard) read the rules while the functions trace.
        with shd.use_rules(self.mesh, self.rules):
            state = self._prefill(self.graphdef, params, prompt_BP, lengths_B, cap_B, key,
                                  cache_dtype=self.cache_dtype, **statics)
            return self._decode(self.graphdef, params, state, **statics)

    def generate(self, params: nnx.State, prompts: Sequence[Sequence[int]],
                 max_new_tokens: int | Sequence[int], strategy: Strategy = Greedy(),
                 stop_ids: Sequence[int] = (), n: int = 1, seed: int = 0) -> SampleOutput:
        """Samples `n` continuations of each prompt (lists of token ids); see SampleOutput.
        `max_new_tokens`: one cap, or one per prompt (a row is done once it has its own cap of
        tokens; C = the largest)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        if len(prompts) == 0:
            raise ValueError("no prompts given")
        index_B = np.repeat(np.arange(len(prompts)), n)
        cap_B = per_prompt_caps(max_new_tokens, len(prompts))[index_B]
        rows = [prompts[i] for i in index_B]
        P = bucket_for(max(len(p) for p in rows), self.buckets)
        prompt_BP, lengths_B = left_pad(rows, P, self.pad_id)
        real_BP = np.arange(P)[None, :] >= (P - lengths_B)[:, None]
        bad_BP = real_BP & ((prompt_BP < 0) | (prompt_BP >= self.cfg.vocab_size))
        if bad_BP.any():
            b, t = np.argwhere(bad_BP)[0]
            raise ValueError(f"prompt {index_B[b]} has token id {int(prompt_BP[b, t])!r} outside the "
                             f"vocab [0, {self.cfg.vocab_size})")
        state = self.generate_device(params, prompt_BP, lengths_B, cap_B.tolist(), strategy,
                                     stop_ids, seed)
        # On a multi-host mesh the rows are spread over processes: every process gets them all.
        tokens, lengths, logp, done = (shd.to_host(x) for x in
                                       (state.tokens_BC, state.lengths_B, state.logp_BC, state.done_B))
        return SampleOutput(tokens_BC=np.asarray(tokens), lengths_B=np.asarray(lengths),
                            logp_BC=np.asarray(logp), stopped_B=np.asarray(done),
                            prompt_index_B=index_B)

