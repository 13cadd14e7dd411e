"""Feature-flag stores: read and switch the model version a serving app uses."""

from __future__ import annotations

from .base import (
    FlagChange,
    FlagStore,
    FlagStoreError,
    FlagStoreHTTPError,
    UnknownFlagError,
    UnknownVariantError,
)
from .factory import KINDS, flag_store_from_config
from .flagd_file import FlagdFileStore
from .launchdarkly import LaunchDarklyStore
from .transport import HttpClient
from .unleash import UnleashStore
from .webhook import WebhookStore

__all__ = [
    "KINDS",
    "FlagChange",
    "FlagStore",
    "FlagStoreError",
    "FlagStoreHTTPError",
    "FlagdFileStore",
    "HttpClient",
    "LaunchDarklyStore",
    "UnknownFlagError",
    "UnknownVariantError",
    "UnleashStore",
    "WebhookStore",
    "flag_store_from_config",
]
