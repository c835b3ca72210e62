"""Errors a user can act on: each names the file or value at fault and the fix."""

from __future__ import annotations


class DkanError(Exception):
    """Base class for errors the CLI reports as one clear line instead of a traceback."""


class DataError(DkanError, ValueError):
    """Bad input data: names where (file, value) and how to fix it."""

    def __init__(self, where: str, problem: str, fix: str):
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}. Fix: {fix}")
