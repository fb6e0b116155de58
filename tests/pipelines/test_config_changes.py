from pipelines.io.config_changes import changes_affecting_rows
from unimo_g.config_tools import load_config, to_dict
from unimo_g.pipeline_config import PipelineConfig


def config(*overrides: str) -> dict:
    return to_dict(load_config(PipelineConfig, None, list(overrides)))


def test_execution_settings_may_change_and_row_settings_may_not():
    base = config()
    assert changes_affecting_rows(base, config(
        "grounding.runtime.batch_size=32", "segmentation.runtime.model_copies=2", "write.rows_per_file=9",
        "dedupe.method=single_read", "grounding.runtime.preprocess=processor")) == []
    assert changes_affecting_rows(base, config("grounding.box_threshold=0.3", "grounding.runtime.dtype=bf16")) == [
        "grounding.box_threshold", "grounding.runtime.dtype"]


def test_batch_size_changes_rows_once_forwards_hold_several_images():
    batched = config("grounding.forward=canvas")
    assert changes_affecting_rows(batched, config("grounding.forward=canvas", "grounding.runtime.batch_size=7")) == [
        "grounding.runtime.batch_size"]
    assert changes_affecting_rows(config(), batched) == ["grounding.forward"]


def test_a_setting_missing_on_one_side_is_a_change():
    assert changes_affecting_rows({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == ["a.c"]
