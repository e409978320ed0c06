"""`guide code`: a random tiny model continuing `acct.` can only name real members of Account."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jedi
import pytest
from typer.testing import CliRunner

from guide.cli.app import app

pytestmark = pytest.mark.model
RUNNER = CliRunner()
ROOT = Path(__file__).parent / "monitor_project"
PREFIX = "from bank.factory import open_account\nacct = open_account('ann')\nacct.\n"


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _members() -> set[str]:
    code = PREFIX[:-1]
    lines = code.split("\n")
    script = jedi.Script(code=code, path=str(ROOT / "__probe__.py"), project=jedi.Project(str(ROOT)))
    return {c.name for c in script.complete(len(lines), len(lines[-1]))}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_continuations_name_real_members(model_dir, tmp_path, seed):
    prefix = tmp_path / "main.py"
    prefix.write_text(PREFIX)
    result = RUNNER.invoke(app, ["code", str(prefix), "--root", str(ROOT), "--model", str(model_dir), "--free",
                                 "--sampler", "sample", "--seed", str(seed), "--max-tokens", "6", "--json"])
    record = json.loads(result.stdout)
    # exit 1 (and complete: false) when --max-tokens ends the text inside a name
    assert result.exit_code == (0 if record["complete"] else 1), result.stderr
    text = record["text"]
    name = re.match(r"[A-Za-z_]\w*", text)
    assert name is not None, text
    assert name.group() in _members() or any(m.startswith(name.group()) for m in _members()), text


def test_bad_root_and_bad_monitor_exit_2(tmp_path, model_dir):
    prefix = tmp_path / "main.py"
    prefix.write_text(PREFIX)
    result = RUNNER.invoke(app, ["code", str(prefix), "--root", str(tmp_path / "missing"), "--model", str(model_dir)])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = RUNNER.invoke(app, ["code", str(prefix), "--root", str(ROOT), "--monitor", "types"])
    assert result.exit_code == 2 and "--monitor" in result.stderr
    result = RUNNER.invoke(app, ["code", str(tmp_path / "nope.py"), "--root", str(ROOT)])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_default_path_keeps_the_package_folder():
    from guide.cli.code import _default_path

    assert _default_path(ROOT / "bank" / "models.py", ROOT) == str(Path("bank") / "models.py")
    assert _default_path(Path("/elsewhere/x.py"), ROOT) == "x.py"
    assert _default_path(Path("-"), ROOT) == "main.py"


def test_monitor_spellings_of_the_cli_issue():
    from guide.cli.code import parse_monitors

    assert parse_monitors("member-access,arity,names") == ("member", "call", "name")
    assert parse_monitors("all") == ("member", "call", "name")
    assert parse_monitors("call, member") == ("call", "member")
    assert parse_monitors("types") is None and parse_monitors("member,types") is None


def test_project_and_lang_options(tmp_path, model_dir):
    prefix = tmp_path / "main.py"
    prefix.write_text(PREFIX)
    result = RUNNER.invoke(app, ["code", str(prefix), "--lang", "python", "--project", str(ROOT), "--model", str(model_dir),
                                 "--monitor", "member-access", "--max-tokens", "6", "--free", "--json"])
    assert result.exit_code in (0, 1), result.stderr
    name = re.match(r"[A-Za-z_]\w*", json.loads(result.stdout)["text"])
    assert name is not None and any(m.startswith(name.group()) for m in _members())
    result = RUNNER.invoke(app, ["code", str(prefix), "--lang", "java", "--project", str(ROOT)])
    assert result.exit_code == 2 and "Python only" in result.stderr


@pytest.mark.parametrize("seed", [4, 5])
def test_the_python_grammar_keeps_the_line_python(model_dir, tmp_path, seed):
    import ast

    prefix = tmp_path / "main.py"
    prefix.write_text("from bank.factory import open_account\nacct = open_account('ann')\nx = acct.\n")
    result = RUNNER.invoke(app, ["code", str(prefix), "--root", str(ROOT), "--model", str(model_dir), "--sampler", "sample",
                                 "--seed", str(seed), "--max-tokens", "12", "--json"])
    assert "outside the Python grammar" not in result.stderr
    record = json.loads(result.stdout)
    if record["complete"]:  # the whole line: the file is Python up to it (a line may open a block)
        text = prefix.read_text()[:-1] + record["text"]
        from guide.grammars.cfg import builtin

        assert builtin("python").prefix_error(text) is None
        if not text.rstrip().endswith(":"):
            ast.parse(text)


def test_prefix_outside_the_subset_falls_back_with_a_note(model_dir, tmp_path):
    prefix = tmp_path / "main.py"
    prefix.write_text("from bank.factory import open_account\nacct = open_account('ann')\nacct\nacct.\n")
    result = RUNNER.invoke(app, ["code", str(prefix), "--root", str(ROOT), "--model", str(model_dir), "--free",
                                 "--max-tokens", "4", "--json"])
    assert "outside the Python grammar's subset at line 4, column 1" in result.stderr  # where the bare name's line ends
    assert result.exit_code in (0, 1), result.stderr
    result = RUNNER.invoke(app, ["code", str(prefix), "--root", str(ROOT), "--model", str(model_dir), "--free",
                                 "--max-tokens", "4", "--json", "--no-grammar"])
    assert "Python grammar" not in result.stderr
