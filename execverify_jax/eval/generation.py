"""Generation for `execverify eval --model` (the model side; imported lazily).

Only `execverify eval --model` imports this module, so scoring saved responses never loads jax.
The generator is `generation.engine`'s (model/generation.py): continuous (default) takes every
prompt in one call and keeps `slots` rows in flight; static runs batches of `batch_size` prompts.
Prompts are sorted by token length first (less left padding, admission batches of similar
buckets), and the completions are returned in the items' order: `responses[i]` holds the `n`
samples of `items[i]`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from execverify_jax.eval.items import EvalItem
from execverify_jax.shared_config import GenerationConfig  # the decoding options (re-exported)


def load_model(model: str, tokenizer: str | None, gen: GenerationConfig):
    """(generator, params, tokenizer) for a checkpoint or HF directory; checks the vocab sizes match."""
    import jax

    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.config import inference_numerics
    from execverify_jax.model.generation import make_generator

    tok = Tokenizer(tokenizer or model)
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(gen.mesh)
    cfg, graphdef, params = load_any(model, mesh, shd.SAMPLE_RULES,
                                     **inference_numerics(gen.dtype, jax.default_backend()))
    src = Path(model) / ("config.json" if (Path(model) / "config.json").is_file() else "model_config.json")
    tok.check_model_vocab(cfg.vocab_size, str(src))
    return make_generator(cfg, graphdef, gen, mesh=mesh, pad_id=tok.pad_id), params, tok


# The official CRUXEval/REval harnesses stop generation at this string; a raw completion of
# their few-shot prompts otherwise goes on to invent the next example (and its [ANSWER] block).
STOP_STRINGS = ("[/ANSWER]",)


def cut_at_stop(text: str) -> str:
    """`text` up to and including the first stop string (greedy decoding: what a stopped
    generation would have produced)."""
    cut = min((text.find(s) + len(s) for s in STOP_STRINGS if s in text), default=len(text))
    return text[:cut]


def batch_rows(n_prompts: int, batch_size: int) -> int:
    """Prompts per static-sampler call: `batch_size` when there are more prompts than that (the last
    batch is padded up to it), else the next power of two >= n_prompts (capped at batch_size),
    so a short run does not pay for a full batch and different `--limit`s share shapes."""
    if n_prompts >= batch_size:
        return batch_size
    return min(batch_size, 1 << max(0, n_prompts - 1).bit_length())


def generate(items: Sequence[EvalItem], model: str, tokenizer: str | None, gen: GenerationConfig) -> list[list[str]]:
    """Completions for every item (n each), decoded without special tokens."""
    from execverify_jax.model.engine import Engine
    from execverify_jax.model.strategies import make_strategy

    # No more engine slots than rows: each slot's cache is allocated up front.
    gen = dataclasses.replace(gen, slots=min(gen.slots, max(1, len(items)) * gen.n))
    generator, params, tok = load_model(model, tokenizer, gen)
    strategy = make_strategy(gen.greedy, gen.temperature, gen.top_k, gen.top_p)
    prompts = []
    for it in items:
        if gen.raw_prompts and it.raw_prompt is not None:
            prompts.append(tok.encode(it.raw_prompt))
        else:
            prompts.append(tok.apply_chat(it.messages))
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    out: list[list[str]] = [[] for _ in items]
    bar = tqdm(total=len(items) * gen.n, desc="generating", unit="completion")

    def keep(idx: list[int], res) -> None:
        for row in range(len(res.lengths_B)):
            k = int(res.prompt_index_B[row])
            if k < len(idx):
                text = tok.decode(res.tokens_BC[row, : res.lengths_B[row]])
                raw = gen.raw_prompts and items[idx[k]].raw_prompt is not None
                out[idx[k]].append(cut_at_stop(text) if raw else text)

    if isinstance(generator, Engine):
        # One call: the engine's queue holds every row, `slots` of them in flight at a time.
        res = generator.generate(params, [prompts[i] for i in order], gen.max_new_tokens, strategy,
                                 stop_ids=tok.stop_ids, n=gen.n, seed=gen.seed,
                                 on_finish=lambda *_: bar.update(1))
        keep(order, res)
    else:
        rows = batch_rows(len(order), gen.batch_size)
        for b, start in enumerate(range(0, len(order), gen.batch_size)):
            idx = order[start:start + gen.batch_size]
            # Every batch has `rows` prompts (the last one padded with copies of its longest
            # prompt, whose outputs are dropped): one compiled batch shape per run, and the
            # sampler's power-of-two prompt buckets bound the prompt shapes.
            batch = [prompts[i] for i in idx] + [prompts[idx[-1]]] * (rows - len(idx))
            res = generator.generate(params, batch, gen.max_new_tokens, strategy,
                                     stop_ids=tok.stop_ids, n=gen.n, seed=gen.seed + b)
            keep(idx, res)
            bar.update(len(idx) * gen.n)
    bar.close()
    return out
