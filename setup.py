# Lets Beam's --setup_file ship this project to remote workers (Dataflow, Flink, Spark);
# all metadata lives in pyproject.toml.
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PRESETS = Path(__file__).resolve().parent / "configs"


class BuildWithPresets(build_py):
    """Also installs configs/*.yaml as unimo_g/presets/, so preset names work outside a checkout
    (`unimo_g.presets` looks there first)."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's configs/ directly
            return
        target = Path(self.build_lib) / "unimo_g" / "presets"
        target.mkdir(parents=True, exist_ok=True)
        for preset in sorted(PRESETS.glob("*.yaml")):
            self.copy_file(str(preset), str(target / preset.name))


setup(cmdclass={"build_py": BuildWithPresets})
