"""A GGUF file (llama.cpp's format, e.g. a Q4_1-quantized Llama) -> a plain HF directory.

Dequantization is transformers' own (`from_pretrained(..., gguf_file=...)`, which needs the
`gguf` package; install the `gguf` extra). transformers refuses to `save_pretrained` a model it
loaded from GGUF, so the dequantized tensors are written here: config.json, model.safetensors in
the requested dtype (a tied `lm_head.weight` is dropped, as HF does) and the tokenizer files
(with the GGUF's chat template). `execverify import-hf --gguf` then imports that directory.
"""

from __future__ import annotations

import json
from pathlib import Path

DTYPES = ("float32", "bfloat16")


def gguf_to_hf_dir(gguf_file: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Dequantizes `gguf_file` into the HF directory `out_dir` (created); returns it."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    src = Path(gguf_file)
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {src} does not exist")
    try:
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(f"reading GGUF needs torch and transformers ({exc}); "
                          "pip install 'execverify-jax[gguf]'") from None
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch_dtype)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    tensors = {k: v.detach().to(torch_dtype).contiguous() for k, v in model.state_dict().items()
               if not (tied and k == "lm_head.weight")}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the written weights are plain floats
    config["torch_dtype"] = dtype
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    tok.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    return out
