"""`unimo-g`: help with an example per command, --version, one-line errors with exit 2, flag
spellings, presets and check-config, each command's arguments and run from its own job."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unimo_g.usage import OneLineParser, spellings
from unimo_g_cli import __version__, commands
from unimo_g_cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "data" / "sample")


def one_error_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix), err
    return err[0]


def test_help_lists_every_command_with_an_example(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in commands.COMMANDS.items():
        assert f"\n    {name} " in out or f"\n    {name}\n" in out
        assert f"$ {command.example}" in out and command.example.startswith(f"unimo-g {name}")


@pytest.mark.parametrize("name", sorted(commands.COMMANDS))
def test_each_command_help_shows_its_example_and_options(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    command = commands.COMMANDS[name]
    assert out.startswith(f"usage: unimo-g {name}")  # the job's own arguments, under this command's name
    assert f"\n{command.summary}\n" in out and f"$ {command.example}" in out


def test_build_help_spells_flags_in_kebab_case(capsys):
    main(["build", "--help"])
    out = capsys.readouterr().out
    assert "--input-format" in out and "--input_format" not in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"unimo-g {__version__}"


@pytest.mark.parametrize("argv, named", [([], "a command is required"), (["bogus"], "'bogus'"),
                                         (["--bogus"], "--bogus")])
def test_dispatcher_errors_are_one_line_exit_2(argv, named, capsys):
    assert main(argv) == 2
    assert named in one_error_line(capsys, "unimo-g: error:")


@pytest.mark.parametrize("flag", ["--input-format", "--input_format"])
def test_build_takes_both_flag_spellings(flag, capsys, tmp_path, monkeypatch):
    """Delegated to beam_runner.main: its own check refuses the value, under this command's name."""
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--input", SAMPLE, "--output", "x", "--config", "tiny", flag, "csv"]) == 2
    assert "csv" in one_error_line(capsys, "unimo-g build: error:")
    assert not (tmp_path / "x").exists()


def test_train_errors_come_from_the_trainer(capsys, tmp_path):
    argv = ["train", "--config", "nope", "--stage", "1", "--data", str(tmp_path), "--output", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "'nope'" in one_error_line(capsys, "unimo-g train: error: --config")


def test_generate_usage_error(capsys, tmp_path):
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "a cat", "--out", "x.jpg"]) == 2
    assert ".png" in one_error_line(capsys, "unimo-g generate: error:")


def test_underscore_spellings_are_argparse_aliases_of_the_kebab_case_flags():
    assert spellings("--max-steps") == ("--max-steps", "--max_steps") and spellings("--set") == ("--set",)
    parser = OneLineParser(prog="p")
    parser.add_argument(*spellings("--input-format"), default="auto")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args(["--input_format=folder", "--set", "a_b=1"])
    assert (args.input_format, args.set) == ("folder", ["a_b=1"])
    assert "--input-format INPUT_FORMAT" in parser.format_help() and "--input_format" not in parser.format_help()


def _command_parser(name: str):
    """The subparser of `unimo-g NAME`, its job's arguments added."""
    subcommands = next(a for a in build_parser(name)._actions if a.dest == "command")
    return subcommands.choices[name]


@pytest.mark.parametrize("name", sorted(commands.COMMANDS))
def test_every_flag_shows_once_with_help_text(name, capsys):
    """Each command's --help comes from its own parser and shows every flag once, in its kebab-case
    spelling (an underscore spelling is an alias, left out)."""
    parser = _command_parser(name)
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out == parser.format_help()
    # the invocation part of each option line of the help: "-h, --help", "--input-format {auto,...}"
    options = out[out.index("options:"):]
    invocations = [line.strip().split("  ")[0] for line in options.splitlines() if line.lstrip().startswith("-")]
    shown = [token.rstrip(",") for line in invocations for token in line.split() if token.startswith("-")]
    assert len(shown) == len(set(shown)), invocations
    for action in parser._actions:
        assert action.help, f"unimo-g {name}: {action.option_strings or action.dest} has no help text"
        flags = [flag for flag in action.option_strings if "_" not in flag]
        aliases = [flag for flag in action.option_strings if "_" in flag]
        assert all(shown.count(flag) == 1 for flag in flags), (action.option_strings, invocations)
        assert not any(alias in shown for alias in aliases), (aliases, invocations)
        assert all("--" + alias[2:].replace("_", "-") in flags for alias in aliases), f"{aliases}: flags are kebab-case"


@pytest.mark.parametrize("argv", [
    ["build", "--input", "/nonexistent", "--output", "x", "--config", "tiny"],
    ["build", "--input", SAMPLE, "--output", "OUT_NOT_EMPTY", "--config", "tiny"],
    ["build", "--input", SAMPLE, "--output", "x", "--config", "tiny", "--runer=DirectRunner"],
    ["build", "--input", SAMPLE, "--output", "x", "--config", "nope"],
    ["train", "--config", "train_tiny", "--stage", "3", "--data", "d", "--output", "o"],
    ["evaluate", "--model", "m", "--bench", "b"],
    ["report"], ["verify"], ["features", "--input", "i"], ["generate", "--checkpoint", "c", "--steps", "x"],
])
def test_usage_errors_answer_before_torch_or_beam_is_imported(argv, tmp_path):
    """In a fresh interpreter: one error line, exit 2, and neither torch nor apache_beam in sys.modules."""
    (tmp_path / "OUT_NOT_EMPTY").mkdir()
    (tmp_path / "OUT_NOT_EMPTY" / "file").write_text("x")
    code = ("import sys; from unimo_g_cli.main import main; code = main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'apache_beam') if m in sys.modules]; "
            "print(','.join(heavy) or 'none'); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == "none", f"{argv[0]} imported {result.stdout.strip()} before its usage error"
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"unimo-g {argv[0]}: error:")


HELP_OF_EVERY_COMMAND = """
import contextlib, io, sys
from unimo_g_cli.commands import COMMANDS
from unimo_g_cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    codes = {main([name, "--help"]) for name in COMMANDS}
heavy = [m for m in ("torch", "apache_beam") if m in sys.modules]
print(codes, ",".join(heavy) or "none")
"""


def test_every_command_help_answers_without_torch_or_beam(tmp_path):
    """In a fresh interpreter: `unimo-g COMMAND --help` of every command loads neither torch nor Beam."""
    result = subprocess.run([sys.executable, "-c", HELP_OF_EVERY_COMMAND], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.stdout.strip() == "{0} none", result.stderr


def test_register_refuses_a_second_command_of_one_name():
    with pytest.raises(ValueError, match="twice"):
        commands.register("build", "pipelines.prompts.command", "again", "unimo-g build")


def test_presets_list_show_path(capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert "tiny" in listing and "train_tiny" in listing and "Random-weight" in listing
    assert main(["presets", "show", "tiny"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs" / "tiny.yaml").read_text()
    assert main(["presets", "path", "tiny.yaml"]) == 0
    assert Path(capsys.readouterr().out.strip()).resolve() == (ROOT / "configs" / "tiny.yaml").resolve()
    assert main(["presets", "show", "nope"]) == 2
    assert "'nope'" in one_error_line(capsys, "unimo-g presets: error:")
    assert main(["presets", "show"]) == 2
    one_error_line(capsys, "unimo-g presets: error:")


def test_check_config(capsys):
    assert main(["check-config", "tiny", "--set", "grounding.box_threshold=0.3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# PipelineConfig from ") and "box_threshold: 0.3" in out and "config hash" in out
    assert main(["check-config", "train_tiny"]) == 0
    assert capsys.readouterr().out.startswith("# TrainConfig from ")
    assert main(["check-config", "tiny", "--set", "grounding.box_threshold=3"]) == 2
    assert "box_threshold" in one_error_line(capsys, "unimo-g check-config: error:")


def test_report_of_a_folder_that_is_not_an_output(capsys, tmp_path):
    assert main(["report", str(tmp_path)]) == 2
    assert "no shards/*.parquet or manifest.json" in one_error_line(capsys, "unimo-g report: error:")


def test_python_dash_m_and_old_entry_points_still_work():
    """`python -m unimo_g_cli` is the command; the scripts it delegates to still run on their own
    (`python -m trainers.train` and `python -m unimo_g_apps.generate` are run by their own tests' `main`)."""
    new = subprocess.run([sys.executable, "-m", "unimo_g_cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert new.returncode == 0 and new.stdout.startswith("unimo-g ")
    for old in (["beam_runner.py", "--help"], ["-m", "pipelines.outputs.gallery", "--help"]):
        result = subprocess.run([sys.executable, *old], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0 and "usage:" in result.stdout, (old, result.stderr)


def test_gallery_errors_are_one_line(capsys, tmp_path):
    assert main(["gallery", str(tmp_path / "nope")]) == 2
    assert "nope is not a folder" in one_error_line(capsys, "unimo-g gallery: error:")
    assert main(["gallery", str(tmp_path), "--limit", "-1"]) == 2
    assert "--limit" in one_error_line(capsys, "unimo-g gallery: error:")
