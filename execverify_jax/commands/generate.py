"""`execverify generate`: generate text from a checkpoint or HF directory (the `engine` key picks
the continuous rollout engine, the default, or the static sampler; model/generation.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.shared_config import DTYPES, ENGINES, GenerationConfig

NAME = "generate"
HELP = "generate text with a checkpoint or HF directory"


@dataclass(frozen=True)
class GenerateOptions(GenerationConfig):
    """`execverify generate` options: the shared GenerationConfig (flat keys: temperature, n, mesh,
    ...; here 256 new tokens at temperature 1 by default; batch_size is unused, there is one
    prompt) plus what to load and the prompt."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    model: str = field(kw_only=True)  # checkpoint directory (CKPT) or HF directory
    prompt: str = field(kw_only=True)  # user message (chat-formatted unless raw_prompts)
    tokenizer: str | None = field(default=None, kw_only=True)  # default: the model directory


# argparse dest -> config key; --greedy is temperature=0 (applied after --temperature).
FLAGS = {"model": "model", "prompt": "prompt", "tokenizer": "tokenizer", "max_new_tokens": "max_new_tokens",
         "temperature": "temperature", "greedy": "temperature", "top_p": "top_p", "top_k": "top_k", "n": "n",
         "seed": "seed", "raw": "raw_prompts", "dtype": "dtype", "mesh": "mesh", "engine": "engine"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports). Defaults are GenerateOptions'."""
    add_config_args(parser, example="temperature=0.7")
    parser.add_argument("--model", help="checkpoint directory (CKPT) or HF directory; required")
    parser.add_argument("--prompt", help="user message (chat-formatted unless --raw); required")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer dir or .model (default: the --model directory)")
    parser.add_argument("--max-new-tokens", type=int, help="default 256")
    parser.add_argument("--greedy", action="store_const", const=0.0, default=None,
                        help="argmax decoding (= --temperature 0)")
    parser.add_argument("--temperature", type=float, help="default 1; 0 means greedy")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--n", type=int, help="samples to draw (default 1)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--raw", action="store_true", default=None, help="encode the prompt as-is, no chat template")
    parser.add_argument("--dtype", choices=list(DTYPES),
                        help="weights + compute dtype (auto, the default: float32 on CPU, bfloat16 otherwise; "
                             "bf16-matmul: bf16 weights and matmul inputs, fp32 elsewhere, fast on CPU)")
    parser.add_argument("--mesh", help="mesh axes, e.g. 'data=1,tensor=8' (default data=-1)")
    parser.add_argument("--engine", choices=list(ENGINES),
                        help="continuous (default: the slot engine) or static (the batched sampler); "
                             "same greedy output, different samples for a seed")


def run(args: argparse.Namespace) -> int:
    """Loads model + tokenizer, checks they match, samples and prints the decoded text."""
    import dataclasses
    from pathlib import Path

    import jax

    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.config import inference_numerics
    from execverify_jax.model.generation import make_generator
    from execverify_jax.model.strategies import make_strategy

    opts = load_options(GenerateOptions, args, "generate", FLAGS)
    if opts is None:
        return 2
    tok = Tokenizer(opts.tokenizer or opts.model)
    numerics = inference_numerics(opts.dtype, jax.default_backend())
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(opts.mesh)
    cfg, graphdef, params = load_any(opts.model, mesh, shd.SAMPLE_RULES, **numerics)
    source = str(Path(opts.model) / ("config.json" if (Path(opts.model) / "config.json").is_file()
                                     else "model_config.json"))
    tok.check_model_vocab(cfg.vocab_size, source)
    ids = tok.encode(opts.prompt) if opts.raw_prompts else tok.apply_chat([{"role": "user", "content": opts.prompt}])
    # No more engine slots than the n rows: each slot's cache is allocated up front.
    knobs = dataclasses.replace(opts, slots=min(opts.slots, opts.n))
    generator = make_generator(cfg, graphdef, knobs, mesh=mesh, pad_id=tok.pad_id)
    strategy = make_strategy(opts.greedy, opts.temperature, opts.top_k, opts.top_p)
    out = generator.generate(params, [ids], opts.max_new_tokens, strategy, stop_ids=tok.stop_ids,
                             n=opts.n, seed=opts.seed)
    for i in range(len(out.lengths_B)):
        text = tok.decode(out.tokens_BC[i, : out.lengths_B[i]])
        if opts.n > 1:
            print(f"--- sample {i} ({out.lengths_B[i]} tokens) ---")
        print(text)
    return 0
