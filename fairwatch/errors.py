"""The root of every error fairwatch raises on purpose.

Catch :class:`FairwatchError` to handle any of them; each layer's errors
(:class:`~fairwatch.streaming.events.EventError`,
:class:`~fairwatch.app.config.ConfigError`,
:class:`~fairwatch.alerts.flags.FlagStoreError`,
:class:`~fairwatch.intervention.errors.PipelineInputError`, …) derive from it and
keep their standard base (``ValueError``, ``RuntimeError``) for callers that
already catch those.
"""

from __future__ import annotations

__all__ = ["FairwatchError"]


class FairwatchError(Exception):
    """Base class of fairwatch's errors."""
