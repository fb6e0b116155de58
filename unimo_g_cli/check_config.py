"""`unimo-g check-config CONFIG [--set key=value ...]`: validate a config without running anything.

A pipeline config (it has a `grounding` section) is checked as `PipelineConfig`, anything else as a
training `TrainConfig`; the resolved config (defaults filled in, overrides applied) is printed as
YAML with its hash. A config that does not validate exits with code 2 and one line.
"""

from __future__ import annotations

import argparse

import yaml

from unimo_g.config_tools import ConfigError, config_hash, deep_merge, load_config, parse_overrides, read_yaml, to_dict
from unimo_g.presets import PresetNotFound, resolve_preset
from unimo_g.usage import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name or YAML path")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")


def run(args: argparse.Namespace) -> int:
    print(resolved_config(args.config, args.set))
    return 0


def config_class(raw: dict):
    """PipelineConfig for a pipeline preset, TrainConfig otherwise."""
    if "grounding" in raw:
        from unimo_g.pipeline_config import PipelineConfig

        return PipelineConfig
    from trainers.config import TrainConfig

    return TrainConfig


def resolved_config(name: str, overrides: list[str]) -> str:
    """The config as YAML under a line naming its class, file and hash."""
    try:
        path = resolve_preset(name)
        kind = config_class(deep_merge(read_yaml(path), parse_overrides(overrides)))
        config = load_config(kind, path, overrides)
    except (PresetNotFound, ConfigError, ValueError, TypeError) as err:
        raise UsageError(str(err).strip().splitlines()[0]) from None
    body = yaml.safe_dump(to_dict(config), sort_keys=False).rstrip("\n")
    return f"# {kind.__name__} from {path}; config hash {config_hash(config)}\n{body}"
