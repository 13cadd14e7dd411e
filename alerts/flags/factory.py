"""Build a flag store from its configuration mapping (YAML ``rollback.flag_store``).

>>> store = flag_store_from_config({"kind": "flagd-file", "path": "/tmp/flags.json"})
>>> store.describe()
{'kind': 'flagd-file', 'path': '/tmp/flags.json'}
>>> try:
...     flag_store_from_config({"kind": "consul"})
... except ValueError as exc:
...     print(exc)
flag_store.kind must be one of ['flagd-file', 'launchdarkly', 'unleash', 'webhook']; got 'consul'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .base import FlagStore
from .flagd_file import FlagdFileStore
from .launchdarkly import LaunchDarklyStore
from .transport import HttpClient
from .unleash import UnleashStore
from .webhook import WebhookStore

__all__ = ["flag_store_from_config", "KINDS"]

BAD_KIND = "flag_store.kind must be one of {valid}; got {kind!r}"
UNKNOWN_KEYS = "flag_store ({kind}) has unknown key(s) {keys}; valid keys: {valid}"
MISSING_KEYS = "flag_store ({kind}) is missing required key(s) {keys}"
NO_SECRET = "flag_store ({kind}): environment variable {var!r} named by {key!r} is not set"
BAD_HTTP = "flag_store.http.{key} must be a number >= 0; got {value!r}"

# kind -> (required keys, optional keys). Secrets may be given as `<key>_env`: the
# name of an environment variable holding them, so config files carry no tokens.
_SCHEMA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "flagd-file": (("path",), ("fsync",)),
    "unleash": (
        ("url", "token", "project", "environment"),
        ("mode", "strategy_id", "variants", "stickiness"),
    ),
    "launchdarkly": (("token", "project", "environment"), ("url", "target", "patch_format")),
    "webhook": (("url",), ("token", "state_url", "state_field", "variants")),
}
_SECRETS = ("token",)
_HTTP_KEYS = ("timeout", "retries", "backoff", "backoff_max")
KINDS: tuple[str, ...] = tuple(sorted(_SCHEMA))


def _http(kind: str, cfg: Mapping[str, Any] | None) -> HttpClient:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(_HTTP_KEYS))
    if unknown:
        raise ValueError(UNKNOWN_KEYS.format(kind=f"{kind}.http", keys=unknown, valid=list(_HTTP_KEYS)))
    for key, value in cfg.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(BAD_HTTP.format(key=key, value=value))
    if "retries" in cfg:
        cfg["retries"] = int(cfg["retries"])
    return HttpClient(**cfg)


def flag_store_from_config(config: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> FlagStore:
    """A `FlagStore` for ``config["kind"]``; every other key is that store's option."""
    env = os.environ if environ is None else environ
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind not in _SCHEMA:
        raise ValueError(BAD_KIND.format(valid=list(KINDS), kind=kind))
    required, optional = _SCHEMA[kind]
    for secret in _SECRETS:
        ref = f"{secret}_env"
        if ref in cfg:
            var = cfg.pop(ref)
            if var not in env:
                raise ValueError(NO_SECRET.format(kind=kind, var=var, key=ref))
            cfg[secret] = env[var]
    http_cfg = cfg.pop("http", None) if kind != "flagd-file" else None
    valid = list(required + optional) + ([] if kind == "flagd-file" else ["http"])
    valid += [f"{s}_env" for s in _SECRETS if s in required + optional]
    unknown = sorted(set(cfg) - set(required) - set(optional))
    if unknown:
        raise ValueError(UNKNOWN_KEYS.format(kind=kind, keys=unknown, valid=sorted(valid)))
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(MISSING_KEYS.format(kind=kind, keys=missing))
    if kind == "flagd-file":
        return FlagdFileStore(cfg.pop("path"), **cfg)
    client = _http(kind, http_cfg)
    if kind == "unleash":
        return UnleashStore(cfg.pop("url"), cfg.pop("token"), client=client, **cfg)
    if kind == "launchdarkly":
        return LaunchDarklyStore(cfg.pop("token"), client=client, **cfg)
    return WebhookStore(cfg.pop("url"), client=client, **cfg)
