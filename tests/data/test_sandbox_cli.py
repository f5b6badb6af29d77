"""`execverify run`: JSON and human output, exit codes."""

import json

import pytest

from execverify_jax.cli import main


@pytest.fixture
def program(tmp_path):
    p = tmp_path / "prog.py"
    p.write_text("import math\ndef f(x, s):\n    print('side effect')\n    return [math.floor(x), s * 2]\n")
    return p


def test_json_outcome_and_exit_code(program, capsys):
    rc = main(["run", "--code", str(program), "--call", "f(2.5, 'a')", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["status"] == "ok" and out["value_repr"] == "[2, 'aa']" and out["stdout"] == "side effect\n"
    for key in ("stderr", "error_type", "error", "duration_s"):
        assert key in out


def test_error_exit_code_and_human_form(program, capsys):
    rc = main(["run", "--code", str(program), "--call", "f(1)"])
    text = capsys.readouterr().out
    assert rc == 1 and "status:   error" in text and "TypeError" in text


def test_timeout_option(tmp_path, capsys):
    p = tmp_path / "loop.py"
    p.write_text("def f():\n    while True:\n        pass\n")
    rc = main(["run", "--code", str(p), "--call", "f()", "--timeout", "0.3", "--json"])
    assert rc == 1 and json.loads(capsys.readouterr().out)["status"] == "timeout"


def test_memory_option(tmp_path, capsys):
    p = tmp_path / "mem.py"
    p.write_text("def f():\n    return bytearray(400 * 1024 * 1024)\n")
    rc = main(["run", "--code", str(p), "--call", "f()", "--memory-mb", "200", "--json"])
    assert rc == 1 and json.loads(capsys.readouterr().out)["status"] == "memory"


def test_missing_file_and_bad_limits(tmp_path, program, capsys):
    assert main(["run", "--code", str(tmp_path / "nope.py"), "--call", "f()"]) == 2
    assert main(["run", "--code", str(program), "--call", "f()", "--timeout", "-1"]) == 2
    assert "timeout_s" in capsys.readouterr().err


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for opt in ("--code", "--call", "--timeout", "--memory-mb", "--json"):
        assert opt in text
