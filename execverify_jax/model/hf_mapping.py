"""THE table between Hugging Face Qwen2/Llama tensor names and our parameter paths (both ways).

Each row: (HF key template, our path, hf_layout). `{0}` in the HF key is the layer index: such a
row is *stacked*, our parameter holds all L layers on a leading axis ([L, ...], see
transformer.Block) and HF tensor `model.layers.i....` is our `array[i]`.
`hf_layout` says how our (per-layer) array's dims make up the HF tensor: a tuple with one entry per HF dim,
each entry the group of our dims (in order) flattened into that HF dim. Examples:

  q_proj.weight  HF (N*H, D)  ours wq (D, N, H)  layout ((1, 2), (0,))   transpose + split heads
  o_proj.weight  HF (D, N*H)  ours wo (N, H, D)  layout ((2,), (0, 1))
  q_proj.bias    HF (N*H,)    ours bq (N, H)     layout ((0, 1),)
  gate_proj      HF (F, D)    ours (D, F)        layout ((1,), (0,))      torch Linear is (out, in)

Import: hf -> reshape to the grouped dims -> transpose to our order (-> stack the layers).
Export: the inverse, one layer at a time.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

Layout = tuple[tuple[int, ...], ...]

_L = r"model.layers.{0}."
TABLE: tuple[tuple[str, str, Layout], ...] = (
    ("model.embed_tokens.weight", "embedding", ((0,), (1,))),
    (_L + "input_layernorm.weight", "layers.attn_norm.scale", ((0,),)),
    (_L + "self_attn.q_proj.weight", "layers.attn.wq", ((1, 2), (0,))),
    (_L + "self_attn.k_proj.weight", "layers.attn.wk", ((1, 2), (0,))),
    (_L + "self_attn.v_proj.weight", "layers.attn.wv", ((1, 2), (0,))),
    (_L + "self_attn.o_proj.weight", "layers.attn.wo", ((2,), (0, 1))),
    (_L + "self_attn.q_proj.bias", "layers.attn.bq", ((0, 1),)),
    (_L + "self_attn.k_proj.bias", "layers.attn.bk", ((0, 1),)),
    (_L + "self_attn.v_proj.bias", "layers.attn.bv", ((0, 1),)),
    (_L + "self_attn.o_proj.bias", "layers.attn.bo", ((0,),)),
    (_L + "post_attention_layernorm.weight", "layers.mlp_norm.scale", ((0,),)),
    (_L + "mlp.gate_proj.weight", "layers.mlp.w_gate", ((1,), (0,))),
    (_L + "mlp.up_proj.weight", "layers.mlp.w_up", ((1,), (0,))),
    (_L + "mlp.down_proj.weight", "layers.mlp.w_down", ((1,), (0,))),
    ("model.norm.weight", "final_norm.scale", ((0,),)),
    ("lm_head.weight", "lm_head", ((1,), (0,))),
)
# HF tensors we knowingly skip (non-persistent buffers some old checkpoints contain).
IGNORED_HF = (re.compile(r".*rotary_emb\.inv_freq$"),)


def _regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{0}"), r"(\d+)") + "$")


_HF_TO_OURS = [(_regex(hf), ours, layout) for hf, ours, layout in TABLE]
_OURS_TO_HF = {ours: (hf, layout) for hf, ours, layout in TABLE}


def hf_to_ours(hf_key: str) -> tuple[str, Layout, int | None] | None:
    """(our dotted path, layout, layer index or None if not stacked) for an HF key; None if the
    table has no row for it."""
    for rx, ours, layout in _HF_TO_OURS:
        m = rx.match(hf_key)
        if m:
            return ours, layout, (int(m.group(1)) if m.groups() else None)
    return None


def ours_to_hf(path: str) -> tuple[str, Layout]:
    """(HF key template, layout) for one of our dotted paths; the template has `{0}` (the layer
    index) when the parameter is stacked (every parameter has a row)."""
    if path not in _OURS_TO_HF:
        raise KeyError(f"no HF name for parameter {path!r}")
    return _OURS_TO_HF[path]


def is_stacked(hf_template: str) -> bool:
    """Whether a row's parameter holds all layers on a leading axis."""
    return "{0}" in hf_template


def hf_keys(path: str, num_layers: int) -> list[str]:
    """The HF keys that make up our parameter: one per layer if stacked, else one."""
    template, _ = ours_to_hf(path)
    return [template.format(i) for i in range(num_layers)] if is_stacked(template) else [template]


def hf_shape(our_shape: Sequence[int], layout: Layout) -> tuple[int, ...]:
    """Shape of the HF tensor that holds an array of `our_shape`."""
    return tuple(math.prod(our_shape[d] for d in group) for group in layout)


def to_hf(x: np.ndarray, layout: Layout) -> np.ndarray:
    """Our array -> HF tensor layout (a transpose and a reshape)."""
    order = [d for group in layout for d in group]
    return np.ascontiguousarray(np.transpose(x, order).reshape(hf_shape(x.shape, layout)))


def from_hf(x: np.ndarray, our_shape: Sequence[int], layout: Layout) -> np.ndarray:
    """HF tensor -> our array (inverse of `to_hf`)."""
    order = [d for group in layout for d in group]
    grouped = x.reshape([our_shape[d] for d in order])
    return np.transpose(grouped, np.argsort(order))


def read_block(get_slice, our_shape: Sequence[int], layout: Layout,
               index: tuple[slice, ...]) -> np.ndarray:
    """Reads only the part of an HF tensor that backs `our_array[index]`.

    `get_slice(tuple_of_slices)` reads a rectangular block of the HF tensor (safetensors
    `safe_open(...).get_slice(name)[...]`). Within each HF dim's group, the leading dim's range
    maps to one contiguous HF range; trailing dims of the group are sliced after reading.
    """
    index = tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, our_shape))
    hf_slices, block_shape, post = [], [], []
    for group in layout:
        lead, rest = group[0], group[1:]
        inner = math.prod(our_shape[d] for d in rest)
        s = index[lead]
        hf_slices.append(slice(s.start * inner, s.stop * inner))
        block_shape += [s.stop - s.start] + [our_shape[d] for d in rest]
        post += [slice(None)] + [index[d] for d in rest]
    block = np.asarray(get_slice(tuple(hf_slices)))
    block = block.reshape(block_shape)[tuple(post)]
    order = [d for group in layout for d in group]
    return np.transpose(block, np.argsort(order))
