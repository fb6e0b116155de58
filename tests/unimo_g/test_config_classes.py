"""Every config class: no field declared twice, and each `Literal` value checked once, by the class."""

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from unimo_g.config_tools import ConfigError, from_dict
from unimo_g.pipeline_config import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("unimo_g", "grounding", "segmentation", "pipelines", "trainers", "unimo_g_cli", "bench")


def _is_dataclass(node: ast.ClassDef) -> bool:
    def name(decorator: ast.expr) -> str:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")

    return any(name(decorator) == "dataclass" for decorator in node.decorator_list)


def _declared_twice(source: str, name: str) -> list[str]:
    """'name:line Class.field' for each field a dataclass of `source` declares again (Python keeps the
    last declaration silently: its default, its comment and its place are lost)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and _is_dataclass(node):
            seen: set[str] = set()
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    if statement.target.id in seen:
                        found.append(f"{name}:{statement.lineno} {node.name}.{statement.target.id}")
                    seen.add(statement.target.id)
    return found


def test_no_dataclass_declares_a_field_twice():
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert files
    declared_twice = [hit for path in files
                      for hit in _declared_twice(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert declared_twice == []


def test_a_field_declared_twice_is_found():
    source = "@dataclass(frozen=True)\nclass C:\n    a: int = 1\n    b: int = 2\n    a: float = 0.5\n"
    assert _declared_twice(source, "c.py") == ["c.py:5 C.a"]
    assert _declared_twice(source.replace("@dataclass(frozen=True)\n", ""), "c.py") == []  # not a dataclass


def _config_classes(root: type) -> list[type]:
    """`root` and every config dataclass under it."""
    found, pending = [], [root]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            hints = typing.get_type_hints(cls)
            pending += [hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])]
    return found


LITERAL_FIELDS = [
    (cls, f.name) for cls in _config_classes(PipelineConfig) for f in dataclasses.fields(cls)
    if typing.get_origin(typing.get_type_hints(cls)[f.name]) is typing.Literal
]


@pytest.mark.parametrize("cls, name", LITERAL_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in LITERAL_FIELDS])
def test_every_literal_value_is_checked_by_its_class(cls, name):
    """Built in code or loaded from YAML, a value outside the `Literal` is refused by the class's
    `__post_init__` (`check_choices`), which names the key, the choices and the value."""
    with pytest.raises(ValueError, match=rf"\.{name} must be .* got 'bogus'"):
        cls(**{name: "bogus"})
    with pytest.raises(ConfigError, match=rf"\.{name} must be .* got 'bogus'"):
        from_dict(cls, {name: "bogus"})


def test_the_pipeline_config_has_literal_fields():
    assert len(LITERAL_FIELDS) >= 10
