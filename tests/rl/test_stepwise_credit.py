"""Stepwise credit on the host: answer-line characters -> completion tokens -> per-token advantages."""

from __future__ import annotations


import numpy as np

from execverify_jax.rl.grpo.credit import stepwise_inputs, token_char_ends, token_segments


class Chars:
    """A toy tokenizer: id = a code point, except ids >= 1000 which stand for multi-char pieces
    and id 0, a special token that decodes to ""."""

    PIECES = {1000: "assert", 1001: "\n</answer>", 1002: "ab\ncd"}

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids) -> str:
        return "".join(self.PIECES.get(int(i), "" if int(i) == 0 else chr(int(i))) for i in ids)


TOK = Chars()


def test_char_ends_of_multi_char_and_special_tokens():
    ids = [ord("x"), 1000, 0, 1002]
    np.testing.assert_array_equal(token_char_ends(ids, TOK.decode), [1, 7, 7, 12])


def test_char_ends_fall_back_to_prefix_decoding():
    def decode(ids):  # two ids form one character only together (a split UTF-8 sequence)
        s = "".join(chr(i) for i in ids)
        return s.replace(chr(200) + chr(201), "é").replace(chr(200), "\ufffd").replace(chr(201), "\ufffd")
    ends = token_char_ends([ord("a"), 200, 201, ord("b")], decode)
    np.testing.assert_array_equal(ends, [1, 2, 2, 3])


def test_tokens_take_the_segment_of_the_line_they_write():
    text = "<reasoning>r</reasoning>\n<answer>\nassert f(1) == 2\n7; int\n</answer>"
    ids = TOK.encode(text)
    a = text.index("assert")
    b = text.index("7; int")
    spans = [[a, a + len("assert f(1) == 2"), 1], [b, b + 6, 2]]
    seg = token_segments(ids, spans, len(ids) + 3, TOK.decode)
    assert seg.shape == (len(ids) + 3,)
    assert "".join(c for c, s in zip(text, seg) if s == 1) == "assert f(1) == 2"
    assert "".join(c for c, s in zip(text, seg) if s == 2) == "7; int"
    assert (seg[len(ids):] == 0).all() and seg[:a].max() == 0
    # a multi-char token straddling a line start belongs to the line it writes into
    ids2 = TOK.encode("x") + [1002]  # "x" + "ab\ncd"
    seg2 = token_segments(ids2, [[4, 6, 3]], 2, TOK.decode)  # line "cd"
    np.testing.assert_array_equal(seg2, [0, 3])


def test_stepwise_inputs_fewer_and_more_lines_and_other_layouts():
    text = "<answer>\nL0\nL1\n</answer>"
    ids = TOK.encode(text)
    C = len(ids) + 2
    tokens_BC = np.zeros((3, C), np.int32)
    tokens_BC[:, :len(ids)] = ids
    len_B = np.full(3, len(ids))
    i0, i1 = text.index("L0"), text.index("L1")
    rows = {
        # asked 2 questions, wrote only the assertion and one answer: question 2 has no tokens
        0: {"step_rewards": [1.0, 1.0, 0.0], "step_spans": [[i0, i0 + 2, 1], [i1, i1 + 2, 2]]},
        # an oi row: no steps at all
        1: {"shaping": 0.2},
    }
    reward_BK, valid_BK, seg_BC = stepwise_inputs(rows, tokens_BC, len_B, TOK.decode)
    assert reward_BK.shape == (3, 3)
    np.testing.assert_array_equal(valid_BK, [[True] * 3, [False] * 3, [False] * 3])
    assert sorted(set(seg_BC[0].tolist())) == [0, 1, 2] and not seg_BC[1:].any()
    assert "".join(chr(t) for t, s in zip(tokens_BC[0], seg_BC[0]) if s == 2) == "L1"
