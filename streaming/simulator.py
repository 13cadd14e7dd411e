"""Deterministic loan-approval event simulator (the playbook's walkthrough system).

Applicants arrive as a Poisson process. Each has ``race`` and ``sex``, features
(``credit_score``, ``income``, ``zip_code`` -- a race proxy through residential
clustering --, ``employment_history``) and a true repayment probability given by a
logistic model of the features. The served model scores ``P(repay)`` (perfectly
calibrated for the baseline version) and approves when the score reaches
``APPROVAL_THRESHOLD``. The true label is drawn from the true probability and is
delivered later as an ``outcome/v1`` event, after a delay drawn from
:class:`OutcomeDelay`; a share of outcomes never arrives.

Drift scenarios (:data:`SCENARIOS`) switch on for decisions made at or after
``start + drift_at``:

``none``
    nothing changes.
``dp-drop``
    the candidate version penalises ``drift_group`` (a logit shift), so its
    disparate impact against the best group steps from about 0.95 to
    ``DP_DROP_TARGET_DI`` (0.60).
``calibration-drift``
    the candidate's reported scores for ``drift_group`` become overconfident by
    ``CALIBRATION_SHIFT``; decisions are unchanged, so only labels (ECE) show it.
``label-shift``
    the world changes: ``drift_group``'s true repayment log-odds move by
    ``LABEL_SHIFT_LOGIT`` while every model stays the same.
``small-group-noise``
    no unfairness at all; ``drift_group``'s population share drops to
    ``small_group_share``, so its rates become noisy.

``dp-drop`` and ``calibration-drift`` are bugs of the candidate version: after
``set_model_version(baseline_version)`` (a rollback) later decisions are fair again.
``label-shift`` and ``small-group-noise`` are changes of the world and survive a
rollback.

Determinism: every random draw comes from fixed-size applicant blocks whose
generator is seeded by ``(seed, block number)``, and the event order is total
(delivery time, decisions before outcomes, decision number), so the same seed
gives the same bytes however the simulated time is cut into ``advance`` steps.
Times are kept in integer milliseconds, the precision of the ``ts`` field, so a
:class:`SimEvent`'s ``time`` equals its ``ts`` exactly.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import orjson

if TYPE_CHECKING:  # pandas loads only for decisions_frame (the pipeline's table), not for the demo's stream
    import pandas as pd

__all__ = [
    "APPROVAL_THRESHOLD",
    "CALIBRATION_SHIFT",
    "DECISIONS_TOPIC",
    "DEFAULT_START",
    "DELAY_KINDS",
    "DP_DROP_TARGET_DI",
    "GROUPS",
    "LABEL_SHIFT_LOGIT",
    "OUTCOMES_TOPIC",
    "RACE_SHARES",
    "SCENARIOS",
    "SEX_SHARES",
    "LoanSimulator",
    "OutcomeDelay",
    "SimBatch",
    "SimEvent",
    "write_jsonl",
]

DECISIONS_TOPIC = "fairness.decisions"
OUTCOMES_TOPIC = "fairness.outcomes"
_TOPICS = np.array([DECISIONS_TOPIC, OUTCOMES_TOPIC], dtype=object)

#: 2026-11-01T00:00:00Z, the default simulated start.
DEFAULT_START = 1793491200.0

Scenario = Literal["none", "dp-drop", "calibration-drift", "label-shift", "small-group-noise"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)
DelayKind = Literal["lognormal", "fixed", "exponential", "none"]
DELAY_KINDS: tuple[str, ...] = get_args(DelayKind)

RACES = ("White", "Black", "Hispanic", "Asian")
SEXES = ("Male", "Female")
#: Protected attributes and their groups, in code order.
GROUPS: dict[str, tuple[str, ...]] = {"race": RACES, "sex": SEXES}
RACE_SHARES = (0.62, 0.13, 0.18, 0.07)
SEX_SHARES = (0.5, 0.5)

APPROVAL_THRESHOLD = 0.7
#: Disparate impact of the dp-drop group against the best group after the drift.
DP_DROP_TARGET_DI = 0.60
#: Reported-score overconfidence of the calibration-drift group.
CALIBRATION_SHIFT = 0.15
#: Change of the label-shift group's true repayment log-odds.
LABEL_SHIFT_LOGIT = -1.0

MSG_CHOICE = "{field}: must be one of {choices}, got {value!r}"
MSG_DRIFT_GROUP = (
    "drift_group: must be an (attribute, group) pair with attribute in {attributes} "
    "and group valid for it ({groups}), got {value!r}"
)
MSG_POSITIVE = "{field}: must be a finite number > 0, got {value!r}"
MSG_NON_NEGATIVE = "{field}: must be a finite number >= 0, got {value!r}"
MSG_SHARE = "{field}: must be in {interval}, got {value!r}"
MSG_SEED = "seed: must be an integer >= 0, got {value!r}"
MSG_VERSIONS = "candidate_version: must differ from baseline_version, got {value!r}"

# --- the world -------------------------------------------------------------------
# Residential clustering makes zip_code a race proxy: an applicant lives in the
# neighbourhood of their race with probability HOME_SHARE, else in a random one.
HOME_SHARE = 0.6
ZIPS_PER_HOOD = 10
ZIP_CODES = tuple(f"{48201 + 20 * hood + k:05d}" for hood in range(4) for k in range(ZIPS_PER_HOOD))
HOOD_INCOME_MEDIAN = np.array([62_000.0, 55_000.0, 57_000.0, 64_000.0])
FEMALE_INCOME_FACTOR = 0.92
INCOME_SIGMA = 0.45
# Race -> historical redlining -> credit score (DAG of the playbook walkthrough).
CREDIT_MEAN = np.array([700.0, 697.8, 698.7, 702.0])
CREDIT_SD = 70.0
# Sex -> employment history (years), gamma(shape, scale) by sex.
EMPLOYMENT_SHAPE = 2.0
EMPLOYMENT_SCALE = np.array([3.6, 3.3])
# True log-odds of repayment.
BETA_0, BETA_CREDIT, BETA_INCOME, BETA_EMPLOYMENT = 1.25, 1.3, 0.6, 0.35

SCORE_FLOOR, SCORE_CEIL = 1e-4, 1.0 - 1e-4  # keep repr() out of exponent notation
MAX_DELAY_S = 10 * 365 * 86400.0
BLOCK = 16_384

SCORE_DECIMALS = 4
MAX_INCOME = 2_000_000


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message as it would be produced to Kafka at simulated time ``time``."""

    time: float
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class OutcomeDelay:
    """Distribution of the time from a decision to its observed outcome.

    ``median_s`` is the median delay in seconds (the constant for ``fixed``);
    ``sigma`` the log-scale spread of ``lognormal``; ``none`` delivers the outcome
    in the same millisecond as its decision. A ``never_share`` of outcomes never
    arrives.

    >>> OutcomeDelay(kind="exponential", median_s=60.0).mean_s
    86.5617024533378
    >>> OutcomeDelay(kind="gamma")
    Traceback (most recent call last):
    ...
    ValueError: kind: must be one of ('lognormal', 'fixed', 'exponential', 'none'), got 'gamma'
    """

    kind: DelayKind = "lognormal"
    median_s: float = 300.0
    sigma: float = 1.0
    never_share: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in DELAY_KINDS:
            raise ValueError(MSG_CHOICE.format(field="kind", choices=DELAY_KINDS, value=self.kind))
        _check_number("median_s", self.median_s, positive=self.kind in ("lognormal", "exponential"))
        _check_number("sigma", self.sigma, positive=True)
        _check_share("never_share", self.never_share, closed=True)

    @property
    def mean_s(self) -> float:
        """Mean delay in seconds of the arriving outcomes."""
        if self.kind == "lognormal":
            return self.median_s * math.exp(self.sigma**2 / 2)
        if self.kind == "exponential":
            return self.median_s / math.log(2)
        return 0.0 if self.kind == "none" else self.median_s

    def sample_ms(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` delays in integer milliseconds; -1 marks an outcome that never arrives."""
        if self.kind == "lognormal":
            delay = self.median_s * np.exp(self.sigma * rng.standard_normal(n))
        elif self.kind == "exponential":
            delay = rng.exponential(self.mean_s, n)
        else:
            delay = np.full(n, self.median_s if self.kind == "fixed" else 0.0)
        ms = np.rint(np.minimum(delay, MAX_DELAY_S) * 1000.0).astype(np.int64)
        ms[rng.random(n) < self.never_share] = -1
        return ms


@dataclass(frozen=True, eq=False)
class SimBatch:
    """Columnar events of one :meth:`LoanSimulator.advance_batch` step, in delivery order.

    ``times`` are delivery times (epoch seconds), ``is_outcome`` tells the topic,
    ``values`` holds the encoded events.
    """

    times: np.ndarray
    is_outcome: np.ndarray
    values: list[bytes]
    key: bytes

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_decisions(self) -> int:
        return len(self.values) - int(self.is_outcome.sum())

    @property
    def n_outcomes(self) -> int:
        return int(self.is_outcome.sum())

    def events(self) -> list[SimEvent]:
        """The batch as :class:`SimEvent` objects."""
        topics = _TOPICS[self.is_outcome.view(np.int8)].tolist()
        key = itertools.repeat(self.key)
        return list(map(SimEvent, self.times.tolist(), topics, key, self.values))

    def topic_values(self, outcomes: bool) -> list[bytes]:
        """The values of one topic, in order."""
        picked = np.flatnonzero(self.is_outcome == outcomes).tolist()
        if len(picked) < 2:
            return [self.values[i] for i in picked]
        return list(operator.itemgetter(*picked)(self.values))


@dataclass
class _Applicants:
    """Pre-drawn applicants: everything that does not depend on the served version."""

    index: np.ndarray  # global decision number
    ms: np.ndarray  # arrival, epoch milliseconds
    race: np.ndarray  # code into RACES
    sex: np.ndarray  # code into SEXES
    zip: np.ndarray  # code into ZIP_CODES
    credit: np.ndarray
    income: np.ndarray
    employment: np.ndarray  # years, one decimal
    logit: np.ndarray  # log-odds of repayment from the features (what models learn)
    p_true: np.ndarray  # true repayment probability (after any label shift)
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def take(self, sl: slice) -> _Applicants:
        return _Applicants(*(getattr(self, f)[sl] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[_Applicants]) -> _Applicants:
        if len(parts) == 1:
            return parts[0]
        fields = _Applicants.__dataclass_fields__
        return _Applicants(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


@dataclass(order=True)
class _Run:
    """One block's outcomes sorted by (delivery, index), consumed from ``pos``."""

    head: int
    block: int
    ms: np.ndarray = field(compare=False)
    index: np.ndarray = field(compare=False)
    label: np.ndarray = field(compare=False)
    pos: int = field(default=0, compare=False)


class LoanSimulator:
    """Seeded stream of loan-approval decisions and their delayed outcomes.

    ``rate`` is the mean number of decisions per simulated second; the candidate
    version is served at start; see the module docstring for the scenarios.

    >>> sim = LoanSimulator(seed=7, rate=1.0, delay=OutcomeDelay(kind="fixed", median_s=1.5))
    >>> events = sim.advance(3.0)
    >>> sim.now - sim.start
    3.0
    >>> [(round(e.time - sim.start, 3), e.topic) for e in events]  # doctest: +NORMALIZE_WHITESPACE
    [(0.69, 'fairness.decisions'), (1.752, 'fairness.decisions'),
     (2.19, 'fairness.outcomes'), (2.39, 'fairness.decisions'),
     (2.439, 'fairness.decisions'), (2.782, 'fairness.decisions')]
    >>> first = orjson.loads(events[0].value)
    >>> first["decision_id"], first["model_version"], first["ts"], first["score"], first["decision"]
    ('7-000000000000', 'v3', '2026-11-01T00:00:00.690Z', 0.8129, 1)
    >>> first["attributes"], first["features"]["zip_code"]
    ({'race': 'White', 'sex': 'Male'}, '48209')
    >>> events[2].value
    b'{"schema":"outcome/v1","decision_id":"7-000000000000","model":"loan-approval","ts":"2026-11-01T00:00:02.190Z","label":1}'
    >>> sim.set_model_version("v2")
    >>> orjson.loads(sim.advance(2.0)[0].value)["model_version"]
    'v2'
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        start: float = DEFAULT_START,
        rate: float = 50.0,
        scenario: Scenario = "none",
        drift_at: float = 3600.0,
        drift_group: tuple[str, str] = ("race", "Black"),
        delay: OutcomeDelay | None = None,
        model: str = "loan-approval",
        baseline_version: str = "v2",
        candidate_version: str = "v3",
        small_group_share: float = 0.01,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(MSG_SEED.format(value=seed))
        if scenario not in SCENARIOS:
            raise ValueError(MSG_CHOICE.format(field="scenario", choices=SCENARIOS, value=scenario))
        _check_number("start", start, positive=True)
        _check_number("rate", rate, positive=True)
        _check_number("drift_at", drift_at, positive=False)
        _check_share("small_group_share", small_group_share, closed=False)
        if (
            not isinstance(drift_group, tuple)
            or len(drift_group) != 2
            or drift_group[0] not in GROUPS
            or drift_group[1] not in GROUPS[drift_group[0]]
        ):
            raise ValueError(MSG_DRIFT_GROUP.format(attributes=tuple(GROUPS), groups=GROUPS, value=drift_group))
        for name, value in (
            ("model", model),
            ("baseline_version", baseline_version),
            ("candidate_version", candidate_version),
        ):
            if not isinstance(value, str) or not 1 <= len(value) <= 128:
                raise ValueError(f"{name}: must be a string of 1..128 characters, got {value!r}")
        if candidate_version == baseline_version:
            raise ValueError(MSG_VERSIONS.format(value=candidate_version))
        self.seed = int(seed)
        self.rate = float(rate)
        self.scenario: str = scenario
        self.drift_at = float(drift_at)
        self.drift_group = drift_group
        self.delay = delay if delay is not None else OutcomeDelay()
        self.model = model
        self.baseline_version = baseline_version
        self.candidate_version = candidate_version
        self.small_group_share = float(small_group_share)
        self._version = candidate_version
        self._start_ms = round(start * 1000)
        self._now_ms = self._start_ms
        self._drift_ms = self._start_ms + round(self.drift_at * 1000)
        self._attr = 0 if drift_group[0] == "race" else 1
        self._code = GROUPS[drift_group[0]].index(drift_group[1])
        self._key = model.encode()
        self._model_json = orjson.dumps(model).decode()
        self._dp_shift = self._solve_dp_shift() if scenario == "dp-drop" else 0.0
        # generation state
        self._blocks = 0
        self._t_rel = 0.0  # last arrival, seconds after start (float, carried across blocks)
        self._pending: _Applicants | None = None
        self._runs: list[_Run] = []
        self._frames = 0

    # --- public ---------------------------------------------------------------------
    @property
    def start(self) -> float:
        """Simulated start, epoch seconds."""
        return self._start_ms / 1000

    @property
    def now(self) -> float:
        """Simulated clock, epoch seconds."""
        return self._now_ms / 1000

    @property
    def model_version(self) -> str:
        """The version served to subsequent decisions."""
        return self._version

    @property
    def pending_outcomes(self) -> int:
        """Outcomes decided but not yet delivered (or generated ahead of the clock)."""
        return sum(len(r.ms) - r.pos for r in self._runs)

    def set_model_version(self, version: str) -> None:
        """Serve ``version`` (baseline or candidate) to decisions after the current clock."""
        choices = (self.baseline_version, self.candidate_version)
        if version not in choices:
            raise ValueError(MSG_CHOICE.format(field="version", choices=choices, value=version))
        self._version = version

    def advance(self, seconds: float) -> list[SimEvent]:
        """Events delivered in ``(now, now + seconds]``, in delivery order; moves the clock.

        ``seconds`` is rounded to whole milliseconds.
        """
        return self.advance_batch(seconds).events()

    def advance_batch(self, seconds: float) -> SimBatch:
        """Like :meth:`advance`, but columnar (no per-event objects besides the bytes)."""
        _check_number("seconds", seconds, positive=False)
        target = self._now_ms + round(seconds * 1000)
        apps = self._take_decisions(target)
        o_ms, o_index, o_label = self._take_outcomes(target)
        values = self._encode_decisions(apps) + self._encode_outcomes(o_ms, o_index, o_label)
        self._now_ms = target
        nd, no = len(apps), len(o_ms)
        is_outcome = np.zeros(nd + no, dtype=bool)
        if no:
            # total order: delivery time, then decisions before outcomes, then decision number
            rank = np.lexsort((o_index, o_ms))
            slot = np.arange(no) + np.searchsorted(apps.ms, o_ms[rank], side="right")
            is_outcome[slot] = True
            order = np.empty(nd + no, dtype=np.int64)
            order[slot] = nd + rank
            order[~is_outcome] = np.arange(nd)
            ms = np.concatenate([apps.ms, o_ms])[order]
            if nd + no > 1:
                values = list(operator.itemgetter(*order.tolist())(values))
        else:
            ms = apps.ms
        return SimBatch(ms / 1000.0, is_outcome, values, self._key)

    def decisions_frame(self, n: int) -> pd.DataFrame:
        """``n`` applicants decided at the current clock and served version, for offline use.

        Includes ground truth (``p_repay``, ``label``) and ``drifted`` (whether the
        scenario altered the row). Draws from its own seeded stream, so it never
        changes the event stream; successive calls give fresh applicants.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n: must be an integer >= 0, got {n!r}")
        rng = _rng(self.seed, 1, self._frames)
        self._frames += 1
        apps = self._draw(rng, np.full(n, self._now_ms, dtype=np.int64), 0)
        score, decision = self._score(apps)
        drifted = self._active(apps)
        if self.scenario in ("dp-drop", "calibration-drift"):
            drifted &= self._version == self.candidate_version
        elif self.scenario in ("none", "small-group-noise"):
            drifted[:] = False
        import pandas as pd

        return pd.DataFrame(
            {
                "race": pd.Categorical.from_codes(apps.race, RACES),
                "sex": pd.Categorical.from_codes(apps.sex, SEXES),
                "credit_score": apps.credit,
                "income": apps.income,
                "zip_code": np.asarray(ZIP_CODES, dtype=object)[apps.zip],
                "employment_history": apps.employment,
                "p_repay": apps.p_true,
                "score": score,
                "decision": decision,
                "label": apps.label,
                "model_version": self._version,
                "drifted": drifted,
            }
        )

    # --- generation -----------------------------------------------------------------
    def _in_group(self, apps: _Applicants) -> np.ndarray:
        return (apps.race if self._attr == 0 else apps.sex) == self._code

    def _active(self, apps: _Applicants) -> np.ndarray:
        return self._in_group(apps) & (apps.ms >= self._drift_ms)

    def _draw(self, rng: np.random.Generator, ms: np.ndarray, first: int) -> _Applicants:
        """Applicants arriving at ``ms``; draws in a fixed order from ``rng``."""
        n = len(ms)
        after = ms >= self._drift_ms
        race_u, sex_u, hood_u, zip_u, label_u = rng.random((5, n))
        z_credit, z_income = rng.standard_normal((2, n))
        years = rng.standard_gamma(EMPLOYMENT_SHAPE, n)

        race_cum = np.cumsum(RACE_SHARES)
        sex_cum = np.cumsum(SEX_SHARES)
        race = np.searchsorted(race_cum, race_u * race_cum[-1], side="right").astype(np.int8)
        sex = np.searchsorted(sex_cum, sex_u * sex_cum[-1], side="right").astype(np.int8)
        if self.scenario == "small-group-noise" and after.any():
            shares = RACE_SHARES if self._attr == 0 else SEX_SHARES
            small = _small_shares(shares, self._code, self.small_group_share)
            cum = np.cumsum(small)
            codes = np.searchsorted(cum, (race_u if self._attr == 0 else sex_u) * cum[-1], "right")
            codes = np.minimum(codes, len(shares) - 1).astype(np.int8)
            if self._attr == 0:
                race = np.where(after, codes, race).astype(np.int8)
            else:
                sex = np.where(after, codes, sex).astype(np.int8)
        race = np.minimum(race, len(RACES) - 1)
        sex = np.minimum(sex, len(SEXES) - 1)

        home = hood_u < HOME_SHARE
        hood = np.where(home, race, (hood_u - HOME_SHARE) / (1 - HOME_SHARE) * 4).astype(np.int8)
        hood = np.minimum(hood, 3)
        zip_code = (hood * ZIPS_PER_HOOD + np.minimum(zip_u * ZIPS_PER_HOOD, 9)).astype(np.int8)
        credit = np.clip(np.rint(CREDIT_MEAN[race] + CREDIT_SD * z_credit), 300, 850)
        median = HOOD_INCOME_MEDIAN[hood] * np.where(sex == 1, FEMALE_INCOME_FACTOR, 1.0)
        income = np.rint(median * np.exp(INCOME_SIGMA * z_income) / 100.0) * 100.0
        income = np.clip(income, 1000.0, MAX_INCOME)
        employment = np.minimum(np.round(years * EMPLOYMENT_SCALE[sex], 1), 45.0)

        logit = (
            BETA_0
            + BETA_CREDIT * (credit - 690.0) / 75.0
            + BETA_INCOME * np.log(income / 55_000.0)
            + BETA_EMPLOYMENT * (np.minimum(employment, 20.0) - 6.0) / 5.0
        )
        true_logit = logit
        if self.scenario == "label-shift":
            group = (race if self._attr == 0 else sex) == self._code
            true_logit = logit + np.where(group & after, LABEL_SHIFT_LOGIT, 0.0)
        p_true = _sigmoid(true_logit)
        return _Applicants(
            index=np.arange(first, first + n, dtype=np.int64),
            ms=ms,
            race=race,
            sex=sex,
            zip=zip_code,
            credit=credit.astype(np.int64),
            income=income.astype(np.int64),
            employment=employment,
            logit=logit,
            p_true=p_true,
            label=(label_u < p_true).astype(np.int8),
        )

    def _generate_block(self) -> _Applicants:
        b = self._blocks
        self._blocks += 1
        rng = _rng(self.seed, 0, b)
        t_rel = self._t_rel + np.cumsum(rng.exponential(1.0 / self.rate, BLOCK))
        self._t_rel = float(t_rel[-1])
        ms = self._start_ms + np.ceil(t_rel * 1000.0).astype(np.int64)
        apps = self._draw(rng, ms, b * BLOCK)
        delay = self.delay.sample_ms(rng, BLOCK)
        keep = delay >= 0
        o_ms = apps.ms[keep] + delay[keep]
        o_index = apps.index[keep]
        order = np.lexsort((o_index, o_ms))
        if len(order):
            run = _Run(int(o_ms[order[0]]), b, o_ms[order], o_index[order], apps.label[keep][order])
            heapq.heappush(self._runs, run)
        return apps

    def _take_decisions(self, target: int) -> _Applicants:
        parts = [self._pending] if self._pending is not None else []
        last = int(parts[0].ms[-1]) if parts else self._now_ms
        while last <= target:
            parts.append(self._generate_block())
            last = int(parts[-1].ms[-1])
        apps = _Applicants.concat(parts)
        cut = int(np.searchsorted(apps.ms, target, side="right"))
        self._pending = apps.take(slice(cut, None))
        return apps.take(slice(0, cut))

    def _take_outcomes(self, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ms, index, label = [], [], []
        runs = self._runs
        while runs and runs[0].head <= target:
            run = heapq.heappop(runs)
            end = int(np.searchsorted(run.ms, target, side="right"))
            ms.append(run.ms[run.pos : end])
            index.append(run.index[run.pos : end])
            label.append(run.label[run.pos : end])
            run.pos = end
            if end < len(run.ms):
                if end > len(run.ms) // 2:  # compact, so a long tail holds little memory
                    run.ms, run.index, run.label = (a[end:].copy() for a in (run.ms, run.index, run.label))
                    run.pos = 0
                run.head = int(run.ms[run.pos])
                heapq.heappush(runs, run)
        if not ms:
            empty = np.empty(0, np.int64)
            return empty, empty, np.empty(0, np.int8)
        return np.concatenate(ms), np.concatenate(index), np.concatenate(label)

    # --- models ---------------------------------------------------------------------
    def _score(self, apps: _Applicants) -> tuple[np.ndarray, np.ndarray]:
        """Reported scores (rounded to 1e-6) and decisions of the served version."""
        logit = apps.logit
        shift_score = None
        if self._version == self.candidate_version and self.scenario in (
            "dp-drop",
            "calibration-drift",
        ):
            active = self._active(apps)
            if self.scenario == "dp-drop":
                logit = logit - np.where(active, self._dp_shift, 0.0)
            else:
                shift_score = np.where(active, CALIBRATION_SHIFT, 0.0)
        score = _round_score(_sigmoid(logit))
        decision = (score >= APPROVAL_THRESHOLD).astype(np.int8)
        if shift_score is not None:  # the calibration layer drifts, the decision rule does not
            score = _round_score(score + shift_score)
        return score, decision

    def _solve_dp_shift(self) -> float:
        """Logit penalty bringing the drift group's DI vs the best other group to the target."""
        rng = _rng(self.seed, 2, 0)
        apps = self._draw(rng, np.full(400_000, self._drift_ms - 1, dtype=np.int64), 0)
        codes = apps.race if self._attr == 0 else apps.sex
        approved = apps.logit >= _logit(APPROVAL_THRESHOLD)
        others = [approved[codes == g].mean() for g in range(len(GROUPS[self.drift_group[0]]))]
        best = max(r for g, r in enumerate(others) if g != self._code)
        target_rate = DP_DROP_TARGET_DI * best
        group_logits = apps.logit[codes == self._code]
        return float(np.quantile(group_logits, 1.0 - target_rate) - _logit(APPROVAL_THRESHOLD))

    # --- encoding -------------------------------------------------------------------
    def _encode_decisions(self, apps: _Applicants) -> list[bytes]:
        """decision/v1 bytes, built from string tables (orjson's own output, ~5x faster)."""
        if not len(apps):
            return []
        t = _tables()
        score, decision = self._score(apps)
        head = f',"model":{self._model_json},"model_version":{orjson.dumps(self._version).decode()}'
        columns = (
            *self._id_and_ts(apps.index, apps.ms, '{"schema":"decision/v1"', head),
            t.score[np.rint(score * 10**SCORE_DECIMALS).astype(np.int64)],
            t.attributes[(decision.astype(np.int64) * 4 + apps.race) * 2 + apps.sex],
            t.credit[apps.credit],
            t.income[apps.income // 100],
            t.zip[apps.zip],
            t.employment[np.rint(apps.employment * 10).astype(np.int64)],
        )
        return [
            f"{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}".encode()
            for a, b, c, d, e, f, g, h, i, j in zip(*(col.tolist() for col in columns), strict=True)
        ]

    def _encode_outcomes(self, ms: np.ndarray, index: np.ndarray, label: np.ndarray) -> list[bytes]:
        if not len(ms):
            return []
        head = f',"model":{self._model_json}'
        columns = (
            *self._id_and_ts(index, ms, '{"schema":"outcome/v1"', head),
            _tables().label[label],
        )
        return [f"{a}{b}{c}{d}{e}".encode() for a, b, c, d, e in zip(*(col.tolist() for col in columns), strict=True)]

    def _id_and_ts(self, index: np.ndarray, ms: np.ndarray, schema: str, head: str) -> tuple[np.ndarray, ...]:
        """Columns up to the end of ``ts``; ids are ``f"{seed:x}-{index:012x}"``."""
        high, high_code = np.unique(index >> 16, return_inverse=True)
        ids = np.array([f'{schema},"decision_id":"{self.seed:x}-{h:08x}' for h in high.tolist()], dtype=object)
        minutes, minute_code = np.unique(ms // 60_000, return_inverse=True)
        stamps = np.datetime_as_string((minutes * 60_000).astype("datetime64[ms]"), unit="m")
        prefixes = np.array([f'{head},"ts":"{m}' for m in stamps.tolist()], dtype=object)
        t = _tables()
        low = t.id_low[index & 0xFFFF]
        return ids[high_code], low, prefixes[minute_code], t.second[ms % 60_000]


def write_jsonl(
    sim: LoanSimulator,
    seconds: float,
    decisions_path: str | Path,
    outcomes_path: str | Path | None = None,
    *,
    chunk_events: int = 200_000,
) -> tuple[int, int]:
    """Run ``sim`` for ``seconds`` and write its events as JSONL for ``fairwatch replay``.

    Decisions go to ``decisions_path``, outcomes delivered within the period to
    ``outcomes_path`` (dropped when it is ``None``). Returns (decisions, outcomes).
    """
    _check_number("seconds", seconds, positive=False)
    step = max(0.001, chunk_events / sim.rate)
    n_dec = n_out = 0
    end_ms = sim._now_ms + round(seconds * 1000)
    with contextlib.ExitStack() as stack:
        dec_file = stack.enter_context(open(decisions_path, "wb"))
        out_file = stack.enter_context(open(outcomes_path, "wb")) if outcomes_path else None
        while sim._now_ms < end_ms:
            batch = sim.advance_batch(min(step, (end_ms - sim._now_ms) / 1000))
            decisions = batch.topic_values(outcomes=False)
            outcomes = batch.topic_values(outcomes=True)
            if decisions:
                dec_file.write(b"\n".join(decisions) + b"\n")
            if outcomes and out_file is not None:
                out_file.write(b"\n".join(outcomes) + b"\n")
            n_dec += len(decisions)
            n_out += len(outcomes)
    return n_dec, n_out


# --- helpers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tables:
    """JSON fragments indexed by value code; each entry is exactly what orjson writes."""

    id_low: np.ndarray  # index & 0xFFFF -> 'hhhh"'
    second: np.ndarray  # ms within the minute -> ':SS.mmmZ"'
    score: np.ndarray  # score * 10**SCORE_DECIMALS -> ',"score":0.xxxx'
    attributes: np.ndarray  # (decision * 4 + race) * 2 + sex
    credit: np.ndarray  # credit score -> digits
    income: np.ndarray  # income // 100
    zip: np.ndarray  # zip code
    employment: np.ndarray  # years * 10
    label: np.ndarray


@functools.cache
def _tables() -> _Tables:
    def table(items: Iterator[str]) -> np.ndarray:
        return np.array(list(items), dtype=object)

    return _Tables(
        id_low=table(f'{k:04x}"' for k in range(1 << 16)),
        second=table(f':{k // 1000:02d}.{k % 1000:03d}Z"' for k in range(60_000)),
        score=table(f',"score":{k / 10**SCORE_DECIMALS!r}' for k in range(10**SCORE_DECIMALS + 1)),
        attributes=table(
            f',"decision":{d},"attributes":{{"race":"{r}","sex":"{x}"}},"features":{{"credit_score":'
            for d in (0, 1)
            for r in RACES
            for x in SEXES
        ),
        credit=table(str(k) for k in range(851)),
        income=table(f',"income":{k * 100},"zip_code":' for k in range(MAX_INCOME // 100 + 1)),
        zip=table(f'"{z}","employment_history":' for z in ZIP_CODES),
        employment=table(f'{k / 10!r}}},"label":null}}' for k in range(451)),
        label=table(f',"label":{k}}}' for k in (0, 1)),
    )


def _rng(seed: int, stream: int, n: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, n))))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _round_score(p: np.ndarray) -> np.ndarray:
    # Python's repr switches to exponent notation below 1e-4; the floor keeps the
    # hand-built JSON byte-identical to orjson's.
    return np.round(np.clip(p, SCORE_FLOOR, SCORE_CEIL), SCORE_DECIMALS)


def _small_shares(shares: tuple[float, ...], code: int, share: float) -> np.ndarray:
    out = np.array(shares, dtype=float)
    rest = out.sum() - out[code]
    out *= (1.0 - share) / rest
    out[code] = share
    return out


def _check_number(name: str, value: object, *, positive: bool) -> None:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        msg = MSG_POSITIVE if positive else MSG_NON_NEGATIVE
        raise ValueError(msg.format(field=name, value=value))


def _check_share(name: str, value: object, *, closed: bool) -> None:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (ok and ((0.0 <= v <= 1.0) if closed else (0.0 < v < 1.0))):
        raise ValueError(MSG_SHARE.format(field=name, interval="[0, 1]" if closed else "(0, 1)", value=value))
