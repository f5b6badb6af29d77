"""Model fixtures. `tiny_jax` is built in JAX (tests/testing.py), so most model tests run without
torch; the HF fixtures (random transformers models saved to tmp dirs, no downloads) skip without
torch/transformers and serve only the HF import/export and parity tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from testing import tiny_model


def _hf():
    return pytest.importorskip("torch"), pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_jax():
    """The torch-free tiny model (non-zero biases, non-unit norms)."""
    return tiny_model(seed=0)

QWEN_KW = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
LLAMA_KW = dict(vocab_size=384, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                rope_theta=500000.0, max_position_embeddings=512,
                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16})


def make_qwen(path: Path, seed: int = 0):
    """A random Qwen2 (q/k/v biases made non-zero, untied head) saved with save_pretrained."""
    torch, transformers = _hf()
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**QWEN_KW)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.2)  # default init is zero, which would hide a bias bug
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    return model


def make_llama(path: Path, seed: int = 1):
    """A random Llama with tied embeddings and llama3 RoPE scaling."""
    torch, transformers = _hf()
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA_KW)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qwen")
    make_qwen(path)
    return path


@pytest.fixture(scope="session")
def qwen_torch(qwen_dir):
    torch, transformers = _hf()
    return transformers.AutoModelForCausalLM.from_pretrained(qwen_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llama")
    make_llama(path)
    return path


@pytest.fixture(scope="session")
def llama_torch(llama_dir):
    torch, transformers = _hf()
    return transformers.AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def qwen_jax(qwen_dir):
    from execverify_jax.model.hf_import import load_hf_model
    return load_hf_model(qwen_dir)
