"""`SynthConfig`: the synthesizer's options (its own module so that `DataConfig` can type its
`synth:` section without importing the synthesizer and z3)."""

from __future__ import annotations

import dataclasses

from execverify_jax.config_loader import check_choice, check_int, check_range


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Synthesizer options (all have defaults; validated on construction)."""

    n_inputs: int = 3
    use_z3: bool = True
    solver_timeout_ms: int = 200
    sample_tries: int = 6
    python_only_prob: float = 0.15  # share of relational loop conditions (`x in other`, `s.count(ch) > 1`)
    # Value space of entry arguments (data/synth/domains.py ValueSpace): `standard` = the
    # paper-like strings/dicts/lengths; `compact` = 5-7 elements over 12 characters and
    # three-letter dict keys (short argument lists for the CPU demo's from-scratch policy).
    values: str = "standard"

    def __post_init__(self) -> None:
        check_int("n_inputs", self.n_inputs, 1)
        check_int("solver_timeout_ms", self.solver_timeout_ms, 1)
        check_range("python_only_prob", self.python_only_prob, 0.0, 1.0)
        check_choice("values", self.values, ("standard", "compact"))
