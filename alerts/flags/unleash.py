"""Unleash: switch the variant a feature's strategy serves, or toggle the feature.

Two modes, both per environment through the Unleash Admin API
(``Authorization: <admin or personal access token>``):

* ``mode="strategy-variant"`` (default): the served model version is the single
  strategy variant of one of the feature's strategies in the environment (Unleash 5+
  puts variants on strategies). Reading:
  ``GET /api/admin/projects/{project}/features/{feature}``
  (https://docs.getunleash.io/reference/api/unleash/get-feature); switching replaces
  the strategy with the same name, parameters, constraints, segments, title and
  order and a ``variants`` list holding only the chosen variant (weight 1000):
  ``PUT /api/admin/projects/{project}/features/{feature}/environments/{env}/strategies/{id}``
  (https://docs.getunleash.io/reference/api/unleash/update-feature-strategy,
  variants: https://docs.getunleash.io/reference/strategy-variants).
* ``mode="toggle"``: the variants are ``"on"`` and ``"off"``; switching is
  ``POST .../features/{feature}/environments/{env}/on`` or ``.../off``
  (https://docs.getunleash.io/reference/api/unleash/toggle-feature-environment-on,
  https://docs.getunleash.io/reference/api/unleash/toggle-feature-environment-off).
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

__all__ = ["UnleashStore"]

UnleashMode = Literal["strategy-variant", "toggle"]
MODES: tuple[str, ...] = ("strategy-variant", "toggle")
BAD_MODE = "unleash mode must be one of {valid}; got {mode!r}"
NO_ENVIRONMENT = "feature {flag_key!r} has no environment {environment!r}; environments: {envs}"
NO_STRATEGY = "feature {flag_key!r} in {environment!r} has no strategy {which}; strategies: {ids}"
AMBIGUOUS = (
    "feature {flag_key!r} in {environment!r} serves {n} variants {names}: no single version "
    "is live; set one by hand or pass the variant explicitly"
)
# The fields an Unleash strategy body may carry when it is replaced (PUT).
_STRATEGY_FIELDS = (
    "name",
    "title",
    "disabled",
    "sortOrder",
    "constraints",
    "parameters",
    "segments",
)


def _q(part: str) -> str:
    return quote(part, safe="")


class UnleashStore(FlagStore):
    """A feature in one Unleash project and environment."""

    kind = "unleash"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        project: str = "default",
        environment: str = "production",
        mode: UnleashMode = "strategy-variant",
        strategy_id: str | None = None,
        variants: list[str] | None = None,
        stickiness: str = "default",
        client: HttpClient | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(BAD_MODE.format(valid=list(MODES), mode=mode))
        self.url = url.rstrip("/")
        self._token = token
        self.project = project
        self.environment = environment
        self.mode = mode
        self.strategy_id = strategy_id
        self.known_variants = list(variants) if variants else None
        self.stickiness = stickiness
        self.client = client or HttpClient()

    # -- helpers ---------------------------------------------------------------
    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token}

    def _feature_path(self, flag_key: str) -> str:
        return f"/api/admin/projects/{_q(self.project)}/features/{_q(flag_key)}"

    def _env(self, flag_key: str) -> dict[str, Any]:
        try:
            resp = self.client.request("GET", self.url + self._feature_path(flag_key), headers=self._headers)
        except FlagStoreHTTPError as exc:
            if exc.status == 404:
                raise UnknownFlagError(
                    UNKNOWN_FLAG.format(
                        flag_key=flag_key,
                        where=f"Unleash project {self.project!r}",
                        available="(see the Unleash UI)",
                    )
                ) from exc
            raise
        feature = resp.json() or {}
        envs = feature.get("environments") or []
        for env in envs:
            if env.get("name") == self.environment:
                return env
        raise FlagStoreError(
            NO_ENVIRONMENT.format(
                flag_key=flag_key,
                environment=self.environment,
                envs=[e.get("name") for e in envs],
            )
        )

    def _strategy(self, flag_key: str, env: dict[str, Any]) -> dict[str, Any]:
        strategies = env.get("strategies") or []
        if self.strategy_id is not None:
            for s in strategies:
                if s.get("id") == self.strategy_id:
                    return s
            which = repr(self.strategy_id)
        else:
            active = [s for s in strategies if not s.get("disabled")]
            if active:
                return sorted(active, key=lambda s: s.get("sortOrder", 0))[0]
            which = "(none enabled)"
        raise FlagStoreError(
            NO_STRATEGY.format(
                flag_key=flag_key,
                environment=self.environment,
                which=which,
                ids=[s.get("id") for s in strategies],
            )
        )

    def _served(self, flag_key: str, strategy: dict[str, Any]) -> str:
        live = [v for v in strategy.get("variants") or [] if v.get("weight", 0) > 0]
        if len(live) != 1:
            raise FlagStoreError(
                AMBIGUOUS.format(
                    flag_key=flag_key,
                    environment=self.environment,
                    n=len(live),
                    names=[v.get("name") for v in live],
                )
            )
        return str(live[0]["name"])

    # -- contract --------------------------------------------------------------
    def current(self, flag_key: str) -> str:
        env = self._env(flag_key)
        if self.mode == "toggle":
            return "on" if env.get("enabled") else "off"
        return self._served(flag_key, self._strategy(flag_key, env))

    def set_variant(self, flag_key: str, variant: str, *, reason: str, dry_run: bool = False) -> FlagChange:
        check_reason(reason)
        env = self._env(flag_key)
        if self.mode == "toggle":
            check_variant(flag_key, variant, ["on", "off"])
            previous = "on" if env.get("enabled") else "off"
            if previous == variant or dry_run:
                return self._change(flag_key, previous, variant, changed=False, dry_run=dry_run, reason=reason)
            path = f"{self._feature_path(flag_key)}/environments/{_q(self.environment)}/{variant}"
            self.client.request("POST", self.url + path, headers=self._headers)
            return self._change(flag_key, previous, variant, changed=True, dry_run=False, reason=reason)

        strategy = self._strategy(flag_key, env)
        defined = [str(v.get("name")) for v in strategy.get("variants") or []]
        # Switching leaves one variant on the strategy, so configure `variants` to be able
        # to switch back later; without it only the variants defined now are valid.
        check_variant(flag_key, variant, self.known_variants or defined)
        try:
            previous: str | None = self._served(flag_key, strategy)
        except FlagStoreError:
            previous = None  # a split rollout: any single variant is a change
        if previous == variant or dry_run:
            return self._change(
                flag_key,
                previous,
                variant,
                changed=False,
                dry_run=dry_run,
                reason=reason,
                strategy_id=strategy.get("id"),
            )
        old = {str(v.get("name")): v for v in strategy.get("variants") or []}
        chosen = {
            "name": variant,
            "weight": 1000,
            "weightType": "variable",
            "stickiness": old.get(variant, {}).get("stickiness", self.stickiness),
            "payload": old.get(variant, {}).get("payload") or {"type": "string", "value": variant},
        }
        body = {k: strategy[k] for k in _STRATEGY_FIELDS if k in strategy}
        body["variants"] = [chosen]
        path = (
            f"{self._feature_path(flag_key)}/environments/{_q(self.environment)}/strategies/{_q(str(strategy['id']))}"
        )
        self.client.request("PUT", self.url + path, headers=self._headers, json_body=body)
        return self._change(
            flag_key,
            previous,
            variant,
            changed=True,
            dry_run=False,
            reason=reason,
            strategy_id=strategy.get("id"),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "project": self.project,
            "environment": self.environment,
            "mode": self.mode,
            "strategy_id": self.strategy_id,
        }
