"""One way to get a generator from config: the static `Sampler` or the continuous `Engine`.

Both have `generate(params, prompts, max_new_tokens, strategy, stop_ids, n, seed) -> SampleOutput`
(grouped rows, same fields), so `execverify generate`, `execverify eval`, `filter-difficulty`, the
demo's held-out eval and GRPO rollouts take whichever the config's `engine` names:

    static      Sampler: each call is one batch run until its longest row stops; token t of
                every row is drawn with fold_in(key, t)
    continuous  Engine (model/engine.py): `slots` rows in flight, refilled as rows finish; token t
                of row (prompt i, sample j) is drawn with fold_in(fold_in(fold_in(key, i), j), t)

The one semantic difference: for the same seed, *sampled* tokens differ between the two (the key
schedules differ); greedy tokens are the same up to float reassociation (different batch shapes
and attention lengths can flip an exact tie of two logits; tested equal on the tiny models).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from flax import nnx
from jax.sharding import Mesh

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.engine import Engine
from execverify_jax.model.sampler import DEFAULT_BUCKETS, Sampler
from execverify_jax.shared_config import ENGINES  # noqa: F401  (re-exported)


class EngineKnobs(Protocol):
    """The config fields `make_generator` reads (`shared_config.SamplingConfig` has them)."""

    engine: str
    slots: int
    steps_per_call: int
    block: int
    prefill_batch: int
    admit_min: int
    prefill_granule: int
    share_prompts: bool


def make_generator(cfg: ModelConfig, graphdef: nnx.GraphDef, knobs: EngineKnobs, *,
                   mesh: Mesh | None = None, rules: shd.Rules = shd.SAMPLE_RULES,
                   buckets: Sequence[int] = DEFAULT_BUCKETS, pad_id: int = 0,
                   cache_dtype: str | None = None) -> Sampler | Engine:
    """The generator `knobs.engine` names, built with the knobs' slots / steps_per_call / block /
    prefill_batch / admit_min / prefill_granule / share_prompts (continuous only; prefill_batch is capped at slots); an unknown engine is an
    error naming the value."""
    common = dict(mesh=mesh, rules=rules, buckets=tuple(buckets), pad_id=pad_id, cache_dtype=cache_dtype)
    if knobs.engine == "static":
        return Sampler(cfg, graphdef, **common)
    if knobs.engine == "continuous":
        return Engine(cfg, graphdef, slots=knobs.slots, steps_per_call=knobs.steps_per_call,
                      block=knobs.block, prefill_batch=min(knobs.prefill_batch, knobs.slots),
                      admit_min=knobs.admit_min, prefill_granule=knobs.prefill_granule or None,
                      share_prompts=knobs.share_prompts, **common)
    raise ValueError(f"engine: {knobs.engine!r} is not one of {list(ENGINES)}")
