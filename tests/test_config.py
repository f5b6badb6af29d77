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


# ------------------------------------------------------------------------------ base: includes
def test_base_include_is_relative_recursive_and_deep_merged(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text("name: root\nrl:\n  group_size: 4\n  clip: 0.3\nlevels: [1]\n")
    (tmp_path / "sub" / "mid.yaml").write_text("base: ../root.yaml\nrl:\n  clip: 0.5\n")
    (tmp_path / "sub" / "leaf.yaml").write_text("base: mid.yaml\nname: leaf\n")
    cfg = config.load(Root, tmp_path / "sub" / "leaf.yaml", ["levels=[2]"])
    # rl.group_size from root, rl.clip from mid (a mapping merges key by key), name from leaf.
    assert cfg == Root(name="leaf", rl=Inner(group_size=4, clip=0.5), levels=(2,))


def test_base_include_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\n")
    with pytest.raises(config.ConfigError, match="cycle"):
        config.load(Root, tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(config.ConfigError, match="cycle"):
        config.load(Root, tmp_path / "self.yaml")


def test_errors_name_the_file_that_set_the_key(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("rl:\n  grup_size: 4\n")
    (tmp_path / "top.yaml").write_text("base: base.yaml\nname: x\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(Root, tmp_path / "top.yaml")
    assert str(base) in str(err.value) and "rl.grup_size" in str(err.value)
    good = tmp_path / "good.yaml"
    good.write_text("rl:\n  group_size: 4\n")
    (tmp_path / "over.yaml").write_text("base: good.yaml\nrl:\n  group_size: eight\n")
    with pytest.raises(config.ConfigError, match=r"over\.yaml: rl\.group_size: expected an integer, got 'eight'"):
        config.load(Root, tmp_path / "over.yaml")
    with pytest.raises(config.ConfigError) as err:  # set by --set: no file to name
        config.load(Root, good, ["rl.group_size=eight"])
    assert str(err.value).startswith("rl.group_size: expected an integer")
    with pytest.raises(config.ConfigError, match="base="):
        (tmp_path / "bad_base.yaml").write_text("base: 3\n")
        config.load(Root, tmp_path / "bad_base.yaml")


def test_missing_required_key_is_named():
    @dataclasses.dataclass(frozen=True)
    class Needs:
        path: str
        n: int = 1

    with pytest.raises(config.ConfigError, match="missing required config key path"):
        config.load(Needs, None, ["n=2"])
    assert config.load(Needs, None, ["path=x"]).path == "x"


def test_v5p_config_is_stage1_plus_its_mesh_and_per_chip_batches():
    from execverify_jax.rl.run_config import TrainConfig
    from execverify_jax.shared_config import MeshConfig

    repo = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"
    v5p = config.load(TrainConfig, repo / "stage1_qwen2p5_coder_7b_v5p.yaml")
    stage1 = config.load(TrainConfig, repo / "stage1_qwen2p5_coder_7b.yaml")
    mesh = MeshConfig(data=2, fsdp=8, tensor=1)
    assert v5p.mesh == mesh
    # Only the mesh and the per-chip batch sizes (one row per chip) differ.
    want = stage1.replace(mesh=mesh, rollout=dataclasses.replace(stage1.rollout, prompts_per_call=16,
                                                                       slots=128, prefill_batch=16,
                                                                       admit_min=16),
                          grpo=dataclasses.replace(stage1.grpo, micro_batch_size=16))
    assert v5p == want
    # The CLI shorthand gives the same resolved config.
    sets = ["mesh=data=2,fsdp=8", "rollout.prompts_per_call=16", "rollout.slots=128",
            "rollout.prefill_batch=16", "rollout.admit_min=16", "grpo.micro_batch_size=16"]
    assert config.load(TrainConfig, repo / "stage1_qwen2p5_coder_7b.yaml", sets) == v5p


# ------------------------------------------------------------------------ shared sections
def test_mesh_accepts_mapping_or_shorthand_and_checks_sizes():
    from execverify_jax.shared_config import MeshConfig

    @dataclasses.dataclass(frozen=True)
    class WithMesh:
        mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)

    assert config.load(WithMesh, None, ["mesh={fsdp: -1, data: 1}"]).mesh == MeshConfig(1, -1, 1)
    assert config.load(WithMesh, None, ["mesh=data=2,tensor=4"]).mesh == MeshConfig(2, 1, 4)
    for bad, needle in [("mesh=data=-1,fsdp=-1", "at most one"), ("mesh=model=2", "bad mesh item"),
                        ("mesh={tensor: 0}", "positive"), ("mesh.pipeline=2", "mesh.pipeline")]:
        with pytest.raises(config.ConfigError, match=needle):
            config.load(WithMesh, None, [bad])


def test_one_sampling_config_zero_is_greedy_but_not_for_rollouts():
    from execverify_jax.rl.run_config import TrainConfig
    from execverify_jax.shared_config import GenerationConfig, SamplingConfig

    assert SamplingConfig(temperature=0).greedy and GenerationConfig().greedy
    assert not config.load(TrainConfig, None, []).rollout.greedy
    with pytest.raises(config.ConfigError, match=r"rollout.temperature=0.0: RL rollouts need temperature > 0"):
        config.load(TrainConfig, None, ["rollout.temperature=0"])
    for bad, needle in [("temperature=-1", "temperature=-1"), ("top_p=0", "top_p=0"), ("top_k=0", "top_k=0"),
                        ("n=0", "n=0"), ("dtype=fp8", "dtype='fp8'"), ("admit_min=0", "admit_min=0"),
                        ("prefill_granule=-1", "prefill_granule=-1"), ("share_prompts=1", "share_prompts: expected true/false, got 1")]:
        with pytest.raises(config.ConfigError, match=needle):
            config.load(GenerationConfig, None, [bad])


def test_data_config_sections_are_typed():
    from execverify_jax.data.pipeline.config import DataConfig

    cfg = config.load(DataConfig, None, ["questions.max_path=2", "limits.memory_mb=512", "synth.use_z3=false"])
    assert (cfg.questions.max_path, cfg.limits.memory_mb, cfg.synth.use_z3) == (2, 512, False)
    assert DataConfig().limits.timeout_s == 2.0
    for bad, needle in [("questions.max_pth=2", "questions.max_pth"), ("synth.python_only_prob=2", "synth.python_only_prob"),
                        ("limits.timeout_s=-1", "timeout_s"), ("questions.max_path=x", "questions.max_path")]:
        with pytest.raises(config.ConfigError, match=needle):
            config.load(DataConfig, None, [bad])


# ---------------------------------------------------------------------------------- commands
def test_every_command_takes_config_and_set():
    from execverify_jax import cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    names = [name for name, _, _ in cli._available()]
    assert len(names) == len(cli.COMMANDS)
    for name in names:
        opts = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"--config", "--set"} <= opts, name


def test_command_options_file_then_flags_then_set(tmp_path):
    from execverify_jax import cli
    from execverify_jax.commands import load_options
    from execverify_jax.commands.run import FLAGS, RunOptions

    y = tmp_path / "run.yaml"
    y.write_text("code: prog.py\ncall: f(1)\ntimeout_s: 2\nmemory_mb: 256\n")
    args = cli.build_parser().parse_args(["run", "--config", str(y), "--timeout", "3", "--call", "g()",
                                          "--set", "call=h()"])
    opts = load_options(RunOptions, args, "run", FLAGS)
    assert opts == RunOptions(code="prog.py", call="h()", timeout_s=3.0, memory_mb=256)
    args = cli.build_parser().parse_args(["run", "--code", "x.py"])
    assert load_options(RunOptions, args, "run", FLAGS) is None  # --call missing: named, exit status 2


def test_eval_flags_and_config_build_the_same_eval_config(tmp_path):
    from execverify_jax import cli
    from execverify_jax.commands import load_options
    from execverify_jax.commands.eval import FLAGS
    from execverify_jax.eval.runner import EvalConfig
    from execverify_jax.shared_config import MeshConfig

    y = tmp_path / "eval.yaml"
    y.write_text("benchmark: cruxeval-o\ndata: d.jsonl\nmodel: m\ngeneration:\n  n: 4\n  temperature: 0.8\n"
                 "  mesh: data=1,tensor=8\n")
    from_file = load_options(EvalConfig, cli.build_parser().parse_args(["eval", "--config", str(y)]), "eval", FLAGS)
    flags = ["eval", "--benchmark", "cruxeval-o", "--data", "d.jsonl", "--model", "m", "--n", "4",
             "--temperature", "0.8", "--mesh", "data=1,tensor=8"]
    from_flags = load_options(EvalConfig, cli.build_parser().parse_args(flags), "eval", FLAGS)
    assert from_file == from_flags and from_file.generation.mesh == MeshConfig(1, 1, 8)
