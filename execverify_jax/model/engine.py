"""Rollout engine: continuous batching over a fixed number of decode slots.

    rows (prompt i, sample j) --host queue--> free slots
    admit (jit per (J, P)): prefill J rows over their prompt (Transformer.prefill), J = the next
          power of two >= the rows admitted (at most prefill_batch), draw token 0,
          shift each row's left-padded keys/values to slot positions [0, plen) and write them into
          the rows of the free slots
          (P: the bucket, or with `prefill_granule` the rows' longest rounded up to it)
    run   (jit per (A, k)): up to k decode steps for all slots, ending early once `exit_free`
          slots are done (while rows wait: `admit_min`; queue empty: a drain halving), on the
          per-layer weights sliced once per generate; each slot writes its token at its
          own position `len_S` and attends over slots [0, len_S] of the first A cache positions
          only (A = the longest live slot + k, rounded up to a `block` multiple), so a step's
          cost grows with the longest live slot, not with the cache size
    host: after each run call, finished slots (stop id or the row's own cap) are harvested, handed to
          `on_finish` (scoring overlaps generation) and refilled from the queue; once the queue is
          empty the slot batch is halved whenever at most half of it is live (drain phase).

Sampling keys are per row: fold_in(fold_in(fold_in(seed, prompt), sample), step), so a row's
tokens do not depend on which slot it lands in, nor on the slot count (up to float reassociation
when the batch shape changes). Admission decisions use only `to_host` values (every process
of a multi-host run sees the same), and there is one host round trip per `k` tokens, not per token.
Each step writes every live slot's new key/value with one scatter at (slot, len_S) (finished
slots get an out-of-range index and are dropped), so under donation the while_loop updates the
cache in place instead of rewriting all of it every step.
Cache memory per slot: 2 * L * K * H * (max prompt bucket + max_new) * bytes(cache dtype).

Sharding (with a mesh): the slot axis of every state array is the logical `batch` axis (data x
fsdp under the rules) and the cache's kv-head axis `act_kv_heads` (tensor), so each device holds
slots / (data x fsdp) slots, like the static sampler's cache rows. `slots` is rounded up to a
multiple of the batch shards, the drain phase never shrinks below them, and every jitted
function constrains the state it returns, so the layout never silently becomes replicated.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from jax.sharding import Mesh

from execverify_jax.buckets import bucket_for
from execverify_jax.model import attention as attn
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.sampler import DEFAULT_BUCKETS, SampleOutput, left_pad, per_prompt_caps
from execverify_jax.model.strategies import Greedy, Strategy
from execverify_jax.model.transformer import apply_rope, rope_inv_freq


@struct.dataclass
class EngineState:
    """Slot state (S slots, C = max_new, M cache positions per slot).

    k_SKHM / v_SKMH: per-layer caches, slot s's tokens at positions [0, len_S[s]).
    len_S: tokens in the slot's cache; last_S: the last drawn token (not yet in the cache).
    n_S: tokens generated so far; cap_S: the row's own token cap (<= C); done_S: finished (or
    empty); row_S2: (prompt, sample) of the slot.
    tokens_SC / logp_SC: the slot's generated ids and their log-probs.
    steps: decode steps run (all slots compute on each one).
    """

    k_SKHM: tuple[jax.Array, ...]
    v_SKMH: tuple[jax.Array, ...]
    len_S: jax.Array
    last_S: jax.Array
    n_S: jax.Array
    cap_S: jax.Array
    done_S: jax.Array
    row_S2: jax.Array
    tokens_SC: jax.Array
    logp_SC: jax.Array
    steps: jax.Array


def _state_axes(state: EngineState) -> EngineState:
    """Logical axes of each state array (slots = the batch axis; cache kv heads on tensor)."""
    kv_k = (shd.BATCH, shd.ACT_KV_HEADS, None, shd.LENGTH)
    kv_v = (shd.BATCH, shd.ACT_KV_HEADS, shd.LENGTH, None)
    return EngineState(
        k_SKHM=tuple(kv_k for _ in state.k_SKHM), v_SKMH=tuple(kv_v for _ in state.v_SKMH),
        len_S=(shd.BATCH,), last_S=(shd.BATCH,), n_S=(shd.BATCH,), cap_S=(shd.BATCH,),
        done_S=(shd.BATCH,), row_S2=(shd.BATCH, None), tokens_SC=(shd.BATCH, None),
        logp_SC=(shd.BATCH, None), steps=())


def map_with_axes(fn: Callable, state: EngineState) -> EngineState:
    """`fn(logical_axes, array)` over every state array (e.g. to constrain it, or to build its
    sharded `jax.ShapeDtypeStruct` for compile-only analysis)."""
    is_axes = lambda x: isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)  # noqa: E731
    return jax.tree.map(fn, _state_axes(state), state, is_leaf=is_axes)


def _constrain(state: EngineState) -> EngineState:
    """The state with its slot layout constrained (identity without active sharding rules)."""
    return map_with_axes(lambda names, a: shd.shard(a, names), state)


def _zeros_state(S: int, M: int, C: int, L: int, K: int, H: int, dtype: str, *, layout=None) -> EngineState:
    """An empty slot state, created on device in its sharded layout (no host-side full copy)."""
    dt = jnp.dtype(dtype)
    return _constrain(EngineState(
        k_SKHM=tuple(jnp.zeros((S, K, H, M), dt) for _ in range(L)),
        v_SKMH=tuple(jnp.zeros((S, K, M, H), dt) for _ in range(L)),
        len_S=jnp.zeros((S,), jnp.int32), last_S=jnp.zeros((S,), jnp.int32),
        n_S=jnp.zeros((S,), jnp.int32), cap_S=jnp.zeros((S,), jnp.int32), done_S=jnp.ones((S,), jnp.bool_),
        row_S2=jnp.zeros((S, 2), jnp.int32), tokens_SC=jnp.zeros((S, C), jnp.int32),
        logp_SC=jnp.zeros((S, C), jnp.float32), steps=jnp.zeros((), jnp.int32)))


def _select_rows(strategy: Strategy, logits_SV, key, row_S2, step_S):
    """Draws each row's token with its own key (prompt, sample, step): slot-independent."""
    def one(logits_V, row_2, step):
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, row_2[0]), row_2[1]), step)
        tok_1, logp_1 = strategy.select(logits_V[None], k)
        return tok_1[0], logp_1[0]
    return jax.vmap(one)(logits_SV, row_S2, step_S)


def _finish(tok_S, state_n_S, stop_ids, cap_S):
    """Whether a row is done after drawing tok_S as its token number state_n_S + 1."""
    is_stop_S = jnp.isin(tok_S, jnp.asarray(stop_ids, jnp.int32))
    return is_stop_S | (state_n_S + 1 >= cap_S)


def _admit(graphdef, params, state: EngineState, prompt_JP, plen_J, slot_J, row_J2, cap_J, key, *,
           strategy: Strategy, stop_ids: tuple[int, ...], layout=None) -> EngineState:
    model = nnx.merge(graphdef, params)
    J, P = prompt_JP.shape
    dtype = state.k_SKHM[0].dtype
    logits_JV, cache = model.prefill(prompt_JP, plen_J, P, dtype)
    tok_J, logp_J = _select_rows(strategy, logits_JV, key, row_J2, jnp.zeros((J,), jnp.int32))
    # Left-padded prompt slots [P - plen, P) -> slot positions [0, plen).
    src_JP = jnp.minimum(jnp.arange(P)[None, :] + (P - plen_J)[:, None], P - 1)
    ks, vs = [], []
    for k_SKHM, v_SKMH, k_JKHP, v_JKPH in zip(state.k_SKHM, state.v_SKMH, cache.k_BKHS, cache.v_BKSH):
        k_JKHP = jnp.take_along_axis(k_JKHP, src_JP[:, None, None, :], axis=3)
        v_JKPH = jnp.take_along_axis(v_JKPH, src_JP[:, None, :, None], axis=2)
        # Padding rows of the admission batch carry slot index S (out of range): dropped.
        ks.append(k_SKHM.at[slot_J, :, :, :P].set(k_JKHP, mode="drop"))
        vs.append(v_SKMH.at[slot_J, :, :P, :].set(v_JKPH, mode="drop"))
    C = state.tokens_SC.shape[1]
    zeros_J = jnp.zeros((J,), jnp.int32)
    done_J = _finish(tok_J, zeros_J, stop_ids, cap_J)
    tokens_JC = jnp.zeros((J, C), jnp.int32).at[:, 0].set(tok_J)
    logp_JC = jnp.zeros((J, C), jnp.float32).at[:, 0].set(logp_J)
    put = lambda a, v: a.at[slot_J].set(v, mode="drop")  # noqa: E731
    return _constrain(state.replace(k_SKHM=tuple(ks), v_SKMH=tuple(vs), len_S=put(state.len_S, plen_J),
                         last_S=put(state.last_S, tok_J), n_S=put(state.n_S, zeros_J + 1),
                         cap_S=put(state.cap_S, cap_J),
                         done_S=put(state.done_S, done_J), row_S2=put(state.row_S2, row_J2),
                         tokens_SC=put(state.tokens_SC, tokens_JC), logp_SC=put(state.logp_SC, logp_JC)))


def _layer(block, x_S1D, pos_S1, k_SKHM, v_SKMH, len_S, live_S, A: int, cfg: ModelConfig):
    """One block for one new token per slot; writes its key/value at position len_S (live slots
    only) and attends over positions [0, len_S] of the first A cache positions.

    The write is a scatter of S x K x H values at (slot, len_S), not a `where` over the whole
    cache: the cache is a while_loop carry, so XLA updates it in place (a `where` reads and
    writes all S x K x H x M entries per layer per step, which bounds decode by cache size)."""
    S = x_S1D.shape[0]
    K, R, H = cfg.num_kv_heads, cfg.num_groups, cfg.head_dim
    a = block.attn
    h_S1D = block.attn_norm(x_S1D)
    inv_freq = rope_inv_freq(cfg)
    q_S1KRH = apply_rope(a._proj(h_S1D, "q"), pos_S1, inv_freq).reshape(S, 1, K, R, H)
    k_SKH = apply_rope(a._proj(h_S1D, "k"), pos_S1, inv_freq)[:, 0]
    v_SKH = a._proj(h_S1D, "v")[:, 0]
    # Finished / empty slots write at position M (out of range): dropped.
    at_S = jnp.where(live_S, len_S, k_SKHM.shape[3])
    slot_S = jnp.arange(S)
    k_SKHM = k_SKHM.at[slot_S, :, :, at_S].set(k_SKH.astype(k_SKHM.dtype), mode="drop")
    v_SKMH = v_SKMH.at[slot_S, :, at_S, :].set(v_SKH.astype(v_SKMH.dtype), mode="drop")
    dt = x_S1D.dtype
    kA, vA = k_SKHM[..., :A].astype(dt), v_SKMH[:, :, :A].astype(dt)
    q_SKRH = q_S1KRH[:, 0]
    s_SKRA = jnp.einsum("skrh,skha->skra", q_SKRH, kA, preferred_element_type=jnp.float32) * (H ** -0.5)
    mask_S1A = (jnp.arange(A)[None, :] <= len_S[:, None])[:, None, :]
    p_SKR1A = attn.masked_softmax(s_SKRA[:, :, :, None, :], mask_S1A, dt)
    o_SKRH = jnp.einsum("skra,skah->skrh", p_SKR1A[:, :, :, 0], vA)
    y_S1D = jnp.einsum("snh,nhd->sd", o_SKRH.reshape(S, K * R, H), a.wo[...].astype(dt))[:, None]
    if cfg.o_bias:
        y_S1D = y_S1D + a.bo[...].astype(dt)[None, None]
    x_S1D = x_S1D + y_S1D
    x_S1D = x_S1D + block.mlp(block.mlp_norm(x_S1D))
    return x_S1D, k_SKHM, v_SKMH


def _unstack(graphdef, params, *, layout=None) -> list[nnx.State]:
    """Each layer's slice of the stacked block parameters (`Transformer.unstacked_layers`)."""
    return nnx.merge(graphdef, params).unstacked_layers()


def _run(graphdef, params, layers: list[nnx.State], state: EngineState, key, exit_free, *, strategy: Strategy,
         stop_ids: tuple[int, ...], A: int, k: int, layout=None) -> EngineState:
    """Up to k decode steps. `layers`: the per-layer weights (`_unstack`), sliced once per
    `generate` rather than once per call (a copy of every layer's weights: 0.34-0.54 s per call
    at the 0.5B shape on this CPU, measured, against ~0.4 s for a whole decode step).
    `exit_free`: stop early once at least this many slots are done (free or finished)."""
    model = nnx.merge(graphdef, params)
    cfg = model.cfg
    block_def, _ = model.layer_stack()

    def cond(carry):
        i, s = carry
        return (i < k) & ~jnp.all(s.done_S) & (jnp.sum(s.done_S) < exit_free)

    def body(carry):
        i, s = carry
        live_S = ~s.done_S
        x_S1D = model.embed(s.last_S[:, None])
        pos_S1 = s.len_S[:, None]
        ks, vs = [], []
        for li in range(cfg.num_layers):
            block = nnx.merge(block_def, layers[li])
            x_S1D, kc, vc = _layer(block, x_S1D, pos_S1, s.k_SKHM[li], s.v_SKMH[li], s.len_S, live_S, A, cfg)
            ks.append(kc)
            vs.append(vc)
        logits_SV = model.logits(model.final_norm(x_S1D))[:, 0]
        tok_S, logp_S = _select_rows(strategy, logits_SV, key, s.row_S2, s.n_S)
        done_S = _finish(tok_S, s.n_S, stop_ids, s.cap_S)
        # Token n_S of each live slot, scattered (finished slots: column C, dropped).
        at_S = jnp.where(live_S, s.n_S, s.tokens_SC.shape[1])
        slot_S = jnp.arange(s.n_S.shape[0])
        s = s.replace(
            k_SKHM=tuple(ks), v_SKMH=tuple(vs),
            len_S=s.len_S + live_S, last_S=jnp.where(live_S, tok_S, s.last_S),
            n_S=s.n_S + live_S, done_S=s.done_S | (live_S & done_S),
            tokens_SC=s.tokens_SC.at[slot_S, at_S].set(tok_S, mode="drop"),
            logp_SC=s.logp_SC.at[slot_S, at_S].set(logp_S, mode="drop"), steps=s.steps + 1)
        return i + 1, _constrain(s)

    return jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state))[1]


def _fetch(*xs: jax.Array) -> list[np.ndarray]:
    """Host copies of several device arrays in one transfer (`shd.to_host` each on multi-host)."""
    if all(x.is_fully_addressable or x.is_fully_replicated for x in xs):
        return [np.asarray(a) for a in jax.device_get(xs)]
    return [shd.to_host(x) for x in xs]


def _compact(state: EngineState, idx_S, *, layout=None) -> EngineState:
    """The state of slots `idx_S` only (a smaller slot batch for the drain phase)."""
    return _constrain(jax.tree.map(lambda a: a[idx_S] if a.ndim else a, state))


@dataclasses.dataclass
class EngineStats:
    """Decode accounting: row_steps = slots x decode steps run; useful = tokens kept from them."""

    decode_steps: int = 0
    row_steps: int = 0
    useful_row_steps: int = 0
    run_calls: int = 0
    admit_calls: int = 0
    prefill_tokens: int = 0  # padded prompt positions the admission prefills computed

    @property
    def useful_fraction(self) -> float:
        return self.useful_row_steps / max(self.row_steps, 1)


class Engine:
    """Continuous-batching generation with `slots` decode slots; same outputs as `Sampler`."""

    def __init__(self, cfg: ModelConfig, graphdef: nnx.GraphDef, *, slots: int = 16,
                 steps_per_call: int = 16, block: int = 64, prefill_batch: int | None = None,
                 shrink: bool = True, admit_min: int = 1, prefill_granule: int | None = None,
                 mesh: Mesh | None = None, rules: shd.Rules = shd.SAMPLE_RULES,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, pad_id: int = 0, cache_dtype: str | None = None):
        """`block`: attended cache positions are a multiple of it (one compile per multiple);
        `prefill_batch`: most rows per admission prefill (default: slots; smaller admissions
        use the next power of two); `shrink`: once the queue
        is empty, halve the slot batch whenever at most half the slots are live (drain phase);
        `admit_min`: while rows wait, a decode call ends as soon as this many slots are free
        (at most `steps_per_call` steps), so freed slots are refilled without idling;
        `prefill_granule`: an admission's prompts are padded to their longest rounded up to a
        multiple of it when that is shorter than its bucket (one prefill compile per length;
        None: the bucket)."""
        for name, v in (("slots", slots), ("steps_per_call", steps_per_call), ("block", block),
                        ("admit_min", admit_min)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v!r}")
        self.cfg, self.graphdef, self.mesh, self.rules = cfg, graphdef, mesh, rules
        # Slots are split over the mesh's batch shards (data x fsdp): a multiple of them, so the
        # slot state is sharded rather than replicated on every device.
        self.row_shards = shd.data_parallel_size(mesh, rules)
        slots = -(-int(slots) // self.row_shards) * self.row_shards
        self.slots, self.k, self.block = int(slots), int(steps_per_call), int(block)
        self.prefill_batch = int(prefill_batch or slots)
        self.shrink = bool(shrink)
        self.admit_min = int(admit_min)
        if prefill_granule is not None and int(prefill_granule) < 1:
            raise ValueError(f"prefill_granule must be >= 1 or None, got {prefill_granule!r}")
        self.prefill_granule = None if prefill_granule is None else int(prefill_granule)
        self.buckets = tuple(sorted(buckets))
        self.pad_id = int(pad_id)
        self.cache_dtype = cache_dtype or cfg.dtype
        self.stats = EngineStats()
        # `layout`: a static argument the functions ignore (see shd.layout_key).
        statics = ("strategy", "stop_ids", "layout")
        self._admit = shd.WithLayout(jax.jit(_admit, static_argnums=(0,), donate_argnums=(2,),
                                                static_argnames=statics), mesh, rules)
        # A new shape: donation could not reuse the buffers.
        self._compact = shd.WithLayout(jax.jit(_compact, static_argnames=("layout",)), mesh, rules)
        self._run = shd.WithLayout(jax.jit(_run, static_argnums=(0,), donate_argnums=(3,),
                                              static_argnames=statics + ("A", "k")), mesh, rules)
        self._unstack = shd.WithLayout(jax.jit(_unstack, static_argnums=(0,), static_argnames=("layout",)),
                                       mesh, rules)
        self._zeros = shd.WithLayout(jax.jit(_zeros_state, static_argnums=tuple(range(7)),
                                                static_argnames=("layout",)), mesh, rules)

    def _can_halve(self, S: int, live: int, queue) -> bool:
        """Whether the drain phase halves a batch of S slots with `live` rows: the queue is
        empty, the live rows fit in half and the half still splits evenly over the batch shards."""
        return (self.shrink and not queue and live <= S // 2 and S % 2 == 0
                and (S // 2) % self.row_shards == 0)

    def _init_state(self, M: int, C: int) -> EngineState:
        cfg = self.cfg
        return self._zeros(self.slots, M, C, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, self.cache_dtype)

    def generate(self, params: nnx.State, prompts: Sequence[Sequence[int]],
                 max_new_tokens: int | Sequence[int],
                 strategy: Strategy = Greedy(), stop_ids: Sequence[int] = (), n: int = 1,
                 seed: int | jax.Array = 0,
                 on_finish: Callable[[int, np.ndarray, bool], None] | None = None) -> SampleOutput:
        """Like `Sampler.generate` (grouped rows, same SampleOutput). `max_new_tokens`: one cap
        for all rows, or one per prompt (each of its n rows stops at its own cap; the buffers
        use the largest). `on_finish(row, tokens, stopped)` is called on the host as each row
        finishes (tokens include the stop id)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        if len(prompts) == 0:
            raise ValueError("no prompts given")
        cap_N = per_prompt_caps(max_new_tokens, len(prompts))
        C = int(cap_N.max())
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty; the engine needs at least one token")
            bad = [t for t in p if not 0 <= t < self.cfg.vocab_size]
            if bad:
                raise ValueError(f"prompt {i} has token id {bad[0]!r} outside the vocab [0, {self.cfg.vocab_size})")
        Pmax = bucket_for(max(len(p) for p in prompts), self.buckets)
        M = -(-(Pmax + C) // self.block) * self.block
        if Pmax + C > self.cfg.max_position_embeddings:
            raise ValueError(f"prompt bucket {Pmax} + {C} new tokens exceeds "
                             f"max_position_embeddings {self.cfg.max_position_embeddings}")
        key = jax.random.key(seed) if isinstance(seed, int) else seed
        statics = dict(strategy=strategy, stop_ids=tuple(int(s) for s in stop_ids))
        B = len(prompts) * n
        out_tok = np.full((B, C), self.pad_id, np.int32)
        out_logp = np.zeros((B, C), np.float32)
        out_len = np.zeros((B,), np.int32)
        out_stop = np.zeros((B,), bool)
        queue = deque(range(B))
        S = self.slots  # current slot batch (shrinks in the drain phase)
        slot_row = [-1] * S  # host mirror: which output row each slot holds
        stop_set = set(statics["stop_ids"])
        with shd.use_rules(self.mesh, self.rules):
            state = self._init_state(M, C)
            # Freed when generate returns; the static sampler holds the same copy per call.
            layers = self._unstack(self.graphdef, params)
            ran_from = None  # (n_S, steps) before the last run call, for its accounting
            while True:
                done, n_h, len_h, steps_h = _fetch(state.done_S, state.n_S, state.len_S, state.steps)
                if ran_from is not None:
                    ran = int(steps_h) - int(ran_from[1])
                    self.stats.decode_steps += ran
                    self.stats.row_steps += ran * S
                    self.stats.useful_row_steps += int((n_h - ran_from[0])[
                        np.asarray([r >= 0 for r in slot_row])].sum())
                    ran_from = None
                finished = [s for s in range(S) if slot_row[s] >= 0 and done[s]]
                if finished:
                    tok_h, logp_h = _fetch(state.tokens_SC, state.logp_SC)
                    for s in finished:
                        row, ln = slot_row[s], int(n_h[s])
                        out_tok[row, :ln], out_logp[row, :ln], out_len[row] = tok_h[s, :ln], logp_h[s, :ln], ln
                        out_stop[row] = int(tok_h[s, ln - 1]) in stop_set
                        slot_row[s] = -1
                        if on_finish is not None:
                            on_finish(row, out_tok[row, :ln].copy(), bool(out_stop[row]))
                free = [s for s in range(S) if slot_row[s] < 0]
                if queue and free:
                    # Admit in prefill batches of a power of two rows (at most prefill_batch): a
                    # few free slots are not prefilled as a full padded batch (measured: 2.3x the
                    # prefill tokens on bench_rollout --quick); one compile per (size, bucket).
                    take = [queue.popleft() for _ in range(min(len(free), self.prefill_batch, len(queue)))]
                    rows = [prompts[r // n] for r in take]
                    longest = max(len(p) for p in rows)
                    P = bucket_for(longest, self.buckets)
                    if self.prefill_granule:
                        # Admissions are small (often one row): pad to the rows' own length, not
                        # to a bucket that fits the longest prompt of the whole rollout.
                        P = min(P, -(-longest // self.prefill_granule) * self.prefill_granule)
                    J = min(self.prefill_batch, 1 << (len(take) - 1).bit_length())
                    prompt_JP, plen_J = left_pad(rows + [rows[0]] * (J - len(rows)), P, self.pad_id)
                    slot_J = np.full((J,), S, np.int32)
                    slot_J[:len(take)] = free[:len(take)]
                    row_J2 = np.zeros((J, 2), np.int32)
                    row_J2[:len(take)] = [(r // n, r % n) for r in take]
                    cap_J = np.ones((J,), np.int32)
                    cap_J[:len(take)] = cap_N[np.asarray(take) // n]
                    for s, r in zip(free, take):
                        slot_row[s] = r
                    state = self._admit(self.graphdef, params, state, prompt_JP, plen_J, slot_J, row_J2,
                                        cap_J, key, **statics)
                    self.stats.admit_calls += 1
                    self.stats.prefill_tokens += J * P
                    continue  # first tokens may already finish rows; admit more before decoding
                if all(r < 0 for r in slot_row):
                    break
                live = [s for s in range(S) if slot_row[s] >= 0]
                S_new = S
                while self._can_halve(S_new, len(live), queue):
                    S_new //= 2
                if S_new < S:
                    S = S_new
                    idx = live + free[:S - len(live)]
                    state = self._compact(state, np.asarray(idx, np.int32))
                    slot_row = [slot_row[i] for i in idx]
                    done, n_h, len_h = done[idx], n_h[idx], len_h[idx]
                A = min(M, -(-(int(len_h[~done].max()) + self.k) // self.block) * self.block)
                # The call returns early once enough slots are free for the host to act: an
                # admission while rows wait (at least admit_min, or all the rows left), else a
                # halving of the slot batch; a finished slot otherwise idles until the call ends
                # (~k/2 steps: useful fraction 0.877 at k = 8 on the 0.5B run of BENCHMARKS §11).
                if queue:
                    exit_free = min(self.admit_min, len(queue))
                elif self._can_halve(S, S // 2, queue):
                    exit_free = S - S // 2
                else:
                    exit_free = S + 1
                ran_from = (n_h, steps_h)
                state = self._run(self.graphdef, params, layers, state, key, np.int32(exit_free),
                                  A=A, k=self.k, **statics)
                self.stats.run_calls += 1
        return SampleOutput(tokens_BC=out_tok, lengths_B=out_len, logp_BC=out_logp, stopped_B=out_stop,
                            prompt_index_B=np.repeat(np.arange(len(prompts)), n))
