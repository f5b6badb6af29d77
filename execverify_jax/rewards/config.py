"""`RewardConfig`: every knob of the stage-I and stage-II rewards, as one frozen dataclass.

Defaults reproduce the paper's reward values (docs/REWARDS.md lists where and why the grading
rules differ). Load it with `execverify_jax.config_loader.load(RewardConfig, path, ["x=y", ...])`; the
`execverify score --set reward.x=y` overrides land here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from execverify_jax.config_loader import ConfigError, check_choice, check_range


@dataclass(frozen=True)
class RewardConfig:
    """Reward options. Scores: io_mixed in {0} ∪ [1, 2] by default, oi in {0, 2}, codegen in [0, 1.05]."""

    # ---- parsing bounds (cheap rejection of pathological responses) ----
    max_response_chars: int = 200_000  # only the last this-many characters are searched for <answer>
    max_answer_chars: int = 50_000  # a longer <answer> span scores 0 (flag `too_long`)
    max_answer_lines: int = 64  # more non-empty answer lines than this score 0
    max_literal_chars: int = 20_000  # one literal (assert RHS, value) longer than this is rejected
    max_literal_nesting: int = 50  # bracket depth bound checked before ast.parse/literal_eval
    max_literal_nodes: int = 20_000  # AST node bound for one literal

    # ---- stage I combination: 2 * ((1 - alpha) * io + alpha * wb_acc) [+ format] ----
    scale: float = 2.0  # the paper's reward scale (max reward)
    alpha: float = 0.5  # white-box weight
    gated: bool = True  # white-box credit only when the assertion is correct (paper)
    forfeit_on_count_mismatch: bool = True  # wrong number of answer lines -> wb_acc = 0 (paper)
    align: Literal["position", "label"] = "position"  # "label": align lines by `QuestionK:` prefixes
    path_weight: float = 1.0  # weight of next-statement questions inside wb_acc
    state_weight: float = 1.0  # weight of value/type questions inside wb_acc
    coverage_weight: float = 1.0  # weight of coverage questions inside wb_acc
    format_reward: float = 0.0  # added to io_mixed/oi rewards when the answer block is well formed
    # io_mixed: added (as shaping, like format_reward) when the assertion repeats the question's call
    # exactly, right output or not; 0 = the paper. A small policy mostly fails output prediction by
    # writing a call of its own (docs/REWARDS.md "Call bonus").
    call_reward: float = 0.0
    oi_reward: float = 2.0  # reward of a correct input prediction (paper)
    io_typed: bool = False  # io/oi: typed equality instead of the harness's Python == (1 == 1.0)

    # ---- white-box grading rules ----
    strict_indent: bool = False  # next statement: exact indentation instead of strip() (paper: strip)
    accept_unquoted_str: bool = True  # value/type: `abc; str` matches 'abc' (paper accepted it)
    typed_values: bool = True  # value/type: the value's type must equal the label's type, recursively
    float_tol: float = 0.0  # value/type: |a-b| <= tol * max(1, |b|); 0 = exact (paper); REval: 1e-6

    # ---- input prediction / sandbox ----
    oi_timeout_s: float = 2.0  # wall time of one ground-truth run (paper: 0.5 s, flaky under load)
    oi_group_size: int = 16  # submit_batch packs up to this many ground-truth runs per sandbox job
    oi_fork_per_call: bool = False  # each packed run in its own fork (full isolation, ~1-3 ms more)
    oi_cache_size: int = 65_536  # identical (program, args) runs within a Scorer share one job
    prelude: str = ""  # source run before the ground-truth program (e.g. CRUXEval's typing imports)

    # ---- stage II (code generation) ----
    codegen_format_bonus: float = 0.05  # added when the pass rate > 0 and <answer> tags exist
    codegen_test_timeout_s: float = 5.0  # per-test alarm inside the all-tests job (reference: 5 s)
    codegen_all_timeout_s: float = 6.0  # wall limit of the all-tests job (reference join: 6 s)
    codegen_single_timeout_s: float = 1.0  # per-test alarm in the fallback per-test jobs (ref: 1 s)
    codegen_single_wall_s: float = 2.0  # wall limit of one fallback per-test job (ref join: 2 s)
    codegen_max_single_tests: int = 10  # fallback runs only the first N tests (reference: 10)
    codegen_denominator: Literal["all", "run"] = "all"  # fallback pass rate over all tests or only run
    codegen_float_tol: float = 1e-6  # stdout tokens with '.'/'e' compare as floats within this tol
    codegen_max_output_chars: int = 1_000_000  # per-test stdout/return-value cap inside the child
    codegen_max_tests: int = 200  # tests beyond this are not run (and count as failed)
    codegen_prelude: Literal["apps", "none"] = "apps"  # APPS/PRIME import header before solutions

    def __post_init__(self) -> None:
        positive = (
            "max_response_chars", "max_answer_chars", "max_answer_lines", "max_literal_chars",
            "max_literal_nesting", "max_literal_nodes", "oi_timeout_s", "codegen_test_timeout_s",
            "codegen_all_timeout_s", "codegen_single_timeout_s", "codegen_single_wall_s",
            "codegen_max_single_tests", "codegen_max_output_chars", "codegen_max_tests", "oi_group_size",
        )
        for name in positive:
            check_range(name, getattr(self, name), 0, lo_open=True)
        check_range("alpha", self.alpha, 0.0, 1.0)
        for name in ("path_weight", "state_weight", "coverage_weight", "float_tol",
                     "codegen_float_tol", "oi_cache_size", "format_reward", "call_reward", "codegen_format_bonus"):
            check_range(name, getattr(self, name), 0)
        if self.path_weight + self.state_weight + self.coverage_weight <= 0:
            raise ConfigError("path_weight + state_weight + coverage_weight must be > 0", "path_weight")
        check_choice("align", self.align, ("position", "label"))
        check_choice("codegen_prelude", self.codegen_prelude, ("apps", "none"))
        check_choice("codegen_denominator", self.codegen_denominator, ("all", "run"))
