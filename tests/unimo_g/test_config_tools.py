from pathlib import Path

import pytest

from unimo_g.config_tools import ConfigError, config_hash, from_dict, load_config, parse_overrides, to_dict
from unimo_g.pipeline_config import PipelineConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # not the working directory's


def test_overrides_nest_and_parse_yaml_values():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_a_list_of_strings_takes_a_comma_separated_value():
    config = load_config(PipelineConfig, None, ["exclude.images=/eval/dreambench, gs://b/coco/val2017"])
    assert config.exclude.images == ("/eval/dreambench", "gs://b/coco/val2017")
    assert load_config(PipelineConfig, None, ["exclude.images=[/a, /b]"]).exclude.images == ("/a", "/b")
    with pytest.raises(ConfigError, match="exclude.phash_distance"):
        load_config(PipelineConfig, None, ["exclude.phash_distance=a,b"])
    with pytest.raises(ConfigError, match="phash_distance or exclude.clip_cosine"):
        load_config(PipelineConfig, None, ["exclude.images=/eval", "exclude.phash_distance=null"])


def test_bad_override_names_the_item():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["nonsense"])


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="grounding.box_treshold"):
        from_dict(PipelineConfig, {"grounding": {"box_treshold": 0.3}})


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match="box_threshold"):
        from_dict(PipelineConfig, {"grounding": {"box_threshold": 3.0}})
    with pytest.raises(ConfigError, match="device"):
        from_dict(PipelineConfig, {"grounding": {"runtime": {"device": "gpu"}}})
    with pytest.raises(ConfigError, match="mode"):
        from_dict(PipelineConfig, {"compose": {"mode": "prepend"}})


def test_presets_load_and_hash_stably(tmp_path):
    for name in ("default", "tiny"):
        config = load_config(PipelineConfig, CONFIGS / f"{name}.yaml")
        assert config_hash(from_dict(PipelineConfig, to_dict(config))) == config_hash(config)  # a round trip
    tiny = load_config(PipelineConfig, CONFIGS / "tiny.yaml", ["grounding.box_threshold=0.3"])
    assert tiny.grounding.box_threshold == 0.3
    assert tiny.random_weights
    assert config_hash(tiny) != config_hash(load_config(PipelineConfig, CONFIGS / "tiny.yaml"))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(PipelineConfig, tmp_path / "nope.yaml")


def test_exponent_without_dot_is_a_number():
    config = from_dict(PipelineConfig, parse_overrides(["grounding.box_threshold=3e-1"]))
    assert config.grounding.box_threshold == 0.3
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(PipelineConfig, {"grounding": {"box_threshold": "high"}})


def test_full_size_random_presets_are_flagged_as_random_weights():
    assert load_config(PipelineConfig, CONFIGS / "bench_full.yaml").random_weights
    assert not load_config(PipelineConfig, CONFIGS / "default.yaml").random_weights


def test_loading_a_pipeline_config_does_not_import_torch():
    # `unimo-g verify`, `report` and every usage error load configs; torch costs seconds to import
    import subprocess
    import sys

    code = ("import sys; from unimo_g.config_tools import load_config; from unimo_g.pipeline_config import "
            "PipelineConfig; load_config(PipelineConfig, None, ['grounding.runtime.device=cuda:1']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
