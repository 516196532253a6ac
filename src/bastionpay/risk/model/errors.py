"""The risk model's errors: one base class, so a command can turn any of them into one message."""

from __future__ import annotations


class RiskModelError(Exception):
    """Base class; the message is written for the operator running the command."""


class DatasetError(RiskModelError):
    """The CSV cannot be trained on: unreadable, no such label, label not binary, too few frauds."""


class ModelLoadError(RiskModelError):
    """A model file is missing, malformed, altered since it was written, or of another format."""
