"""HF import/export round trips, Orbax checkpoints, and clear errors for bad checkpoint dirs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from execverify_jax.model import sharding as shd
from execverify_jax.model.checkpoint import load_any, restore_params, save_params
from execverify_jax.model.config import ModelConfig, UnsupportedModelError
from execverify_jax.model.hf_export import save_hf
from execverify_jax.model.hf_import import CheckpointError, load_hf_state
from execverify_jax.model.hf_mapping import TABLE, from_hf, hf_to_ours, ours_to_hf, read_block, to_hf
from execverify_jax.model.params import flat_params

torch = pytest.importorskip("torch")  # HF import/export round trips load the models in transformers
transformers = pytest.importorskip("transformers")


def _arrays(state) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.get_value()) for k, v in flat_params(state).items()}


def _assert_bit_exact(a, b):
    a, b = _arrays(a), _arrays(b)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_mapping_table_is_invertible():
    for hf, ours, layout in TABLE:
        stacked = "{0}" in hf
        assert hf_to_ours(hf.format(3)) == (ours, layout, 3 if stacked else None)
        assert ours_to_hf(ours) == (hf, layout)
    x = np.arange(4 * 3 * 5).reshape(4, 3, 5).astype(np.float32)  # wq-like (D, N, H)
    layout = ((1, 2), (0,))
    h = to_hf(x, layout)
    assert h.shape == (15, 4)
    np.testing.assert_array_equal(from_hf(h, x.shape, layout), x)
    # Reading a shard reads the right block, whatever the slices.
    idx = (slice(1, 3), slice(0, 2), slice(2, 5))
    np.testing.assert_array_equal(read_block(lambda s: h[s], x.shape, layout, idx), x[idx])


@pytest.mark.parametrize("family", ["qwen", "llama"])
def test_import_export_import_bit_exact_and_loads_in_transformers(family, request, tmp_path):
    hf_dir = request.getfixturevalue(f"{family}_dir")
    ref_model = request.getfixturevalue(f"{family}_torch")
    cfg, _, state = load_hf_state(hf_dir)
    out = save_hf(cfg, state, tmp_path / "out", dtype="float32", max_shard_bytes=60_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    cfg2, _, state2 = load_hf_state(out)
    assert cfg2 == cfg
    _assert_bit_exact(state, state2)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    toks = torch.tensor(np.random.RandomState(0).randint(0, cfg.vocab_size, (2, 12)))
    with torch.no_grad():
        np.testing.assert_array_equal(model(toks).logits.numpy(), ref_model(toks).logits.numpy())


def test_bf16_export_and_tokenizer_files(qwen_dir, bpe_dir, tmp_path):
    cfg, _, state = load_hf_state(qwen_dir)
    out = save_hf(cfg, state, tmp_path / "bf16", dtype="bf16", tokenizer_dir=bpe_dir)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    model, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    _, _, back = load_hf_state(out)
    assert flat_params(back)["embedding"].get_value().dtype == np.float32  # param_dtype default
    np.testing.assert_allclose(_arrays(back)["embedding"], _arrays(state)["embedding"], rtol=1e-2, atol=1e-3)


def test_orbax_round_trip_sharded(qwen_dir, tmp_path):
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    cfg, _, state = load_hf_state(qwen_dir, mesh, shd.TRAIN_RULES)
    save_params(tmp_path / "ckpt", cfg, state)
    cfg2, _, state2 = restore_params(tmp_path / "ckpt", mesh, shd.TRAIN_RULES)
    assert cfg2 == cfg
    _assert_bit_exact(state, state2)
    wq = flat_params(state2)["layers.attn.wq"].get_value()
    assert wq.sharding.spec == flat_params(state)["layers.attn.wq"].get_value().sharding.spec
    cfg3, _, state3 = load_any(tmp_path / "ckpt", param_dtype="bfloat16")
    assert cfg3.param_dtype == "bfloat16"
    assert flat_params(state3)["embedding"].get_value().dtype == np.dtype("bfloat16")


def test_per_layer_orbax_checkpoint_is_converted_to_stacked(qwen_dir, tmp_path):
    """A checkpoint of the earlier per-layer layout ({"layers": {"0": ...}}) restores into the
    stacked layout, bit-exact and on the requested shards."""
    import orbax.checkpoint as ocp

    from execverify_jax.model.checkpoint import CONFIG_NAME, PARAMS_NAME, _nested
    cfg, _, state = load_hf_state(qwen_dir)
    old = {}
    for name, arr in _arrays(state).items():
        if name.startswith("layers."):
            for i in range(cfg.num_layers):
                old[f"layers.{i}.{name[len('layers.'):]}"] = arr[i]
        else:
            old[name] = arr
    ckpt = ocp.StandardCheckpointer()
    ckpt.save((tmp_path / "old" / PARAMS_NAME).absolute(), _nested(old))
    ckpt.wait_until_finished()
    (tmp_path / "old" / CONFIG_NAME).write_text(json.dumps(cfg.to_json_dict()))
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    _, _, restored = restore_params(tmp_path / "old", mesh, shd.TRAIN_RULES)
    _assert_bit_exact(state, restored)
    wq = flat_params(restored)["layers.attn.wq"].get_value()
    assert wq.shape[0] == cfg.num_layers and len(wq.sharding.device_set) == 8


def test_missing_shard_names_the_file(qwen_dir, tmp_path):
    cfg, _, state = load_hf_state(qwen_dir)
    out = save_hf(cfg, state, tmp_path / "sharded", dtype="float32", max_shard_bytes=60_000)
    victim = sorted(out.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=victim.name):
        load_hf_state(out)


def test_missing_and_unexpected_tensors(qwen_dir, tmp_path):
    from safetensors.numpy import load_file, save_file
    d = tmp_path / "broken"
    shutil.copytree(qwen_dir, d)
    tensors = load_file(d / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="model.layers.1.mlp.up_proj.weight"):
        load_hf_state(d)
    tensors["model.layers.1.mlp.up_proj.weight"] = np.zeros((128, 64), np.float32)
    tensors["model.layers.9.mlp.up_proj.weight"] = np.zeros((128, 64), np.float32)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="unexpected tensor.*layers.9"):
        load_hf_state(d)
    del tensors["model.layers.9.mlp.up_proj.weight"]
    tensors["model.layers.1.mlp.up_proj.weight"] = np.zeros((100, 64), np.float32)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"up_proj.weight.*\(100, 64\).*\(128, 64\)"):
        load_hf_state(d)


def test_unsupported_architecture_names_file_and_field(qwen_dir, tmp_path):
    d = tmp_path / "gpt2"
    shutil.copytree(qwen_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match=r"config\.json.*'model_type'.*gpt2"):
        load_hf_state(d)
    cfg["model_type"] = "qwen2"
    cfg["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="rope_type.*yarn"):
        load_hf_state(d)
    with pytest.raises(FileNotFoundError, match="neither a model checkpoint"):
        load_any(tmp_path / "nothing")


def test_config_round_trip_and_presets():
    for name in ("tiny", "qwen2p5_0p5b", "qwen2p5_1p5b", "qwen2p5_coder_7b"):
        cfg = ModelConfig.preset(name)
        assert ModelConfig.from_hf_config(cfg.to_hf_config()) == cfg
        assert ModelConfig.from_json_dict(json.loads(json.dumps(cfg.to_json_dict()))) == cfg
    # 0.5B-shaped preset really has Qwen2.5-0.5B's parameter count.
    assert 494_000_000 < ModelConfig.qwen2p5_0p5b().num_params() < 494_100_000
    assert 1_543_000_000 < ModelConfig.qwen2p5_1p5b().num_params() < 1_544_000_000  # Qwen2.5-1.5B's
    with pytest.raises(ValueError, match="unknown ModelConfig key 'bogus'"):
        ModelConfig.from_json_dict({**ModelConfig.tiny().to_json_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelConfig.tiny(num_heads=4, num_kv_heads=3)
    # transformers-4 style config (top-level rope_theta) is read too.
    hf4 = {k: v for k, v in ModelConfig.tiny().to_hf_config().items() if k != "rope_parameters"}
    assert ModelConfig.from_hf_config({**hf4, "rope_theta": 1234.0}).rope_theta == 1234.0


def test_param_count_matches_transformers(qwen_torch, llama_torch, qwen_dir, llama_dir):
    from execverify_jax.model.config import load_hf_config
    assert load_hf_config(qwen_dir).num_params() == sum(p.numel() for p in qwen_torch.parameters())
    assert load_hf_config(llama_dir).num_params() == sum(p.numel() for p in llama_torch.parameters())
