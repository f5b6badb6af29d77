"""THE table between Hugging Face Qwen2/Llama tensor names and our parameter paths (both ways).

Each row: (HF key template, our path template, hf_layout). `{0}` is the layer index.
`hf_layout` says how our array's dims make up the HF tensor: a tuple with one entry per HF dim,
each entry the group of our dims (in order) flattened into that HF dim. Examples:

  q_proj.weight  HF (N*H, D)  ours wq (D, N, H)  layout ((1, 2), (0,))   transpose + split heads
  o_proj.weight  HF (D, N*H)  ours wo (N, H, D)  layout ((2,), (0, 1))
  q_proj.bias    HF (N*H,)    ours bq (N, H)     layout ((0, 1),)
  gate_proj      HF (F, D)    ours (D, F)        layout ((1,), (0,))      torch Linear is (out, in)

Import: hf -> reshape to the grouped dims -> transpose to our order. Export: the inverse.
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
    (_L + "input_layernorm.weight", "layers.{0}.attn_norm.scale", ((0,),)),
    (_L + "self_attn.q_proj.weight", "layers.{0}.attn.wq", ((1, 2), (0,))),
    (_L + "self_attn.k_proj.weight", "layers.{0}.attn.wk", ((1, 2), (0,))),
    (_L + "self_attn.v_proj.weight", "layers.{0}.attn.wv", ((1, 2), (0,))),
    (_L + "self_attn.o_proj.weight", "layers.{0}.attn.wo", ((2,), (0, 1))),
    (_L + "self_attn.q_proj.bias", "layers.{0}.attn.bq", ((0, 1),)),
    (_L + "self_attn.k_proj.bias", "layers.{0}.attn.bk", ((0, 1),)),
    (_L + "self_attn.v_proj.bias", "layers.{0}.attn.bv", ((0, 1),)),
    (_L + "self_attn.o_proj.bias", "layers.{0}.attn.bo", ((0,),)),
    (_L + "post_attention_layernorm.weight", "layers.{0}.mlp_norm.scale", ((0,),)),
    (_L + "mlp.gate_proj.weight", "layers.{0}.mlp.w_gate", ((1,), (0,))),
    (_L + "mlp.up_proj.weight", "layers.{0}.mlp.w_up", ((1,), (0,))),
    (_L + "mlp.down_proj.weight", "layers.{0}.mlp.w_down", ((1,), (0,))),
    ("model.norm.weight", "final_norm.scale", ((0,),)),
    ("lm_head.weight", "lm_head", ((1,), (0,))),
)
# HF tensors we knowingly skip (non-persistent buffers some old checkpoints contain).
IGNORED_HF = (re.compile(r".*rotary_emb\.inv_freq$"),)


def _regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{0}"), r"(\d+)") + "$")


_HF_TO_OURS = [(_regex(hf), ours, layout) for hf, ours, layout in TABLE]
_OURS_TO_HF = [(_regex(ours), hf, layout) for hf, ours, layout in TABLE]


def hf_to_ours(hf_key: str) -> tuple[str, Layout] | None:
    """Our dotted path and layout for an HF key; None if the table has no row for it."""
    for rx, ours, layout in _HF_TO_OURS:
        m = rx.match(hf_key)
        if m:
            return ours.format(*m.groups()), layout
    return None


def ours_to_hf(path: str) -> tuple[str, Layout]:
    """HF key and layout for one of our dotted paths (every parameter has a row)."""
    for rx, hf, layout in _OURS_TO_HF:
        m = rx.match(path)
        if m:
            return hf.format(*m.groups()), layout
    raise KeyError(f"no HF name for parameter {path!r}")


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
