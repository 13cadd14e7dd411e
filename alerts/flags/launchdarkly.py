"""LaunchDarkly: point a flag's default rule (fallthrough) or off variation at a variation.

Reads the flag with ``GET /api/v2/flags/{project}/{flag}?env={env}``
(https://launchdarkly.com/docs/api/feature-flags/get-feature-flag) and changes it with
``PATCH /api/v2/flags/{project}/{flag}``
(https://launchdarkly.com/docs/api/feature-flags/update-feature-flag), by default as a
semantic patch (``Content-Type: application/json; domain-model=launchdarkly.semanticpatch``)
with the instruction ``updateFallthroughVariationOrRollout`` or ``updateOffVariation`` and
the variation's ``_id``; or, with ``patch_format="json"``, as a JSON patch replacing
``/environments/{env}/fallthrough/variation`` (or ``offVariation``) by the index.
Authentication: ``Authorization: <access token>``
(https://launchdarkly.com/docs/api#authentication). Targeting rules above the default
rule are left alone: contexts they match keep their variation.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from .base import (
    UNKNOWN_FLAG,
    FlagChange,
    FlagStore,
    FlagStoreError,
    FlagStoreHTTPError,
    UnknownFlagError,
    check_reason,
    check_variant,
)
from .transport import HttpClient

__all__ = ["LaunchDarklyStore"]

Target = Literal["fallthrough", "off"]
PatchFormat = Literal["semantic", "json"]
TARGETS: tuple[str, ...] = ("fallthrough", "off")
PATCH_FORMATS: tuple[str, ...] = ("semantic", "json")
BAD_TARGET = "launchdarkly target must be one of {valid}; got {target!r}"
BAD_PATCH_FORMAT = "launchdarkly patch_format must be one of {valid}; got {fmt!r}"
NO_ENVIRONMENT = "flag {flag_key!r} has no environment {environment!r}; environments: {envs}"
ROLLOUT = (
    "flag {flag_key!r} in {environment!r} serves a percentage rollout on its default rule: no single version is live"
)
SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"


def _name(variation: dict[str, Any]) -> str:
    """A variation is named by its ``name`` or, failing that, its (string) value."""
    name = variation.get("name")
    if isinstance(name, str) and name:
        return name
    value = variation.get("value")
    return value if isinstance(value, str) else str(value)


class LaunchDarklyStore(FlagStore):
    """A flag in one LaunchDarkly project and environment."""

    kind = "launchdarkly"

    def __init__(
        self,
        token: str,
        *,
        project: str = "default",
        environment: str = "production",
        url: str = "https://app.launchdarkly.com",
        target: Target = "fallthrough",
        patch_format: PatchFormat = "semantic",
        client: HttpClient | None = None,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(BAD_TARGET.format(valid=list(TARGETS), target=target))
        if patch_format not in PATCH_FORMATS:
            raise ValueError(BAD_PATCH_FORMAT.format(valid=list(PATCH_FORMATS), fmt=patch_format))
        self.url = url.rstrip("/")
        self._token = token
        self.project = project
        self.environment = environment
        self.target = target
        self.patch_format = patch_format
        self.client = client or HttpClient()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token}

    def _path(self, flag_key: str) -> str:
        return f"/api/v2/flags/{quote(self.project, safe='')}/{quote(flag_key, safe='')}"

    def _flag(self, flag_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        url = f"{self.url}{self._path(flag_key)}?env={quote(self.environment, safe='')}"
        try:
            flag = self.client.request("GET", url, headers=self._headers).json() or {}
        except FlagStoreHTTPError as exc:
            if exc.status == 404:
                raise UnknownFlagError(
                    UNKNOWN_FLAG.format(
                        flag_key=flag_key,
                        where=f"LaunchDarkly project {self.project!r}",
                        available="(see the LaunchDarkly UI)",
                    )
                ) from exc
            raise
        envs = flag.get("environments") or {}
        if self.environment not in envs:
            raise FlagStoreError(
                NO_ENVIRONMENT.format(flag_key=flag_key, environment=self.environment, envs=sorted(envs))
            )
        return flag, envs[self.environment]

    def _served_index(self, flag_key: str, env: dict[str, Any]) -> int | None:
        if self.target == "off":
            idx = env.get("offVariation")
            return idx if isinstance(idx, int) else None
        fallthrough = env.get("fallthrough") or {}
        if "variation" in fallthrough and isinstance(fallthrough["variation"], int):
            return fallthrough["variation"]
        return None

    def current(self, flag_key: str) -> str:
        flag, env = self._flag(flag_key)
        idx = self._served_index(flag_key, env)
        if idx is None:
            raise FlagStoreError(ROLLOUT.format(flag_key=flag_key, environment=self.environment))
        return _name(flag["variations"][idx])

    def set_variant(self, flag_key: str, variant: str, *, reason: str, dry_run: bool = False) -> FlagChange:
        check_reason(reason)
        flag, env = self._flag(flag_key)
        variations = flag.get("variations") or []
        names = [_name(v) for v in variations]
        check_variant(flag_key, variant, names)
        idx = self._served_index(flag_key, env)
        previous = names[idx] if idx is not None and idx < len(names) else None
        new_idx = names.index(variant)
        detail = {"environment": self.environment, "target": self.target, "on": bool(env.get("on"))}
        if previous == variant or dry_run:
            return self._change(flag_key, previous, variant, changed=False, dry_run=dry_run, reason=reason, **detail)
        if self.patch_format == "semantic":
            kind = "updateFallthroughVariationOrRollout" if self.target == "fallthrough" else "updateOffVariation"
            body: dict[str, Any] = {
                "environmentKey": self.environment,
                "comment": reason,
                "instructions": [{"kind": kind, "variationId": variations[new_idx]["_id"]}],
            }
            content_type = SEMANTIC_PATCH
        else:
            field = "fallthrough/variation" if self.target == "fallthrough" else "offVariation"
            env_key = self.environment.replace("~", "~0").replace("/", "~1")
            body = {
                "comment": reason,
                "patch": [{"op": "replace", "path": f"/environments/{env_key}/{field}", "value": new_idx}],
            }
            content_type = "application/json"
        self.client.request(
            "PATCH",
            self.url + self._path(flag_key),
            headers=self._headers,
            json_body=body,
            content_type=content_type,
        )
        return self._change(flag_key, previous, variant, changed=True, dry_run=False, reason=reason, **detail)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "project": self.project,
            "environment": self.environment,
            "target": self.target,
            "patch_format": self.patch_format,
        }
