"""Rollout engine: continuous batching over a fixed number of decode slots (host scheduling here;
the slot state, the prompt store and the jitted functions in model/engine_ops.py).

    rows (prompt i, sample j) --host queue--> free slots
    admit (jit per (J, P)): prefill J rows over their prompt (Transformer.prefill), J = the next
          power of two >= the rows admitted (at most prefill_batch), draw token 0,
          shift each row's left-padded keys/values to slot positions [0, plen) and write them into
          the rows of the free slots
          (P: the bucket, or with `prefill_granule` the rows' longest rounded up to it)
    share (prefix sharing, rows that share a prompt: the n samples of GRPO): `fill` prefills the
          next `prefill_batch` distinct prompts of the queue once into a `PromptStore`, and
          `attach` copies a stored prompt's keys/values and logits into a row's slot and draws
          its token 0 (no model compute), instead of one prefill per row
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
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from execverify_jax.buckets import bucket_for
from execverify_jax.model import engine_ops as ops
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.engine_ops import EngineState
from execverify_jax.model.sampler import DEFAULT_BUCKETS, SampleOutput, left_pad, per_prompt_caps
from execverify_jax.model.strategies import Greedy, Strategy


def _fetch(*xs: jax.Array) -> list[np.ndarray]:
    """Host copies of several device arrays in one transfer (`shd.to_host` each on multi-host)."""
    if all(x.is_fully_addressable or x.is_fully_replicated for x in xs):
        return [np.asarray(a) for a in jax.device_get(xs)]
    return [shd.to_host(x) for x in xs]


@dataclasses.dataclass
class EngineStats:
    """Decode accounting: row_steps = slots x decode steps run; useful = tokens kept from them."""

    decode_steps: int = 0
    row_steps: int = 0
    useful_row_steps: int = 0
    run_calls: int = 0
    admit_calls: int = 0  # admissions of rows into free slots
    prefill_calls: int = 0  # prefills (one per admission, or per store fill when prompts are shared)
    prefill_tokens: int = 0  # padded prompt positions the prefills computed

    @property
    def useful_fraction(self) -> float:
        return self.useful_row_steps / max(self.row_steps, 1)


class Engine:
    """Continuous-batching generation with `slots` decode slots; same outputs as `Sampler`."""

    def __init__(self, cfg: ModelConfig, graphdef: nnx.GraphDef, *, slots: int = 16,
                 steps_per_call: int = 16, block: int = 64, prefill_batch: int | None = None,
                 shrink: bool = True, admit_min: int = 1, prefill_granule: int | None = None,
                 share_prompts: bool = True, mesh: Mesh | None = None, rules: shd.Rules = shd.SAMPLE_RULES,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, pad_id: int = 0, cache_dtype: str | None = None):
        """`block`: attended cache positions are a multiple of it (one compile per multiple);
        `prefill_batch`: most rows per admission prefill (default: slots; smaller admissions
        use the next power of two); `shrink`: once the queue
        is empty, halve the slot batch whenever at most half the slots are live (drain phase);
        `admit_min`: while rows wait, a decode call ends as soon as this many slots are free
        (at most `steps_per_call` steps), so freed slots are refilled without idling;
        `prefill_granule`: an admission's prompts are padded to their longest rounded up to a
        multiple of it when that is shorter than its bucket (one prefill compile per length;
        None: the bucket); `share_prompts`: with n > 1 samples per prompt, prefill each prompt
        once into a store of `prefill_batch` prompts and copy its keys/values into the slots of
        its n rows (prefix sharing), instead of prefilling every row."""
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
        self.share_prompts = bool(share_prompts)
        self.buckets = tuple(sorted(buckets))
        self.pad_id = int(pad_id)
        self.cache_dtype = cache_dtype or cfg.dtype
        self.stats = EngineStats()
        # `layout`: a static argument the functions ignore (see shd.layout_key).
        statics = ("strategy", "stop_ids", "layout")
        self._admit = shd.WithLayout(jax.jit(ops.admit, static_argnums=(0,), donate_argnums=(2,),
                                                static_argnames=statics), mesh, rules)
        # A new shape: donation could not reuse the buffers.
        self._compact = shd.WithLayout(jax.jit(ops.compact, static_argnames=("layout",)), mesh, rules)
        self._run = shd.WithLayout(jax.jit(ops.run, static_argnums=(0,), donate_argnums=(3,),
                                              static_argnames=statics + ("A", "k")), mesh, rules)
        self._unstack = shd.WithLayout(jax.jit(ops.unstack, static_argnums=(0,), static_argnames=("layout",)),
                                       mesh, rules)
        self._fill = shd.WithLayout(jax.jit(ops.fill, static_argnums=(0,), donate_argnums=(2,),
                                            static_argnames=("layout",)), mesh, rules)
        self._attach = shd.WithLayout(jax.jit(ops.attach, donate_argnums=(0,), static_argnames=statics), mesh, rules)
        self._zeros_store = shd.WithLayout(jax.jit(ops.zeros_store, static_argnums=tuple(range(7)),
                                                   static_argnames=("layout",)), mesh, rules)
        self._zeros = shd.WithLayout(jax.jit(ops.zeros_state, static_argnums=tuple(range(7)),
                                                static_argnames=("layout",)), mesh, rules)

    def _can_halve(self, S: int, live: int, queue) -> bool:
        """Whether the drain phase halves a batch of S slots with `live` rows: the queue is
        empty, the live rows fit in half and the half still splits evenly over the batch shards."""
        return (self.shrink and not queue and live <= S // 2 and S % 2 == 0
                and (S // 2) % self.row_shards == 0)

    def _prefill_len(self, rows: Sequence[Sequence[int]]) -> int:
        """Padded prompt length of one prefill: the bucket of its longest row, or with
        `prefill_granule` that row's length rounded up to it when shorter (admissions are small,
        often one row: not padded to a bucket that fits the longest prompt of the whole rollout)."""
        longest = max(len(p) for p in rows)
        P = bucket_for(longest, self.buckets)
        if self.prefill_granule:
            P = min(P, -(-longest // self.prefill_granule) * self.prefill_granule)
        return P

    def _pow2(self, rows: int) -> int:
        """Prefill / admission batch: the next power of two >= rows, at most prefill_batch."""
        return min(self.prefill_batch, 1 << (rows - 1).bit_length())

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
            # Rows that share a prompt (its n samples, or equal prompts given twice): its
            # canonical index, the first prompt with the same tokens.
            first_of: dict[tuple, int] = {}
            canon_N = [first_of.setdefault(tuple(int(t) for t in p), i) for i, p in enumerate(prompts)]
            share = self.share_prompts and (n > 1 or len(first_of) < len(prompts))
            if share:
                # Store entries: the prompts of one admission prefill (same transient size).
                U, entry_of = self.prefill_batch, {}
                store = self._zeros_store(U, Pmax, self.cfg.vocab_size, self.cfg.num_layers,
                                          self.cfg.num_kv_heads, self.cfg.head_dim, self.cache_dtype)
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
                    # Admit in batches of a power of two rows (at most prefill_batch): a few free
                    # slots are not prefilled as a full padded batch (measured: 2.3x the prefill
                    # tokens on bench_rollout --quick); one compile per (size, length).
                    want = min(len(free), self.prefill_batch, len(queue))
                    if share:
                        if canon_N[queue[0] // n] not in entry_of:
                            # The queue runs in row order: the stored prompts' rows are (nearly
                            # always) all admitted. Refill the whole store with the next distinct
                            # prompts of the queue, in one prefill.
                            nxt: list[int] = []
                            for r in queue:
                                if canon_N[r // n] not in nxt:
                                    nxt.append(canon_N[r // n])
                                    if len(nxt) == U:
                                        break
                            J = self._pow2(len(nxt))
                            P = self._prefill_len([prompts[i] for i in nxt])
                            prompt_JP, plen_J = left_pad([prompts[i] for i in nxt]
                                                         + [prompts[nxt[0]]] * (J - len(nxt)), P, self.pad_id)
                            entry_J = np.full((J,), U, np.int32)
                            entry_J[:len(nxt)] = np.arange(len(nxt))
                            store = self._fill(self.graphdef, params, store, prompt_JP, plen_J, entry_J)
                            entry_of = {p: e for e, p in enumerate(nxt)}
                            self.stats.prefill_calls += 1
                            self.stats.prefill_tokens += J * P
                        take = []
                        while queue and len(take) < want and canon_N[queue[0] // n] in entry_of:
                            take.append(queue.popleft())
                    else:
                        take = [queue.popleft() for _ in range(want)]
                    J = self._pow2(len(take))
                    slot_J = np.full((J,), S, np.int32)
                    slot_J[:len(take)] = free[:len(take)]
                    row_J2 = np.zeros((J, 2), np.int32)
                    row_J2[:len(take)] = [(r // n, r % n) for r in take]
                    cap_J = np.ones((J,), np.int32)
                    cap_J[:len(take)] = cap_N[np.asarray(take) // n]
                    for s, r in zip(free, take):
                        slot_row[s] = r
                    if share:
                        entry_J = np.zeros((J,), np.int32)
                        entry_J[:len(take)] = [entry_of[canon_N[r // n]] for r in take]
                        state = self._attach(state, store, entry_J, slot_J, row_J2, cap_J, key, **statics)
                    else:
                        rows = [prompts[r // n] for r in take]
                        P = self._prefill_len(rows)
                        prompt_JP, plen_J = left_pad(rows + [rows[0]] * (J - len(rows)), P, self.pad_id)
                        state = self._admit(self.graphdef, params, state, prompt_JP, plen_J, slot_J, row_J2,
                                            cap_J, key, **statics)
                        self.stats.prefill_calls += 1
                        self.stats.prefill_tokens += J * P
                    self.stats.admit_calls += 1
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
