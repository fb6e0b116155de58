"""argparse for the dispatcher's own small commands: errors in one line on stderr, exit code 2."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """An argument that cannot be used; reported in one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, instead of argparse's usage dump
        raise UsageError(message)
