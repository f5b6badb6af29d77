"""Our NNX decoder vs transformers (fp32): logits, padded batches, greedy generation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from execverify_jax.model.hf_import import load_hf_model
from execverify_jax.model.sampler import Sampler

torch = pytest.importorskip("torch")  # HF parity: the one place model tests need torch

TOL = 1e-4


def _torch_logits(model, tokens, mask):
    with torch.no_grad():
        return model(torch.tensor(tokens, dtype=torch.long),
                     attention_mask=torch.tensor(mask.astype(np.int64))).logits.numpy()


def _padded_batch(vocab: int, seed: int):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, vocab, (4, 24)).astype(np.int32)
    mask = np.ones_like(tokens, dtype=bool)
    mask[1, :5] = False  # left padding
    mask[2, :17] = False
    mask[3, 20:] = False  # right padding
    return tokens, mask


@pytest.mark.parametrize("family", ["qwen", "llama"])
def test_logits_match_transformers(family, request):
    hf_dir = request.getfixturevalue(f"{family}_dir")
    ref_model = request.getfixturevalue(f"{family}_torch")
    model = load_hf_model(hf_dir)
    tokens, mask = _padded_batch(model.cfg.vocab_size, seed=3)
    ref = _torch_logits(ref_model, tokens, mask)
    ours = np.asarray(jax.jit(lambda t, m: model(t, mask_BT=m))(jnp.asarray(tokens), jnp.asarray(mask)))
    # Padding positions carry no meaning in either implementation; compare real tokens.
    assert np.abs(ours - ref)[mask].max() < TOL
    # Unpadded rows also match with implicit all-ones mask.
    full = np.asarray(model(jnp.asarray(tokens[:1])))
    assert np.abs(full - _torch_logits(ref_model, tokens[:1], np.ones_like(mask[:1]))).max() < TOL


def test_config_fields_reach_the_model(llama_dir, qwen_dir):
    llama = load_hf_model(llama_dir)
    qwen = load_hf_model(qwen_dir)
    assert llama.cfg.tie_word_embeddings and not hasattr(llama, "lm_head")
    assert llama.cfg.rope_type == "llama3" and not llama.cfg.qkv_bias
    assert qwen.cfg.qkv_bias and not qwen.cfg.tie_word_embeddings and hasattr(qwen, "lm_head")


def test_remat_matches_plain(qwen_dir):
    plain = load_hf_model(qwen_dir)
    remat = load_hf_model(qwen_dir, remat=True)
    tokens, mask = _padded_batch(plain.cfg.vocab_size, seed=4)

    def loss(m, t):
        return jnp.sum(m(t, mask_BT=jnp.asarray(mask)) ** 2) * 1e-3

    from flax import nnx
    g1 = nnx.grad(loss)(plain, jnp.asarray(tokens))
    g2 = nnx.grad(loss)(remat, jnp.asarray(tokens))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_bf16_compute_is_close(qwen_dir, qwen_torch):
    model = load_hf_model(qwen_dir, dtype="bfloat16")  # fp32 params, bf16 compute (training setup)
    tokens, mask = _padded_batch(model.cfg.vocab_size, seed=5)
    out = np.asarray(model(jnp.asarray(tokens), mask_BT=jnp.asarray(mask)))
    ref = _torch_logits(qwen_torch, tokens, mask)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out - ref)[mask].max() < 0.05


@pytest.mark.parametrize("family", ["qwen", "llama"])
def test_bf16_matmul_sampling_mode_is_close_and_cache_consistent(family, request):
    """bf16 params + bf16 matmul inputs, fp32 everything else (the fast CPU sampling mode)."""
    hf_dir = request.getfixturevalue(f"{family}_dir")
    ref_model = request.getfixturevalue(f"{family}_torch")
    model = load_hf_model(hf_dir, param_dtype="bfloat16", matmul_dtype="bfloat16")
    assert model.cfg.dtype == "float32"
    tokens, mask = _padded_batch(model.cfg.vocab_size, seed=6)
    out = np.asarray(model(jnp.asarray(tokens), mask_BT=jnp.asarray(mask)))
    ref = _torch_logits(ref_model, tokens, mask)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    err = np.abs(out - ref)[mask].max()
    assert 1e-6 < err < 0.05  # really rounded to bf16 somewhere, yet close
    # the cached sampler in this mode agrees with the uncached forward of the same model
    sampler, params = Sampler.for_model(model)
    prompts = [list(map(int, tokens[0, :10])), list(map(int, tokens[1, :7]))]
    gen = sampler.generate(params, prompts, max_new_tokens=6)
    for i, p in enumerate(prompts):
        seq = p + gen.tokens_BC[i].tolist()
        logits = np.asarray(model(jnp.asarray([seq], jnp.int32)))[0]
        np.testing.assert_array_equal(logits[len(p) - 1:-1].argmax(-1), gen.tokens_BC[i])


@pytest.mark.parametrize("family", ["qwen", "llama"])
def test_greedy_generation_matches_transformers(family, request):
    """32 greedy tokens, token for token, for prompts of different lengths batched together."""
    hf_dir = request.getfixturevalue(f"{family}_dir")
    ref_model = request.getfixturevalue(f"{family}_torch")
    model = load_hf_model(hf_dir)
    sampler, params = Sampler.for_model(model)
    rng = np.random.RandomState(7)
    prompts = [list(rng.randint(0, model.cfg.vocab_size, n)) for n in (5, 12, 20)]
    out = sampler.generate(params, prompts, max_new_tokens=32)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            ref = ref_model.generate(torch.tensor([p]), max_new_tokens=32, min_new_tokens=32,
                                     do_sample=False)[0, len(p):].numpy()
        np.testing.assert_array_equal(out.tokens_BC[i], ref)
        assert out.lengths_B[i] == 32 and not out.stopped_B[i]
