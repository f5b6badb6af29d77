"""ModelConfig: the frozen, hashable architecture description of a Qwen2/Llama decoder.

Built from a Hugging Face `config.json` dict (`from_hf_config`), written back with `to_hf_config`,
or taken from a preset (`tiny`, `qwen2p5_0p5b`, `qwen2p5_coder_7b`). Hashable so it can be a
static jit argument. Dtypes are strings ("float32", "bfloat16") to stay hashable and JSON-able.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

SUPPORTED_ARCHITECTURES = {
    "qwen2": "Qwen2ForCausalLM",
    "llama": "LlamaForCausalLM",
}
SUPPORTED_ROPE_TYPES = ("default", "llama3")
DTYPES = ("float32", "bfloat16", "float16")
# Inference numerics by name (CLI --dtype): ModelConfig overrides.
INFERENCE_NUMERICS: dict[str, dict[str, str | None]] = {
    "float32": {"param_dtype": "float32", "dtype": "float32", "matmul_dtype": None},
    "bfloat16": {"param_dtype": "bfloat16", "dtype": "bfloat16", "matmul_dtype": None},
    # bf16 weights and matmul inputs, fp32 activations/accumulation/attention: the fast CPU mode
    "bf16-matmul": {"param_dtype": "bfloat16", "dtype": "float32", "matmul_dtype": "bfloat16"},
}


def inference_numerics(name: str, backend: str) -> dict[str, str | None]:
    """ModelConfig overrides for a --dtype name; "auto" = float32 on CPU, bfloat16 elsewhere."""
    if name == "auto":
        name = "float32" if backend == "cpu" else "bfloat16"
    if name not in INFERENCE_NUMERICS:
        raise ValueError(f"--dtype {name!r}: expected auto or one of {sorted(INFERENCE_NUMERICS)}")
    return dict(INFERENCE_NUMERICS[name])


# jax.checkpoint policies by name; "offload_dots" keeps weight matmul outputs in pinned host memory.
REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable", "offload_dots")
# "auto" picks per backend at trace time: cudnn on GPU (bf16/fp16), splash on TPU, chunked elsewhere.
ATTENTION_IMPLS = ("auto", "xla", "chunked", "cudnn", "splash")


class UnsupportedModelError(ValueError):
    """The HF config describes a model this implementation cannot run; names the file and field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder architecture + numerics (D width, F mlp, N q heads, K kv heads, H head dim)."""

    vocab_size: int  # V
    hidden_size: int  # D
    intermediate_size: int  # F
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    model_type: str = "qwen2"  # "qwen2" | "llama": only decides the exported architecture name
    rope_theta: float = 10000.0
    rope_type: str = "default"  # "default" | "llama3"
    rope_factor: float = 1.0  # llama3 scaling parameters (ignored for "default")
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_positions: int = 8192
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    qkv_bias: bool = True  # Qwen2: q/k/v have biases
    o_bias: bool = False  # Llama attention_bias=True also biases o_proj
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    param_dtype: str = "float32"  # storage dtype of parameters
    dtype: str = "float32"  # compute dtype of activations/matmuls (softmax/norms run in fp32)
    # Inputs of the weight matmuls (projections, MLP, lm head), accumulated and returned in
    # `dtype`; None = `dtype`. "bfloat16" with fp32 `dtype` and bf16 params is the fast CPU
    # sampling mode: half the weight bytes, fp32 everywhere else (docs/MODEL.md).
    matmul_dtype: str | None = None
    remat: bool = False  # rematerialise each block in the backward pass (memory for compute)
    # What a rematerialised block keeps from its forward (REMAT_POLICIES, MaxText's names).
    remat_policy: str = "nothing_saveable"
    # Full-sequence layers run as one lax.scan over the stacked [L, ...] parameters (compile
    # time independent of depth); False unrolls them in Python (same parameters, same numbers).
    scan_layers: bool = True
    # Full-sequence attention (training forward, log-probs, prefill); see ATTENTION_IMPLS.
    attention: str = "auto"
    attention_chunk: int = 512  # query/key block of the "chunked" implementation

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim!r}")
        if self.rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(f"rope_type {self.rope_type!r} not in {SUPPORTED_ROPE_TYPES}")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"ModelConfig.{name} {getattr(self, name)!r} not in {DTYPES}")
        if self.matmul_dtype is not None and self.matmul_dtype not in DTYPES:
            raise ValueError(f"ModelConfig.matmul_dtype {self.matmul_dtype!r} not in {DTYPES} (or null)")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"ModelConfig.remat_policy {self.remat_policy!r} not in {REMAT_POLICIES}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"ModelConfig.attention {self.attention!r} not in {ATTENTION_IMPLS}")
        if self.attention_chunk <= 0:
            raise ValueError(f"ModelConfig.attention_chunk must be positive, got {self.attention_chunk!r}")
        if self.model_type not in SUPPORTED_ARCHITECTURES:
            raise ValueError(f"model_type {self.model_type!r} not in {sorted(SUPPORTED_ARCHITECTURES)}")

    # ---- derived -----------------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        """R = N // K query heads per kv head (GQA)."""
        return self.num_heads // self.num_kv_heads

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with fields changed (e.g. dtype="bfloat16" for sampling)."""
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        D, F, N, K, H, V = (self.hidden_size, self.intermediate_size, self.num_heads,
                            self.num_kv_heads, self.head_dim, self.vocab_size)
        attn = D * N * H + 2 * D * K * H + N * H * D
        if self.qkv_bias:
            attn += N * H + 2 * K * H
        if self.o_bias:
            attn += D
        per_layer = attn + 3 * D * F + 2 * D
        return self.num_layers * per_layer + V * D * (1 if self.tie_word_embeddings else 2) + D

    # ---- JSON --------------------------------------------------------------------------------
    def to_json_dict(self) -> dict:
        """Plain dict (round-trips through `from_json_dict`); stored next to checkpoints."""
        d = dataclasses.asdict(self)
        if isinstance(self.eos_token_id, tuple):
            d["eos_token_id"] = list(self.eos_token_id)
        return d

    @classmethod
    def from_json_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of `to_json_dict`; unknown keys are errors naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig key {unknown[0]!r} (value {d[unknown[0]]!r})")
        d = dict(d)
        if isinstance(d.get("eos_token_id"), list):
            d["eos_token_id"] = tuple(d["eos_token_id"])
        return cls(**d)

    # ---- Hugging Face ------------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, hf: dict, source: str = "config.json", **overrides: Any) -> "ModelConfig":
        """Reads a HF Qwen2/Llama `config.json` dict (transformers 4 or 5 layout).

        `source` names the file in error messages. `overrides` set numerics (dtype, remat...).
        """
        def need(key: str) -> Any:
            if key not in hf:
                raise UnsupportedModelError(f"{source}: missing required field {key!r}")
            return hf[key]

        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_ARCHITECTURES:
            archs = hf.get("architectures")
            raise UnsupportedModelError(
                f"{source}: field 'model_type' is {model_type!r} (architectures={archs!r}); "
                f"supported: {sorted(SUPPORTED_ARCHITECTURES)}")
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedModelError(f"{source}: field 'hidden_act' is {act!r}; only 'silu' is supported")
        if hf.get("use_sliding_window"):
            raise UnsupportedModelError(f"{source}: field 'use_sliding_window' is true; sliding-window "
                                        "attention is not supported")
        if hf.get("mlp_bias"):
            raise UnsupportedModelError(f"{source}: field 'mlp_bias' is true; MLP biases are not supported")
        # transformers 5 writes rope_parameters (holding rope_theta); 4.x writes rope_theta + rope_scaling.
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
        rope_type = rope.get("rope_type", rope.get("type", "default")) or "default"
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise UnsupportedModelError(f"{source}: field 'rope_parameters.rope_type' is {rope_type!r}; "
                                        f"supported: {list(SUPPORTED_ROPE_TYPES)}")
        D = int(need("hidden_size"))
        N = int(need("num_attention_heads"))
        K = int(hf.get("num_key_value_heads") or N)
        H = int(hf.get("head_dim") or D // N)
        eos = hf.get("eos_token_id")
        if model_type == "qwen2":
            qkv_bias, o_bias = True, False
        else:
            qkv_bias = o_bias = bool(hf.get("attention_bias", False))
        kwargs: dict[str, Any] = dict(
            vocab_size=int(need("vocab_size")), hidden_size=D,
            intermediate_size=int(need("intermediate_size")),
            num_layers=int(need("num_hidden_layers")), num_heads=N, num_kv_heads=K, head_dim=H,
            model_type=model_type, rope_theta=theta, rope_type=rope_type,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=qkv_bias, o_bias=o_bias,
            max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
            pad_token_id=hf.get("pad_token_id"),
        )
        if rope_type == "llama3":
            kwargs.update(
                rope_factor=float(rope["factor"]),
                rope_low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
                rope_high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
                rope_original_max_positions=int(rope["original_max_position_embeddings"]))
        kwargs.update(overrides)
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise UnsupportedModelError(f"{source}: {exc}") from None

    def to_hf_config(self, torch_dtype: str = "float32") -> dict:
        """A transformers-5 style `config.json` dict that `AutoConfig` reads back to this config."""
        rope: dict[str, Any] = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        if self.rope_type == "llama3":
            rope.update(factor=self.rope_factor, low_freq_factor=self.rope_low_freq_factor,
                        high_freq_factor=self.rope_high_freq_factor,
                        original_max_position_embeddings=self.rope_original_max_positions)
        d: dict[str, Any] = {
            "architectures": [SUPPORTED_ARCHITECTURES[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_parameters": rope,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "use_cache": True,
            "dtype": torch_dtype,
        }
        if self.model_type == "qwen2":
            if self.o_bias or not self.qkv_bias:
                raise ValueError("qwen2 export requires qkv_bias=True and o_bias=False")
            d.update(use_sliding_window=False, sliding_window=None, attention_dropout=0.0)
        else:
            if self.qkv_bias != self.o_bias:
                raise ValueError("llama export requires qkv_bias == o_bias (HF attention_bias)")
            d.update(attention_bias=self.qkv_bias, mlp_bias=False, attention_dropout=0.0)
        return d

    # ---- presets -----------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw: Any) -> "ModelConfig":
        """A test-sized Qwen2-style model (D=64, L=2, V=512)."""
        base = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=2048)
        base.update(kw)
        return cls(**base)

    @classmethod
    def _qwen2p5(cls, shape: dict[str, Any], kw: dict[str, Any]) -> "ModelConfig":
        """A Qwen2.5-family shape with what the family shares (RoPE base, context, token ids)."""
        base = dict(rope_theta=1000000.0, max_position_embeddings=32768, eos_token_id=151643,
                    bos_token_id=151643, **shape)
        base.update(kw)
        return cls(**base)

    @classmethod
    def qwen2p5_0p5b(cls, **kw: Any) -> "ModelConfig":
        """Qwen2.5-0.5B(-Coder) shape: D=896, L=24, N=14, K=2, F=4864, V=151936, tied."""
        return cls._qwen2p5(dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24,
                                 num_heads=14, num_kv_heads=2, head_dim=64, tie_word_embeddings=True), kw)

    qwen2p5_coder_0p5b = qwen2p5_0p5b

    @classmethod
    def qwen2p5_1p5b(cls, **kw: Any) -> "ModelConfig":
        """Qwen2.5-1.5B(-Coder) shape: D=1536, L=28, N=12, K=2, F=8960, V=151936, tied."""
        return cls._qwen2p5(dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_layers=28,
                                 num_heads=12, num_kv_heads=2, head_dim=128, tie_word_embeddings=True), kw)

    qwen2p5_coder_1p5b = qwen2p5_1p5b

    @classmethod
    def qwen2p5_coder_7b(cls, **kw: Any) -> "ModelConfig":
        """Qwen2.5-Coder-7B shape: D=3584, L=28, N=28, K=4, F=18944, V=152064, untied."""
        return cls._qwen2p5(dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28,
                                 num_heads=28, num_kv_heads=4, head_dim=128, tie_word_embeddings=False), kw)

    @classmethod
    def preset(cls, name: str, **kw: Any) -> "ModelConfig":
        """A preset by name: tiny | qwen2p5_0p5b | qwen2p5_coder_0p5b | qwen2p5_1p5b |
        qwen2p5_coder_1p5b | qwen2p5_coder_7b."""
        presets = {"tiny": cls.tiny, "qwen2p5_0p5b": cls.qwen2p5_0p5b,
                   "qwen2p5_coder_0p5b": cls.qwen2p5_coder_0p5b, "qwen2p5_1p5b": cls.qwen2p5_1p5b,
                   "qwen2p5_coder_1p5b": cls.qwen2p5_coder_1p5b, "qwen2p5_coder_7b": cls.qwen2p5_coder_7b}
        if name not in presets:
            raise ValueError(f"unknown model preset {name!r}; known: {sorted(presets)}")
        return presets[name](**kw)


def load_hf_config(hf_dir: str | Path, **overrides: Any) -> ModelConfig:
    """Reads `<hf_dir>/config.json` into a ModelConfig (errors name the file and field)."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json in the Hugging Face directory {hf_dir}")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UnsupportedModelError(f"{path}: not valid JSON ({exc})") from None
    return ModelConfig.from_hf_config(hf, source=str(path), **overrides)
