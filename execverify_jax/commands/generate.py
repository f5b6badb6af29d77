"""`execverify generate`: generate text from a checkpoint or HF directory with the KV-cache sampler."""

from __future__ import annotations

import argparse

NAME = "generate"
HELP = "generate text with a checkpoint or HF directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--model", required=True, help="checkpoint directory (CKPT) or HF directory")
    parser.add_argument("--prompt", required=True, help="user message (chat-formatted unless --raw)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer dir or .model (default: the --model directory)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--greedy", action="store_true", help="argmax decoding")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 means greedy")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--n", type=int, default=1, help="samples to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="encode the prompt as-is, no chat template")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "bf16-matmul"],
                        help="weights + compute dtype (auto: float32 on CPU, bfloat16 otherwise; "
                             "bf16-matmul: bf16 weights and matmul inputs, fp32 elsewhere, fast on CPU)")
    parser.add_argument("--mesh", default="data=-1", help="mesh axes, e.g. 'data=1,tensor=8'")


def run(args: argparse.Namespace) -> int:
    """Loads model + tokenizer, checks they match, samples and prints the decoded text."""
    from pathlib import Path

    import jax

    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.config import inference_numerics
    from execverify_jax.model.sampler import Sampler
    from execverify_jax.model.strategies import make_strategy

    tok = Tokenizer(args.tokenizer or args.model)
    numerics = inference_numerics(args.dtype, jax.default_backend())
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(shd.parse_mesh_spec(args.mesh))
    cfg, graphdef, params = load_any(args.model, mesh, shd.SAMPLE_RULES, **numerics)
    source = str(Path(args.model) / ("config.json" if (Path(args.model) / "config.json").is_file()
                                     else "model_config.json"))
    tok.check_model_vocab(cfg.vocab_size, source)
    ids = tok.encode(args.prompt) if args.raw else tok.apply_chat([{"role": "user", "content": args.prompt}])
    sampler = Sampler(cfg, graphdef, mesh=mesh, pad_id=tok.pad_id)
    strategy = make_strategy(args.greedy, args.temperature, args.top_k, args.top_p)
    out = sampler.generate(params, [ids], args.max_new_tokens, strategy, stop_ids=tok.stop_ids,
                           n=args.n, seed=args.seed)
    for i in range(len(out.lengths_B)):
        text = tok.decode(out.tokens_BC[i, : out.lengths_B[i]])
        if args.n > 1:
            print(f"--- sample {i} ({out.lengths_B[i]} tokens) ---")
        print(text)
    return 0
