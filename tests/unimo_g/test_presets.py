"""Bundled presets: a name, `NAME.yaml` or `configs/NAME.yaml` finds the preset from any directory."""

from pathlib import Path

import pytest

from unimo_g import presets

ROOT = Path(__file__).resolve().parents[2]


def test_lists_the_checkout_configs():
    found = presets.list_presets()
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} == {p.name for p in found.values()}
    assert {"default", "tiny", "train_tiny"} <= set(found)


@pytest.mark.parametrize("spelling", ["tiny", "tiny.yaml", "configs/tiny.yaml"])
def test_preset_spellings_resolve_from_another_directory(spelling, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert presets.resolve_preset(spelling).resolve() == (ROOT / "configs" / "tiny.yaml").resolve()


def test_a_file_wins_over_a_preset_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text("name: mine\n")
    assert presets.resolve_preset("tiny") == Path("tiny")


def test_unknown_names_the_presets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(presets.PresetNotFound, match=r"'nope'.*presets: .*tiny"):
        presets.resolve_preset("nope")
    with pytest.raises(presets.PresetNotFound):  # a path elsewhere is not a preset name
        presets.resolve_preset("other/tiny.yaml")


def test_installed_presets_come_first(tmp_path, monkeypatch):
    installed = tmp_path / "presets"
    installed.mkdir()
    (installed / "only_here.yaml").write_text("# An installed preset. More text.\nname: x\n")
    monkeypatch.setattr(presets, "SEARCH_DIRS", (installed, ROOT / "configs"))
    assert list(presets.list_presets()) == ["only_here"]
    assert presets.preset_summary(installed / "only_here.yaml") == "An installed preset."
