"""`execverify trace`: call parsing, human and JSON output, exit codes."""

from __future__ import annotations

import json

import pytest

from execverify_jax.cli import main
from execverify_jax.commands.trace import parse_call

CODE = "def helper(x):\n    return x * 2\n\ndef f(a, b=1):\n    y = helper(a)\n    return y + b\n"


def test_parse_call():
    assert parse_call("f(1, 'a')") == ("f", "1, 'a'")
    assert parse_call("  g ( [1, (2, 3)], k=4 ) ") == ("g", "[1, (2, 3)], k=4")
    assert parse_call("f()") == ("f", "")
    for bad in ("f", "a.b(1)", "f(1)(2)", "f(", "1 + 2"):
        with pytest.raises(ValueError):
            parse_call(bad)


def test_human_output_in_sandbox(tmp_path, capsys):
    path = tmp_path / "p.py"
    path.write_text(CODE)
    assert main(["trace", "--code", str(path), "--call", "f(3, b=2)"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("status: ok   steps: 3   frames: 2")
    assert out[2].split() == ["5", "f#0", "1", "y=6"]
    assert out[3].split() == ["2", "helper#1", "1", "->", "return", "6"]
    assert out[4].split() == ["6", "f#0", "1", "->", "return", "8"]
    assert out[5] == "return: 8   (int)"


def test_json_output_and_exit_codes(tmp_path, capsys):
    path = tmp_path / "p.py"
    path.write_text(CODE)
    assert main(["trace", "--code", str(path), "--call", "f(1)", "--json", "--no-sandbox"]) == 0
    trace = json.loads(capsys.readouterr().out)
    assert trace["entry"] == "f" and trace["args"] == "1" and trace["return"]["value"] == 3
    assert main(["trace", "--code", str(path), "--call", "f('a')", "--no-sandbox"]) == 1
    assert "exception: TypeError" in capsys.readouterr().out
    assert main(["trace", "--code", str(path), "--call", "f"]) == 2
    assert main(["trace", "--code", str(tmp_path / "missing.py"), "--call", "f(1)"]) == 2
