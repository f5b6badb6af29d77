"""Stepwise credit on the host: answer-line characters -> completion tokens -> per-token advantages."""

from __future__ import annotations


import math

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
    np.testing.assert_array_equal(ends, [1, 1, 2, 3])  # 200 alone writes no character yet
    # a text that only prefix decoding reproduces (decoding depends on the whole prefix)
    odd = lambda ids: "x" * len(ids) ** 2  # noqa: E731
    np.testing.assert_array_equal(token_char_ends([5, 6, 7], odd), [1, 4, 9])


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


def test_assign_advantages_stepwise_and_shaping_in_the_loop_path():
    """`update.assign_advantages` (what the trainer calls) on a scored group of two samples."""
    from execverify_jax.config_loader import load
    from execverify_jax.rewards.result import RewardResult
    from execverify_jax.rl.grpo.rollout import Rollout
    from execverify_jax.rl.grpo.update import assign_advantages
    from execverify_jax.rl.run_config import TrainConfig
    from tests.rl.test_train_toy import REPO

    texts = ["<answer>\nA\nQ\n</answer>", "<answer>\nA\nW\n</answer>"]
    ids = [TOK.encode(t) for t in texts]
    C = max(map(len, ids))
    tokens_BC = np.zeros((2, C), np.int32)
    for i, t in enumerate(ids):
        tokens_BC[i, :len(t)] = t
    results = {}
    for i, (t, q_ok) in enumerate(zip(texts, (1.0, 0.0))):
        a, q = t.index("A"), t.index("\n", t.index("A")) + 1
        results[i] = RewardResult(1.0 + q_ok + 0.2, "io_mixed", True, "", {
            "shaping": 0.2, "step_rewards": [1.0, q_ok], "step_spans": [[a, a + 1, 1], [q, q + 1, 2]]})
    roll = Rollout(prompts=[[5]], records=[{}], tokens_BC=tokens_BC, len_B=np.asarray([len(t) for t in ids]),
                   stopped_B=np.ones(2, bool), futures=[], t_gen=0.0, results=results)
    reward_B = np.asarray([r.reward for r in results.values()], np.float32)
    for credit in ("outcome", "stepwise"):
        cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
                   ["grpo.group_size=2", "grpo.prompts_per_step=2", f"grpo.credit={credit}"])
        host = {"mask_BC": np.ones((2, C), np.float32)}
        assign_advantages(host, roll, reward_B, np.zeros((2, C)), None, cfg, TOK.decode)
        h = 0.5 / (math.sqrt(0.5) + 1e-6)
        np.testing.assert_allclose(host["adv_B"], [h, -h], rtol=1e-5)  # the shaping cancels exactly
        if credit == "outcome":
            assert "adv_BC" not in host
            continue
        adv_BC = host["adv_BC"]
        for i in range(2):
            seg = {c: adv_BC[i, k] for k, c in enumerate(texts[i]) if c in "AQW"}
            assert seg["A"] == 0.0  # both outputs right: the assertion line gets no push
            assert seg.get("Q", seg.get("W")) == np.float32(host["adv_B"][i])  # q: same shape as the sequence here
            assert adv_BC[i, 0] == np.float32(host["adv_B"][i])  # "<" of <answer>: the sequence's


def test_stepwise_loop_without_steps_trains_exactly_like_outcome(tmp_path):
    """The trainer path with `grpo.credit: stepwise` (per-token adv_BC in the jitted update): on
    the toy task, which has no answer lines, it must reproduce the outcome run step for step."""
    from execverify_jax.config_loader import load
    from execverify_jax.rl.grpo.trainer import train
    from execverify_jax.rl.infra.metrics import read_metrics
    from execverify_jax.rl.run_config import TrainConfig
    from tests.rl.test_train_toy import REPO

    rows = {}
    for credit in ("outcome", "stepwise"):
        cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
                   ["max_steps=2", "tensorboard=false", "save_every=100", "mesh={data: 1, fsdp: 1, tensor: 1}",
                    f"grpo.credit={credit}"])
        train(cfg, tmp_path / credit)
        rows[credit] = read_metrics(tmp_path / credit)
    for a, b in zip(rows["outcome"], rows["stepwise"]):
        for key in ("reward/mean", "train/loss", "train/grad_norm", "train/pg_loss"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-7, err_msg=key)  # fusion order only
