"""Config loading: YAML + overrides into frozen dataclasses; errors name the key and value."""

import dataclasses
from typing import Literal

import pytest

from execverify_jax import config_loader as config


@dataclasses.dataclass(frozen=True)
class Inner:
    group_size: int = 8
    clip: float = 0.2
    mode: Literal["token-mean", "seq-mean-token-mean"] = "token-mean"

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.group_size!r}")


@dataclasses.dataclass(frozen=True)
class Root:
    name: str = "run"
    rl: Inner = Inner()
    levels: tuple[int, ...] = (1, 2)
    tag: str | None = None


def test_defaults_and_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nrl:\n  group_size: 4\nlevels: [3, 4, 5]\n")
    cfg = config.load(Root, p)
    assert cfg == Root(name="x", rl=Inner(group_size=4), levels=(3, 4, 5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"  # type: ignore[misc]


def test_overrides_parse_values_as_yaml():
    cfg = config.load(Root, None, ["rl.group_size=16", "rl.clip=0.28", "tag=abc", "levels=[6]"])
    assert cfg.rl.group_size == 16 and cfg.rl.clip == 0.28 and cfg.tag == "abc" and cfg.levels == (6,)
    assert config.load(Root, None, ["rl.clip=1"]).rl.clip == 1.0  # int accepted for float


@pytest.mark.parametrize(
    "override, needle",
    [
        ("rl.grup_size=8", "rl.grup_size"),
        ("rl.group_size=eight", "'eight'"),
        ("rl.group_size=true", "rl.group_size"),
        ("rl.mode=sum", "'sum'"),
        ("rl.group_size=1", "group_size must be >= 2, got 1"),
        ("levels=3", "levels"),
        ("noequals", "key=value"),
    ],
)
def test_errors_name_key_and_value(override, needle):
    with pytest.raises(config.ConfigError) as err:
        config.load(Root, None, [override])
    assert needle in str(err.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(Root, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(config.ConfigError, match="mapping"):
        config.load(Root, bad)


def test_to_dict_round_trip():
    cfg = config.load(Root, None, ["rl.group_size=4"])
    assert config.from_dict(Root, config.to_dict(cfg)) == cfg
