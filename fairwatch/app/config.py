"""Configuration: one YAML file, every key overridable by ``FAIRWATCH_…`` variables.

With no file at all every command runs on embedded defaults. Bad configuration
fails at start with the key and the reason (:class:`ConfigError`, exit code 3).

Environment variables: ``FAIRWATCH_<KEY>`` for a top-level key and
``FAIRWATCH_<SECTION>__<KEY>`` for a nested one, values in YAML syntax:
``FAIRWATCH_MIN_DECISIONS=200``, ``FAIRWATCH_JOIN__TTL=60d``,
``FAIRWATCH_WINDOWS="[1h, 24h]"``. A variable named by a ``*_env`` field (``alerts.admin.token_env``
= ``FAIRWATCH_ADMIN_TOKEN``, ``alerts.notify.webhook_token_env``, …) holds a secret and is never
read as a key.

>>> load_config(env={"FAIRWATCH_ADMIN_TOKEN": "s3cret"}).alerts.admin.token_env
'FAIRWATCH_ADMIN_TOKEN'

>>> load_config(env={"FAIRWATCH_MIN_DECISIONS": "200"}).min_decisions
200
>>> load_config(env={"FAIRWATCH_JOIN__TTL": "60d"}).join.ttl
5184000.0
>>> load_config(env={"FAIRWATCH_MIN_DECISION": "1"})
Traceback (most recent call last):
...
fairwatch.app.config.ConfigError: FAIRWATCH_MIN_DECISION: unknown key 'min_decision' (env); did you mean ...
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from fairwatch.alerts.config import AlertsConfig
from fairwatch.errors import FairwatchError
from fairwatch.monitor.engine import EngineSettings
from fairwatch.monitor.windows import WindowSpec, parse_duration

__all__ = ["Config", "ConfigError", "load_config", "EXIT_CONFIG", "NON_CONFIG_ENV"]

EXIT_CONFIG = 3
ENV_PREFIX = "FAIRWATCH_"
#: Variables with the prefix that are not configuration keys.
NON_CONFIG_ENV = frozenset(
    {"FAIRWATCH_CONFIG", "FAIRWATCH_KAFKA_BOOTSTRAP", "FAIRWATCH_POSTGRES_DSN", "FAIRWATCH_CACHE_DIR"}
)


class ConfigError(FairwatchError):
    """Bad configuration: names the key and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _duration(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)


class ModelConfig(_Section):
    label_maturity: Duration = 0.0
    reference_groups: dict[str, str] = {}


class JoinConfig(_Section):
    ttl: Duration = 30 * 86400.0
    memory_capacity: int = Field(500_000, ge=1)
    max_waiting_outcomes: int = Field(100_000, ge=0)
    spill_path: str | None = None


class SimulatorConfig(_Section):
    seed: int = Field(7, ge=0)
    rate: float = Field(5.0, gt=0)  # decisions per simulated second
    speed: float = Field(120.0, gt=0)  # simulated seconds per wall second
    scenario: Literal["none", "dp-drop", "calibration-drift", "label-shift", "small-group-noise"] = "dp-drop"
    drift_at: Duration = 2 * 3600.0
    outcome_delay: Duration = 1800.0  # median delay of outcomes (lognormal)


class KafkaConfig(_Section):
    """Kafka source of ``fairwatch run``; ``options`` pass through to the client (security_protocol,
    sasl_mechanism, sasl_plain_username, ssl_cafile, … as named by kafka-python)."""

    bootstrap_servers: str = "localhost:9092"
    group_id: str = "fairwatch"
    group_instance_id: str | None = None  # static membership for rolling restarts
    client: Literal["kafka-python", "confluent"] = "kafka-python"
    decisions_topic: str = "fairness.decisions"
    outcomes_topic: str = "fairness.outcomes"
    deadletter_topic: str = "fairness.deadletter"
    max_poll_records: int = Field(10_000, ge=1)
    #: a group join not complete after this long: close the consumer and join again (with backoff)
    join_timeout: Duration = 60.0
    #: ``/healthz`` fails (Kubernetes restarts the pod) after this long with neither group
    #: membership nor records applied
    liveness_timeout: Duration = 300.0
    options: dict[str, Any] = {}


class StateConfig(_Section):
    url: str = "sqlite:///fairwatch-state.db"  # or postgresql://user@host/db
    checkpoint_interval: Duration = 5.0


class PipelineRunsConfig(_Section):
    """Where Tier ≥ 2 incidents start intervention pipeline runs (separate processes)."""

    enabled: bool = False
    run_dir: str = "pipeline-runs"
    max_concurrent: int = Field(1, ge=1, le=16)


class SchedulerConfig(_Section):
    """Background jobs of ``fairwatch run`` (apscheduler, UTC; cron fields: minute hour day month day_of_week)."""

    enabled: bool = True
    monthly_export: str = "5 0 1 * *"  # the previous month's audit export
    weekly_summary: str = "10 0 * * mon"  # the last 7 days, JSON + Markdown
    retention: str = "30 3 * * *"  # drop per-day statistics and exports past retention
    misfire_grace_time: Duration = 6 * 3600.0  # a cron job missed by less than this still runs (once)
    catch_up: bool = True  # at start, export the previous month if its export is missing


class AuditConfig(_Section):
    """Per-day statistics for the monthly audit export, its schedule and retention (docs/files.md).

    The audit log itself is ``alerts.audit_path``.
    """

    daily_stats: bool = True
    daily_db: str | None = None  # default: beside the SQLite state file (<state>.daily.db)
    export_dir: str = "audit-exports"
    summary_dir: str = "audit-summaries"
    daily_retention: Duration = 400 * 86400.0
    export_retention: Duration = 7 * 365 * 86400.0
    scheduler: SchedulerConfig = SchedulerConfig()

    def daily_path(self, state_url: str) -> str | None:
        """Where per-day statistics live: a SQLite file beside a SQLite state, the state database
        itself for PostgreSQL (shared by all replicas), or ``daily_db``; ``None`` when disabled."""
        if not self.daily_stats:
            return None
        if self.daily_db:
            return self.daily_db
        if state_url.startswith("sqlite:///"):
            path = state_url[len("sqlite:///") :]
            return None if path == ":memory:" else str(Path(path).with_suffix(".daily.db"))
        if state_url.startswith(("postgresql://", "postgres://")):
            return state_url
        return None


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    """The whole configuration; every field has an embedded default."""

    metrics: MetricsConfig = MetricsConfig()
    evaluation_interval: Duration = 10.0
    windows: list[str] = ["1h", "24h", "7d"]
    buckets_per_window: int = Field(60, ge=1, le=10_000)
    calibration_bins: int = Field(10, ge=1, le=1000)
    min_decisions: int = Field(100, ge=1)
    min_labeled: int = Field(50, ge=1)
    allowed_lateness: Duration = 300.0
    max_future_skew: Duration = 300.0
    confidence_level: float = Field(0.95, gt=0, lt=1)
    max_groups_per_attribute: int = Field(50, ge=1, le=10_000)
    attributes: list[str] | None = None
    intersections: list[list[str]] | None = None
    reference_groups: dict[str, str] = {}
    models: dict[str, ModelConfig] = {}
    join: JoinConfig = JoinConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    kafka: KafkaConfig = KafkaConfig()
    state: StateConfig = StateConfig()
    alerts: AlertsConfig = AlertsConfig()
    pipeline_runs: PipelineRunsConfig = PipelineRunsConfig()
    audit: AuditConfig = AuditConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _check(self) -> Config:
        for w in self.windows:
            try:
                WindowSpec.parse(w, buckets=self.buckets_per_window)
            except ValueError as exc:
                raise ValueError(f"windows: {exc}") from None
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows: names must be unique, got {self.windows!r}")
        for name, m in self.models.items():
            if m.label_maturity > self.join.ttl:
                raise ValueError(
                    f"models.{name}.label_maturity: {m.label_maturity:g} s is longer than "
                    f"join.ttl ({self.join.ttl:g} s): outcomes would expire before they mature"
                )
        if not self.state.url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"state.url: expected sqlite:///PATH or postgresql://…, got {self.state.url!r}")
        from fairwatch.app.scheduler import check_cron

        for key in ("monthly_export", "weekly_summary", "retention"):
            err = check_cron(getattr(self.audit.scheduler, key))
            if err:
                raise ValueError(f"audit.scheduler.{key}: {err}")
        for inter in self.intersections or ():
            if not 2 <= len(inter) <= 3:
                raise ValueError(f"intersections: each needs 2 or 3 attributes, got {inter!r}")
        return self

    def all_windows(self) -> tuple[str, ...]:
        """The configured windows plus those the alert policy confirms with (5m by 15m, …)."""
        wanted = [*self.windows, *self.alerts.windows()]
        return tuple(sorted(dict.fromkeys(wanted), key=parse_duration))

    def engine_settings(self) -> EngineSettings:
        refs = dict(self.reference_groups)
        return EngineSettings(
            windows=self.all_windows(),
            buckets=self.buckets_per_window,
            bins=self.calibration_bins,
            min_decisions=self.min_decisions,
            min_labeled=self.min_labeled,
            allowed_lateness=self.allowed_lateness,
            max_future_skew=self.max_future_skew,
            confidence=self.confidence_level,
            max_groups=self.max_groups_per_attribute,
            attributes=tuple(self.attributes) if self.attributes is not None else None,
            intersections=(tuple(tuple(i) for i in self.intersections) if self.intersections is not None else None),
            reference_groups=refs,
            model_reference_groups={name: dict(m.reference_groups) for name, m in self.models.items()},
            label_maturity={name: m.label_maturity for name, m in self.models.items()},
            join_ttl=self.join.ttl,
            join_capacity=self.join.memory_capacity,
            join_max_waiting=self.join.max_waiting_outcomes,
            join_spill_path=self.join.spill_path,
        )


def _known_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _secret_env_names(data: Any) -> set[str]:
    """Values of every ``*_env`` key in a configuration tree: names of variables that hold secrets."""
    out: set[str] = set()
    if isinstance(data, Mapping):
        for k, v in data.items():
            if isinstance(k, str) and k.endswith("_env") and isinstance(v, str):
                out.add(v)
            else:
                out |= _secret_env_names(v)
    return out


def _env_overrides(env: Mapping[str, str], secrets: set[str] = frozenset()) -> dict[str, Any]:
    """``FAIRWATCH_…`` variables as a configuration tree, without those in ``secrets``."""
    out: dict[str, Any] = {}
    # a *_env key set from the environment names a secret variable too
    secrets = set(secrets) | {raw for var, raw in env.items() if var.startswith(ENV_PREFIX) and var.endswith("_ENV")}
    for var, raw in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var in NON_CONFIG_ENV or var.startswith("FAIRWATCH_TEST_"):
            continue
        if var in secrets:
            continue
        path = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        model: type[BaseModel] | None = Config
        ann: Any = None
        for depth, key in enumerate(path):
            fields = model.model_fields if model is not None else {}
            if model is not None and key not in fields:
                hint = difflib.get_close_matches(key, list(fields), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(fields)}"
                raise ConfigError(var, f"unknown key {'.'.join(path[: depth + 1])!r} (env){extra}")
            ann = fields[key].annotation if model is not None else None
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if _is_text(ann, path[-1]):
            value: Any = raw  # passwords like "123" or "yes" stay text, never a number or a bool
        else:
            try:
                value = yaml.safe_load(raw) if raw.strip() else raw
            except yaml.YAMLError as exc:
                raise ConfigError(var, f"not a YAML value ({exc.__class__.__name__})") from None
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


_SECRET_WORDS = ("password", "token", "secret", "key", "url", "dsn")


def _secret_word(loc: tuple) -> bool:
    """Whether the last key of ``loc`` names what may be a secret (its value is never shown)."""
    return bool(loc) and any(w in str(loc[-1]).lower() for w in _SECRET_WORDS)


def _unknown_key_hint(loc: tuple) -> str:
    """``"; did you mean 'windows'?"`` (or the keys known there) for an unknown key at ``loc``.

    >>> _unknown_key_hint(("windowz",))
    "; did you mean 'windows'?"
    >>> _unknown_key_hint(("kafka", "zzz")).startswith("; known: ")
    True
    """
    model: Any = Config
    for part in loc[:-1]:
        ann = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""  # a mapping of the user's own keys (a model's name, …): nothing to suggest
        model = ann
    fields = list(model.model_fields)
    hint = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(fields)}"


def _is_text(annotation: Any, key: str) -> bool:
    """A text field (``str`` / ``str | None``), or a free-form key that looks like a credential."""
    if annotation is str or annotation == (str | None):
        return True
    return annotation is None and any(w in key for w in _SECRET_WORDS)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@functools.cache
def _DEFAULTS() -> dict:  # noqa: N802 - a constant, computed once
    return Config().model_dump()


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides, validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get("FAIRWATCH_CONFIG")
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(p), f"cannot read config file ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(str(p), f"not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(str(p), f"must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded or {}
    secrets = _secret_env_names(_DEFAULTS()) | _secret_env_names(data)
    data = _merge(data, _env_overrides(env, secrets))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key{_unknown_key_hint(err['loc'])}"
        elif "input" in err and err["type"] != "value_error" and not _secret_word(err["loc"]):
            msg = f"{msg} (got {err['input']!r})"  # never the value of a key that may hold a secret
        if key == "config" and ": " in msg:  # whole-config checks name their key themselves
            key, _, msg = msg.partition(": ")
        raise ConfigError(key, msg) from None
