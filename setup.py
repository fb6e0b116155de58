# Lets Beam's --setup_file ship this project to remote workers (Dataflow, Flink, Spark);
# all metadata lives in pyproject.toml.
from setuptools import setup

setup()
