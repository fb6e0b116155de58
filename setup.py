# Lets Beam's --setup_file ship this project to remote workers (Dataflow, Flink, Spark);
# all metadata lives in pyproject.toml.
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (files in the checkout, folder inside the installed unimo_g package)
BUNDLED = (
    ("configs/*.yaml", "presets"),  # preset names (`unimo_g.presets`)
    ("data/sample/**/*", "data/sample"),  # the demo's photos (`unimo_g.sample_data`)
    ("data/entities/*.png", "data/entities"),  # example entity images of the README
)


class BuildWithBundledFiles(build_py):
    """Also installs the presets, the sample and the example entity images inside the unimo_g
    package, so they work outside a checkout (`unimo_g.presets` and `unimo_g.sample_data` look
    there first)."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders directly
            return
        for pattern, folder in BUNDLED:
            base = ROOT / pattern.split("*")[0]
            for path in sorted(ROOT.glob(pattern)):
                if path.is_file():
                    target = Path(self.build_lib) / "unimo_g" / folder / path.relative_to(base)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.copy_file(str(path), str(target))


setup(cmdclass={"build_py": BuildWithBundledFiles})
