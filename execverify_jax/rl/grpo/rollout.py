"""Rollouts: G completions per prompt from the current weights, scored in the sandbox as each
generation chunk finishes (rollout.engine: static) or as each row finishes (continuous), plus
DAPO dynamic sampling over several prompt batches.

`Rollout` is one batch's completions (rows grouped by prompt); `RolloutGenerator` produces them.
Each process scores only its own rows (`my_rows`); rewards are all-gathered so that every process
takes the same decisions (dynamic sampling keeps the same groups everywhere).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.engine import Engine, EngineStats
from execverify_jax.model.generation import make_generator
from execverify_jax.model.params import param_shardings
from execverify_jax.model.strategies import make_strategy
from execverify_jax.rl.grpo.credit import credit_details
from execverify_jax.rl.infra import distributed as dist
from execverify_jax.rl.objective.advantages import informative_groups
from execverify_jax.rl.run_config import TrainConfig


@dataclasses.dataclass
class Rollout:
    """G completions of each of a batch's prompts (rows grouped by prompt), scored or pending.

    futures: (row, Future[RewardResult]) for the rows this process scores.
    results: row -> RewardResult once collected (this process's rows only).
    credit: row -> `credit.credit_details` of every process's rows, once `gathered_credit` ran
        (cached: dynamic sampling and the advantages both need it, and it costs an all-gather).
    """

    prompts: list[list[int]]
    records: list[dict]
    tokens_BC: np.ndarray
    len_B: np.ndarray
    stopped_B: np.ndarray
    futures: list
    t_gen: float
    num_skipped: int = 0
    results: dict = dataclasses.field(default_factory=dict)
    credit: dict | None = None


def my_rows(n: int, process_index: int, process_count: int) -> tuple[int, int]:
    """The [lo, hi) rows of n that this process scores."""
    per = n // process_count
    return process_index * per, (process_index + 1) * per


class RolloutGenerator:
    """Samples and submits scoring for prompt batches with one generator, strategy and task."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, graphdef: Any, mesh: Any, task: Any,
                 process_index: int, process_count: int) -> None:
        self.cfg, self.task = cfg, task
        self.pi, self.pc = process_index, process_count
        r = cfg.rollout
        gen = make_generator(model_cfg, graphdef, r, mesh=mesh, buckets=tuple(cfg.data.buckets), pad_id=task.pad_id)
        # Exactly one of the two: the engine (rollout.engine: continuous) or the static sampler.
        self.engine = gen if isinstance(gen, Engine) else None
        self.sampler = None if self.engine is not None else gen
        self.strategy = make_strategy(temperature=r.temperature, top_k=r.top_k, top_p=r.top_p)
        self.to_sample = None
        if r.sample_reshard or r.sample_dtype:
            sdt = r.sample_dtype
            rules = shd.SAMPLE_RULES if r.sample_reshard else shd.TRAIN_RULES
            out_sh = param_shardings(model_cfg, mesh, rules)
            self.to_sample = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(sdt) if sdt else x, p),
                                     out_shardings=out_sh)

    def sampling_params(self, params: Any) -> Any:
        """The current weights, on device: the training arrays themselves or a device-to-device
        copy in the sampling layout/dtype (never through the host)."""
        return params if self.to_sample is None else self.to_sample(params)

    def generate(self, params: Any, prompts: list[list[int]], records: list[dict], key: jax.Array):
        """Generates G completions per prompt chunk by chunk; returns (tokens, lengths, stopped,
        futures, seconds) with futures submitted as soon as each chunk is done."""
        g, r = self.cfg.grpo, self.cfg.rollout
        G = g.group_size
        if self.engine is not None:
            return self._generate_continuous(params, prompts, records, key)
        per_call = r.prompts_per_call or len(prompts)
        toks, lens, stops, futures = [], [], [], []
        t_gen = 0.0
        lo_mine, hi_mine = my_rows(len(prompts) * G, self.pi, self.pc)
        for c, start in enumerate(range(0, len(prompts), per_call)):
            chunk = prompts[start:start + per_call]
            t0 = time.perf_counter()
            out = self.sampler.generate(params, chunk, r.max_new_tokens, self.strategy,
                                        stop_ids=self.task.stop_ids, n=G, seed=jax.random.fold_in(key, c))
            t_gen += time.perf_counter() - t0
            toks.append(out.tokens_BC)
            lens.append(out.lengths_B)
            stops.append(out.stopped_B)
            row0 = start * G
            comps, recs, rows = [], [], []
            for i in range(out.tokens_BC.shape[0]):
                row = row0 + i
                if lo_mine <= row < hi_mine:  # score only this process's rows
                    comps.append(out.tokens_BC[i, : out.lengths_B[i]].tolist())
                    recs.append(records[start + i // G])
                    rows.append(row)
            futures.extend(zip(rows, self.task.submit(recs, comps)))
        return (np.concatenate(toks), np.concatenate(lens), np.concatenate(stops), futures, t_gen)

    def _generate_continuous(self, params: Any, prompts: list[list[int]], records: list[dict], key: jax.Array):
        """`generate` on the rollout engine: all prompts x G rows in flight at once, each row
        submitted for scoring the moment it finishes (this process's rows only)."""
        G = self.cfg.grpo.group_size
        lo_mine, hi_mine = my_rows(len(prompts) * G, self.pi, self.pc)
        futures = []

        def on_finish(row: int, tokens: np.ndarray, stopped: bool) -> None:
            if lo_mine <= row < hi_mine:
                futures.extend(zip([row], self.task.submit([records[row // G]], [tokens.tolist()])))

        t0 = time.perf_counter()
        out = self.engine.generate(params, prompts, self.cfg.rollout.max_new_tokens, self.strategy,
                                   stop_ids=self.task.stop_ids, n=G, seed=jax.random.fold_in(key, 0),
                                   on_finish=on_finish)
        return out.tokens_BC, out.lengths_B, out.stopped_B, futures, time.perf_counter() - t0

    def engine_metrics(self) -> dict[str, float]:
        """The engine's decode accounting since the last call (nothing for the static sampler)."""
        if self.engine is None:
            return {}
        st, self.engine.stats = self.engine.stats, EngineStats()
        return {"rollout/useful_row_step_fraction": st.useful_fraction,
                "rollout/decode_steps": float(st.decode_steps)}

    def rollout(self, params: Any, batch: dict, key: jax.Array) -> Rollout:
        """Generates G completions for every prompt of a (global) batch; scoring is submitted."""
        prompt_BP, plen_B = batch["prompt_BP"], batch["prompt_len_B"]
        P = prompt_BP.shape[1]
        prompts = [prompt_BP[b, P - plen_B[b]:].tolist() for b in range(prompt_BP.shape[0])]
        # Each process scores its own rows: look up only the records it needs.
        records = self.task.records(batch["record_index_B"].tolist())
        tokens_BC, len_B, stopped_B, futures, t_gen = self.generate(params, prompts, records, key)
        return Rollout(prompts, records, tokens_BC, len_B, stopped_B, futures, t_gen,
                       int(batch.get("num_skipped", 0)))

    def collect(self, roll: Rollout) -> tuple[list, np.ndarray]:
        """Waits for this process's scores; returns (its results, the global reward_B)."""
        mine = sorted(roll.futures, key=lambda rf: rf[0])
        results = [f.result() for _, f in mine]
        roll.results = {row: res for (row, _), res in zip(mine, results)}
        rewards_mine = np.asarray([float(x.reward) for x in results], np.float32)
        return results, dist.allgather_rows(rewards_mine)

    def dynamic_fill(self, params: Any, first: Rollout, key: jax.Array,
                     next_batch: Callable[[], dict | None]) -> tuple[Rollout, np.ndarray, tuple, dict]:
        """DAPO dynamic sampling: keeps groups whose rewards (`grpo.dynamic_signal: reward`) or
        rewards less their shaping bonuses (`correctness`) are not all equal, drawing further
        prompt batches (`next_batch`) until prompts_per_step such groups exist or
        `dynamic_max_rounds` rounds were generated (or the data ended); the remaining slots are
        then filled with uninformative groups (zero advantage), counted in `dynamic/filled_groups`.

        Returns (the kept rollout, its global rewards, this process's (results, lengths,
        truncation) over every row it scored, metrics). The decision uses the all-gathered
        rewards, so every process keeps the same groups and pulls the same number of batches.
        """
        g = self.cfg.grpo
        N, G = g.prompts_per_step, g.group_size
        rounds, rewards = [first], []
        seen: tuple[list, list, list] = ([], [], [])  # this process's results, lengths, truncation
        kept: list[tuple[int, int]] = []
        spare: list[tuple[int, int]] = []
        t_score = 0.0
        while True:
            t0 = time.perf_counter()
            res, reward_B = self.collect(rounds[-1])
            t_score += time.perf_counter() - t0
            lo, hi = my_rows(rounds[-1].tokens_BC.shape[0], self.pi, self.pc)
            seen[0].extend(res)
            seen[1].extend(rounds[-1].len_B[lo:hi].tolist())
            seen[2].extend((~rounds[-1].stopped_B[lo:hi]).tolist())
            rewards.append(reward_B)
            signal_B = reward_B if g.dynamic_signal == "reward" else correctness(rounds[-1], reward_B)
            informative = np.asarray(informative_groups(jnp.asarray(signal_B.reshape(-1, G))))
            r = len(rounds) - 1
            for gi, ok in enumerate(informative):
                (kept if ok else spare).append((r, gi))
            if len(kept) >= N or len(rounds) >= g.dynamic_max_rounds:
                break
            batch = next_batch()
            if batch is None:
                break
            # A key per round, distinct from every chunk key of round 0.
            rounds.append(self.rollout(params, batch, jax.random.fold_in(jax.random.fold_in(key, 0x5EED), r + 1)))
        generated = sum(len(x.prompts) for x in rounds)
        n_informative = len(kept)
        chosen = sorted(kept[:N] + spare[:max(0, N - len(kept))])
        rows = [(r, gi * G + j) for r, gi in chosen for j in range(G)]
        roll = Rollout(
            prompts=[rounds[r].prompts[gi] for r, gi in chosen],
            records=[rounds[r].records[gi] for r, gi in chosen],
            tokens_BC=np.stack([rounds[r].tokens_BC[i] for r, i in rows]),
            len_B=np.asarray([rounds[r].len_B[i] for r, i in rows]),
            stopped_B=np.asarray([rounds[r].stopped_B[i] for r, i in rows]),
            futures=[], t_gen=sum(x.t_gen for x in rounds),
            num_skipped=sum(x.num_skipped for x in rounds),
            results={k: rounds[r].results[i] for k, (r, i) in enumerate(rows) if i in rounds[r].results},
            credit=({k: rounds[r].credit[i] for k, (r, i) in enumerate(rows) if i in rounds[r].credit}
                    if all(x.credit is not None for x in rounds) else None))
        reward_B = np.asarray([rewards[r][i] for r, i in rows], np.float32)
        metrics = {"dynamic/rounds": float(len(rounds)), "dynamic/generated_groups": float(generated),
                   "dynamic/informative_frac": n_informative / max(generated, 1),
                   "dynamic/filled_groups": float(max(0, N - n_informative)), "time/score_wait": t_score}
        return roll, reward_B, seen, metrics


def gathered_credit(roll: Rollout) -> dict[int, dict]:
    """row -> `credit.credit_details` for every row of the batch (each process scored its own rows;
    with dynamic sampling a kept row may have been scored by any process, so rows are keyed).
    Cached on the rollout: every process calls it at the same points, so the all-gathers match."""
    if roll.credit is not None:
        return roll.credit
    mine = {str(row): credit_details(res) for row, res in roll.results.items()}
    merged: dict[int, dict] = {}
    for part in dist.allgather_json(mine):
        merged.update({int(k): v for k, v in part.items()})
    roll.credit = merged
    return merged


def row_shaping(rows: dict[int, dict], n: int) -> np.ndarray:
    """shaping_B: the shaping (format and call bonuses) inside each of n rows' rewards (0 where a
    row reports none)."""
    return np.asarray([rows.get(i, {}).get("shaping", 0.0) for i in range(n)], np.float32)


def correctness(roll: Rollout, reward_B: np.ndarray) -> np.ndarray:
    """The global rewards of a scored rollout less each row's shaping."""
    return np.asarray(reward_B, np.float32) - row_shaping(gathered_credit(roll), len(reward_B))
