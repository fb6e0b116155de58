import pytest

from unimo_g.config_tools import ConfigError, from_dict, to_dict
from unimo_g.pipeline_config import GroundingConfig, ModelRuntimeConfig, PipelineConfig, SegmentationConfig


def test_preprocess_defaults_to_tensor_for_both_models():
    config = PipelineConfig()
    assert config.grounding.runtime.preprocess == "tensor"
    assert config.segmentation.runtime.preprocess == "tensor"
    assert to_dict(config)["segmentation"]["runtime"]["preprocess"] == "tensor"  # recorded with the output


def test_preprocess_is_validated():
    assert ModelRuntimeConfig(preprocess="processor").preprocess == "processor"
    with pytest.raises(ValueError, match="runtime.preprocess must be tensor or processor"):
        ModelRuntimeConfig(preprocess="pil")
    with pytest.raises(ConfigError, match="preprocess"):
        from_dict(PipelineConfig, {"grounding": {"runtime": {"preprocess": "fast"}}})
    loaded = from_dict(PipelineConfig, {"segmentation": {"runtime": {"preprocess": "processor"}}})
    assert isinstance(loaded.segmentation, SegmentationConfig) and isinstance(loaded.grounding, GroundingConfig)
    assert loaded.segmentation.runtime.preprocess == "processor" and loaded.grounding.runtime.preprocess == "tensor"
