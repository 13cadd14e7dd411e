"""Generate fairwatch's Grafana dashboards (``grafana/dashboards/*.json``).

The dashboards are plain Grafana JSON (schemaVersion 39, Grafana ≥ 10), written by this
script so that every panel follows the same conventions: a ``${datasource}`` variable for
the Prometheus datasource, a description that tells the reader what to do, a link to its
runbook section (``docs/runbook.md``), thresholds that match the alert rules. Edit here,
then run from the repository root::

    python grafana/generate.py

``tests/test_grafana.py`` checks that the committed JSON equals this script's output, that
every query is valid PromQL with data from a Prometheus scraping ``fairwatch demo``, and
that no query names a metric the daemon does not export.

The runbook links go through the hidden constant variable ``runbook``; the Helm chart
replaces its default (``RUNBOOK_URL``) with ``dashboards.runbookUrl``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RUNBOOK_URL = "https://github.com/fairwatch/fairwatch/blob/main/docs/runbook.md"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

# Thresholds, as in the alert policy (docs/alerts.md) and alerts/prometheus/alerting_rules.yml.
FOUR_FIFTHS = 0.80
DP_GUARD = 0.75
DI_HIGH = 1.25
EO_GUARD = 0.12
ECE_GUARD = 0.08
MIN_DECISIONS = 100  # config min_decisions (default)
MIN_LABELED = 50  # config min_labeled (default)
CHECKPOINT_STALE = 900  # FairwatchCheckpointStale
LAG_HIGH = 10_000  # FairwatchConsumerLagHigh

# Label selectors, with Grafana variables.
SEL_MWA = 'model="$model", window="$window", attribute="$attribute"'
SEL_MA = 'model="$model", attribute="$attribute"'


class Builder:
    """Lays panels out on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self._id = 0
        self._x = 0
        self._y = 0
        self._row_h = 0

    def _place(self, w: int, h: int) -> dict:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self._id += 1
        self.panels.append(
            {
                "type": "row",
                "id": self._id,
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def add(self, panel: dict, *, w: int, h: int = 8) -> dict:
        self._id += 1
        panel = {"id": self._id, "gridPos": self._place(w, h), **panel}
        self.panels.append(panel)
        return panel


def target(expr: str, legend: str = "__auto", *, ref: str = "A", instant: bool = False, table: bool = False) -> dict:
    t: dict[str, Any] = {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if table:
        t["format"] = "table"
    return t


def runbook(anchor: str, title: str) -> list[dict]:
    return [{"title": f"Runbook: {title}", "url": "${runbook}#" + anchor, "targetBlank": True}]


def steps(*pairs: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in pairs]}


def timeseries(
    title: str,
    description: str,
    targets: list[dict],
    *,
    anchor: str,
    anchor_title: str,
    unit: str = "none",
    thresholds: dict | None = None,
    lines: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    decimals: int | None = None,
) -> dict:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 2,
            "fillOpacity": 0,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line+area" if lines else "off"},
        },
        "thresholds": thresholds or steps((None, "green")),
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "min"],
            },
            "tooltip": {"mode": "multi", "sort": "asc"},
        },
        "links": runbook(anchor, anchor_title),
    }


def stat(
    title: str,
    description: str,
    expr: str,
    *,
    anchor: str,
    anchor_title: str,
    thresholds: dict,
    unit: str = "none",
    decimals: int = 3,
) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, "__auto", instant=True)],
        "fieldConfig": {
            "defaults": {"unit": unit, "decimals": decimals, "thresholds": thresholds, "color": {"mode": "thresholds"}},
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        },
        "links": runbook(anchor, anchor_title),
    }


# --- template variables ---------------------------------------------------------------------
def v_datasource() -> dict:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Prometheus",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def v_query(
    name: str,
    label: str,
    query: str,
    *,
    regex: str = "",
    multi: bool = False,
    include_all: bool = False,
    description: str = "",
) -> dict:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"var-{name}", "qryType": 1},
        "regex": regex,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "hide": 0,
        "options": [],
    }


def v_runbook() -> dict:
    return {
        "type": "constant",
        "name": "runbook",
        "label": "Runbook URL",
        "hide": 2,
        "query": RUNBOOK_URL,
        "current": {"text": RUNBOOK_URL, "value": RUNBOOK_URL},
        "options": [{"text": RUNBOOK_URL, "value": RUNBOOK_URL, "selected": True}],
    }


def annotations(extra: list[dict]) -> dict:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {"list": [builtin, *extra]}


def counter_annotation(name: str, expr: str, color: str, title: str, text: str) -> dict:
    return {
        "name": name,
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "expr": expr,
        "step": "60s",
        "titleFormat": title,
        "textFormat": text,
        "tagKeys": "model",
        "useValueForTime": False,
    }


ROLLBACKS = counter_annotation(
    "Rollbacks",
    'increase(fairness_rollbacks_total{model="$model"}[2m]) > 0',
    "red",
    "Rollback: {{model}}",
    "Flag {{flag}} rolled back to the baseline version (fairness_rollbacks_total). "
    "Check the incident: fairwatch flags status.",
)
PIPELINES = counter_annotation(
    "Pipeline runs",
    'increase(fairness_pipeline_runs_total{model="$model"}[2m]) > 0',
    "purple",
    "Intervention pipeline: {{model}}",
    "An intervention pipeline run ended with result {{result}} (fairness_pipeline_runs_total).",
)


def dashboard(
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    variables: list[dict],
    panels: list[dict],
    notes: list[dict],
    links: list[dict],
) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "utc",
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "templating": {"list": variables},
        "annotations": annotations(notes),
        "links": links,
        "panels": panels,
    }


# --- the fairness overview ------------------------------------------------------------------
def overview() -> dict:
    b = Builder()
    b.row("Now: $model, window $window, attribute $attribute")
    b.add(
        stat(
            "DP ratio, now",
            "min/max selection rate across the groups of $attribute over the $window window "
            f"(fairlearn demographic_parity_ratio). Below {FOUR_FIFTHS} fails the four-fifths rule; below "
            f"{DP_GUARD} is a tier-2 guard. Red here: open the incident drill-down for this model and attribute.",
            f"fairness_demographic_parity_ratio{{{SEL_MWA}}}",
            anchor="fairnessdemographicparitylow",
            anchor_title="FairnessDemographicParityLow",
            thresholds=steps((None, "red"), (DP_GUARD, "orange"), (FOUR_FIFTHS, "green")),
        ),
        w=6,
        h=4,
    )
    b.add(
        stat(
            "Lowest DI, now",
            f"The worst group's selection rate relative to the reference group. Outside [{FOUR_FIFTHS}, {DI_HIGH}] is "
            "tier 3 (automatic rollback). Which group: see 'Disparate impact per group' below.",
            f"min(fairness_disparate_impact{{{SEL_MWA}}})",
            anchor="fairnessdisparateimpactoutofrange",
            anchor_title="FairnessDisparateImpactOutOfRange",
            thresholds=steps((None, "red"), (FOUR_FIFTHS, "green")),
        ),
        w=6,
        h=4,
    )
    b.add(
        stat(
            "EO gap, now",
            f"max(TPR spread, FPR spread) across groups, matured labeled decisions only. Above {EO_GUARD} is tier 2. "
            "Empty: not enough labeled decisions yet (outcomes still arriving) — see the sample sizes below.",
            f"fairness_equalized_odds_gap{{{SEL_MWA}}}",
            anchor="fairnessequalizedoddsgaphigh",
            anchor_title="FairnessEqualizedOddsGapHigh",
            thresholds=steps((None, "green"), (EO_GUARD, "red")),
        ),
        w=6,
        h=4,
    )
    b.add(
        stat(
            "Worst ECE, now",
            f"The highest expected calibration error of any group. Above {ECE_GUARD} is tier 2: the scores no longer "
            "mean the same probability for that group. The fix is recalibration, not a rollback.",
            f"max(fairness_expected_calibration_error{{{SEL_MWA}}})",
            anchor="fairnesscalibrationerrorhigh",
            anchor_title="FairnessCalibrationErrorHigh",
            thresholds=steps((None, "green"), (ECE_GUARD, "red")),
        ),
        w=6,
        h=4,
    )

    b.row("Between-group fairness over time")
    b.add(
        timeseries(
            "Demographic parity ratio",
            f"min/max selection rate across the groups of $attribute, $window window. Lines: {FOUR_FIFTHS} "
            f"(four-fifths rule) and {DP_GUARD} (tier-2 guard). A fall in the short window first and the long "
            "window later is a real shift; a dip in the short window alone on a small group is usually noise. "
            "Rollbacks and pipeline runs appear as annotations.",
            [target(f"fairness_demographic_parity_ratio{{{SEL_MWA}}}", "DP ratio ({{window}})")],
            anchor="fairnessdemographicparitylow",
            anchor_title="FairnessDemographicParityLow",
            thresholds=steps((None, "red"), (DP_GUARD, "orange"), (FOUR_FIFTHS, "transparent")),
            lines=True,
            minimum=0,
            maximum=1,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Demographic parity difference",
            "max − min selection rate across the groups of $attribute, $window window (fairlearn "
            "demographic_parity_difference). It tells how many percentage points apart the most and least "
            "approved groups are; read it together with the ratio on the left.",
            [target(f"fairness_demographic_parity_difference{{{SEL_MWA}}}", "DP difference ({{window}})")],
            anchor="fairnessdemographicparitylow",
            anchor_title="FairnessDemographicParityLow",
            unit="percentunit",
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Disparate impact per group",
            f"Each group's selection rate / the reference group's, $window window. Lines at {FOUR_FIFTHS} and "
            f"{DI_HIGH}: outside that band is tier 3 and triggers the automatic rollback. Groups below "
            f"{MIN_DECISIONS} decisions are not shown (insufficient data, see sample sizes).",
            [target(f"fairness_disparate_impact{{{SEL_MWA}}}", "{{group}}")],
            anchor="fairnessdisparateimpactoutofrange",
            anchor_title="FairnessDisparateImpactOutOfRange",
            thresholds=steps((None, "red"), (FOUR_FIFTHS, "transparent"), (DI_HIGH, "red")),
            lines=True,
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Selection rate per group",
            "Favorable decisions (approvals) / decisions per group, $window window. When DI falls, this shows "
            "whether one group dropped or another rose.",
            [target(f"fairness_selection_rate{{{SEL_MWA}}}", "{{group}}")],
            anchor="fairnessdemographicparitylow",
            anchor_title="FairnessDemographicParityLow",
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "True positive rate per group",
            "P(approved | repaid) per group over matured, labeled decisions ($window window). A group whose TPR "
            "falls is denied more often when it would have repaid. Groups below "
            f"{MIN_LABELED} labeled decisions are not shown.",
            [target(f"fairness_true_positive_rate{{{SEL_MWA}}}", "{{group}}")],
            anchor="fairnessequalizedoddsgaphigh",
            anchor_title="FairnessEqualizedOddsGapHigh",
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "False positive rate per group",
            "P(approved | did not repay) per group over matured, labeled decisions ($window window). "
            "Spreads here and in TPR make up the equalized odds gap.",
            [target(f"fairness_false_positive_rate{{{SEL_MWA}}}", "{{group}}")],
            anchor="fairnessequalizedoddsgaphigh",
            anchor_title="FairnessEqualizedOddsGapHigh",
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Equalized odds gap",
            f"max(TPR spread, FPR spread) across groups ($window window). Line at {EO_GUARD}: tier 2. Before acting, "
            "check the labeled-data coverage on the incident drill-down: late outcomes for one group inflate it.",
            [target(f"fairness_equalized_odds_gap{{{SEL_MWA}}}", "EO gap ({{window}})")],
            anchor="fairnessequalizedoddsgaphigh",
            anchor_title="FairnessEqualizedOddsGapHigh",
            thresholds=steps((None, "transparent"), (EO_GUARD, "red")),
            lines=True,
            minimum=0,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Expected calibration error per group",
            f"Σ_b |L_b − S_b| / N per group over matured labeled decisions ($window window). Line at {ECE_GUARD}: "
            "tier 2. A single group rising means its scores over- or under-state its real repayment rate; "
            "the remedy is group calibration in the intervention pipeline.",
            [target(f"fairness_expected_calibration_error{{{SEL_MWA}}}", "{{group}}")],
            anchor="fairnesscalibrationerrorhigh",
            anchor_title="FairnessCalibrationErrorHigh",
            thresholds=steps((None, "transparent"), (ECE_GUARD, "red")),
            lines=True,
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Accuracy per group",
            "Labeled decisions where decision = outcome, per group ($window window). More than 5 % below the "
            "approved baseline is tier 3.",
            [target(f"fairness_accuracy{{{SEL_MWA}}}", "{{group}}")],
            anchor="fairnesstier3",
            anchor_title="FairnessTier3",
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        w=12,
    )

    b.row("Intersectional groups ($intersection)")
    split = (
        'label_replace(label_replace({metric}{{model="$model", window="$window", attribute="$intersection"}}, '
        '"row", "$1", "group", "([^,]*),.*"), "column", "$1", "group", "[^,]*,(.*)")'
    )
    b.add(
        {
            "type": "table",
            "title": "Disparate impact matrix ($intersection), now",
            "description": "Disparate impact of every intersectional group (rows: first attribute, e.g. race; columns: "
            f"second, e.g. sex), $window window. Red cells are outside [{FOUR_FIFTHS}, {DI_HIGH}]. An intersection can "
            "fail while each attribute alone passes (a group such as Black,Female); an empty cell is a group below "
            f"{MIN_DECISIONS} decisions.",
            "datasource": DS,
            "targets": [target(split.format(metric="fairness_disparate_impact"), instant=True, table=True)],
            "transformations": [
                {
                    "id": "groupingToMatrix",
                    "options": {"columnField": "column", "rowField": "row", "valueField": "Value"},
                },
            ],
            "fieldConfig": {
                "defaults": {
                    "decimals": 3,
                    "thresholds": steps((None, "red"), (FOUR_FIFTHS, "green"), (DI_HIGH, "red")),
                    "color": {"mode": "thresholds"},
                    "custom": {"align": "center", "cellOptions": {"type": "color-background"}},
                },
                "overrides": [],
            },
            "options": {"showHeader": True, "cellHeight": "lg"},
            "links": runbook("intersectional-groups", "Intersectional groups"),
        },
        w=8,
        h=9,
    )
    b.add(
        {
            "type": "heatmap",
            "title": "Selection rate per intersectional group over time",
            "description": "Each row is one intersectional group (e.g. Black,Female), colour = its selection rate over "
            "the $window window. A row turning dark while the others stay is the group the model now treats "
            "differently; compare with the matrix on the left.",
            "datasource": DS,
            "targets": [
                target(
                    'fairness_selection_rate{model="$model", window="$window", attribute="$intersection"}',
                    "{{group}}",
                )
            ],
            "fieldConfig": {"defaults": {"unit": "percentunit"}, "overrides": []},
            "options": {
                "calculate": False,
                "yAxis": {"axisPlacement": "left", "reverse": False},
                "rowsFrame": {"layout": "auto"},
                "color": {
                    "mode": "scheme",
                    "scheme": "RdYlGn",
                    "fill": "dark-orange",
                    "steps": 64,
                    "exponent": 0.5,
                    "reverse": False,
                    "min": 0,
                    "max": 1,
                },
                "cellGap": 1,
                "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": True},
                "legend": {"show": True},
            },
            "links": runbook("intersectional-groups", "Intersectional groups"),
        },
        w=16,
        h=9,
    )

    b.row("Evidence: sample sizes")
    b.add(
        timeseries(
            "Decisions per group",
            f"Decisions per group of $attribute in the $window window. Line at {MIN_DECISIONS} (min_decisions): groups "
            "below it are 'insufficient data' and left out of DP, DI and alerts — a missing line on the other panels "
            "usually means this one is below the line.",
            [target(f'fairness_group_samples{{{SEL_MWA}, kind="decisions"}}', "{{group}}")],
            anchor="sample-sizes",
            anchor_title="Sample sizes",
            thresholds=steps((None, "red"), (MIN_DECISIONS, "transparent")),
            lines=True,
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Labeled decisions per group",
            f"Matured decisions whose outcome has arrived, per group ($window window). Line at {MIN_LABELED} "
            "(min_labeled): below it TPR, FPR, ECE and the EO gap are not computed for the group.",
            [target(f'fairness_group_samples{{{SEL_MWA}, kind="labeled"}}', "{{group}}")],
            anchor="sample-sizes",
            anchor_title="Sample sizes",
            thresholds=steps((None, "red"), (MIN_LABELED, "transparent")),
            lines=True,
            minimum=0,
        ),
        w=12,
    )

    b.row("Alerts")
    b.add(
        {
            "type": "state-timeline",
            "title": "Alert tiers ($model, $attribute)",
            "description": "The daemon's tier per metric and window (fairness_alert_tier): 0 ok, 1 investigate within "
            "a week, 2 product owner + compliance and the intervention pipeline, 3 automatic rollback and executive "
            "escalation; 'insufficient' means too few samples to judge (never read it as ok). Red/annotated "
            "rollbacks: follow the FairnessTier3 runbook.",
            "datasource": DS,
            "targets": [
                target(
                    f"max by (metric, window) (fairness_alert_tier{{{SEL_MA}}})",
                    "{{metric}} ({{window}})",
                )
            ],
            "fieldConfig": {
                "defaults": {
                    "color": {"mode": "thresholds"},
                    "thresholds": steps((None, "text"), (0, "green"), (1, "yellow"), (2, "orange"), (3, "red")),
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "-1": {"text": "insufficient", "color": "text", "index": 0},
                                "0": {"text": "ok", "color": "green", "index": 1},
                                "1": {"text": "tier 1", "color": "yellow", "index": 2},
                                "2": {"text": "tier 2", "color": "orange", "index": 3},
                                "3": {"text": "tier 3", "color": "red", "index": 4},
                            },
                        }
                    ],
                    "custom": {"fillOpacity": 80, "lineWidth": 0},
                },
                "overrides": [],
            },
            "options": {
                "showValue": "auto",
                "mergeValues": True,
                "alignValue": "left",
                "rowHeight": 0.9,
                "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
            },
            "links": runbook("fairnesstier3", "FairnessTier3") + runbook("alert-tiers", "Alert tiers"),
        },
        w=24,
        h=8,
    )
    b.add(
        timeseries(
            "Alert evidence as a share of its threshold ($model, $attribute)",
            "Sequential evidence (fairness_alert_evidence: the CUSUM of log e-values of each group's constraint) "
            "divided by the tier's threshold (fairness_alert_evidence_threshold = log(A*K) from the false-alarm "
            "budget): 1 raises the tier, a raised tier holds above 0.5. On a fair stream the lines stay near 0; "
            "false alarms of a tier come no more often than its budget (docs/alerts.md).",
            [
                target(
                    f"max by (model, metric, group, tier) (fairness_alert_evidence{{{SEL_MA}}})"
                    " / on (model, tier) group_left ()"
                    ' max by (model, tier) (fairness_alert_evidence_threshold{model="$model"})',
                    "tier {{tier}} {{metric}} {{group}}",
                )
            ],
            anchor="alert-evidence",
            anchor_title="Alert evidence",
            unit="percentunit",
            thresholds=steps((None, "green"), (0.5, "orange"), (1, "red")),
            lines=True,
            minimum=0,
        ),
        w=24,
        h=8,
    )

    return dashboard(
        "fairwatch-overview",
        "fairwatch / fairness overview",
        "Per-group fairness of one model: demographic parity, disparate impact, equalized odds, calibration, "
        "intersectional groups, sample sizes and alert tiers (docs/metrics.md, docs/alerts.md).",
        ["fairwatch", "fairness"],
        [
            v_datasource(),
            v_query("model", "Model", "label_values(fairness_group_samples, model)"),
            v_query("window", "Window", 'label_values(fairness_group_samples{model="$model"}, window)'),
            v_query("attribute", "Attribute", 'label_values(fairness_group_samples{model="$model"}, attribute)'),
            v_query(
                "intersection",
                "Intersection",
                'label_values(fairness_group_samples{model="$model"}, attribute)',
                regex="/.+,.+/",
                description="An intersectional attribute such as race,sex",
            ),
            v_runbook(),
        ],
        b.panels,
        [ROLLBACKS, PIPELINES],
        [
            {
                "title": "Incident drill-down",
                "type": "link",
                "url": "/d/fairwatch-incident?${model:queryparam}&${attribute:queryparam}&${__url_time_range}",
                "icon": "dashboard",
                "tooltip": "Every window, labels, daemon health",
                "targetBlank": False,
                "includeVars": False,
                "keepTime": False,
                "asDropdown": False,
                "tags": [],
            },
            {
                "title": "Runbook",
                "type": "link",
                "url": "${runbook}",
                "icon": "doc",
                "tooltip": "On-call runbook",
                "targetBlank": True,
                "includeVars": False,
                "keepTime": False,
                "asDropdown": False,
                "tags": [],
            },
        ],
    )


# --- the incident drill-down ----------------------------------------------------------------
def incident() -> dict:
    b = Builder()
    b.row("Every window side by side: $model, $attribute")
    b.add(
        {
            "type": "table",
            "title": "Between-group metrics by window, now",
            "description": "One row per window. Short windows react first; a problem seen in every window is "
            "established, one seen only in the shortest may still be noise (check the sample sizes). "
            f"Guards: DP ratio < {DP_GUARD} (tier 2), EO gap > {EO_GUARD} (tier 2).",
            "datasource": DS,
            "targets": [
                target(f"fairness_demographic_parity_ratio{{{SEL_MA}}}", ref="A", instant=True, table=True),
                target(f"fairness_demographic_parity_difference{{{SEL_MA}}}", ref="B", instant=True, table=True),
                target(f"fairness_equalized_odds_gap{{{SEL_MA}}}", ref="C", instant=True, table=True),
                target(
                    f"min by (model, window, attribute) (fairness_disparate_impact{{{SEL_MA}}})",
                    ref="D",
                    instant=True,
                    table=True,
                ),
                target(
                    f"max by (model, window, attribute) (fairness_expected_calibration_error{{{SEL_MA}}})",
                    ref="E",
                    instant=True,
                    table=True,
                ),
            ],
            "transformations": [
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "__name__": True},
                        "renameByName": {
                            "Value #A": "DP ratio",
                            "Value #B": "DP difference",
                            "Value #C": "EO gap",
                            "Value #D": "lowest DI",
                            "Value #E": "worst ECE",
                        },
                    },
                },
            ],
            "fieldConfig": {"defaults": {"decimals": 3, "custom": {"align": "auto"}}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"displayName": "window", "desc": False}]},
            "links": runbook("fairnesstier2", "FairnessTier2"),
        },
        w=24,
        h=6,
    )
    b.add(
        timeseries(
            "Demographic parity ratio, every window",
            f"The same metric per window. Lines at {FOUR_FIFTHS} and {DP_GUARD}. If only the shortest window is "
            "down, wait one evaluation cycle before escalating; if the long windows follow, it is a real shift.",
            [target(f"fairness_demographic_parity_ratio{{{SEL_MA}}}", "{{window}}")],
            anchor="fairnessdemographicparitylow",
            anchor_title="FairnessDemographicParityLow",
            thresholds=steps((None, "red"), (DP_GUARD, "orange"), (FOUR_FIFTHS, "transparent")),
            lines=True,
            minimum=0,
            maximum=1,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Equalized odds gap, every window",
            f"The EO gap per window; line at {EO_GUARD}. Long windows lag because outcomes arrive late.",
            [target(f"fairness_equalized_odds_gap{{{SEL_MA}}}", "{{window}}")],
            anchor="fairnessequalizedoddsgaphigh",
            anchor_title="FairnessEqualizedOddsGapHigh",
            thresholds=steps((None, "transparent"), (EO_GUARD, "red")),
            lines=True,
            minimum=0,
        ),
        w=12,
    )
    di = timeseries(
        "Disparate impact per group, window $window",
        f"Per-group disparate impact, one panel per window. Band [{FOUR_FIFTHS}, {DI_HIGH}]; outside it is tier 3.",
        [target(f'fairness_disparate_impact{{{SEL_MA}, window="$window"}}', "{{group}}")],
        anchor="fairnessdisparateimpactoutofrange",
        anchor_title="FairnessDisparateImpactOutOfRange",
        thresholds=steps((None, "red"), (FOUR_FIFTHS, "transparent"), (DI_HIGH, "red")),
        lines=True,
        minimum=0,
    )
    di.update({"repeat": "window", "repeatDirection": "h", "maxPerRow": 4})
    b.add(di, w=8)
    b.add(
        timeseries(
            "Fleet recomputation vs daemon: DP ratio (1h)",
            "The daemon's gauge next to Prometheus' own recomputation from the counters (recording rule "
            "model_attribute:fairness_demographic_parity_ratio:1h, summed over replicas). They should agree within "
            "noise; if they do not, suspect the daemon (restart, lag, a replica down) before the model.",
            [
                target(f'fairness_demographic_parity_ratio{{{SEL_MA}, window="1h"}}', "daemon", ref="A"),
                target(f"model_attribute:fairness_demographic_parity_ratio:1h{{{SEL_MA}}}", "recording rule", ref="B"),
            ],
            anchor="fleet-recomputation",
            anchor_title="Fleet recomputation",
            minimum=0,
            maximum=1,
        ),
        w=8,
    )

    b.row("Labeled-data coverage and outcome joins")
    b.add(
        timeseries(
            "Labeled share per group",
            "Share of each group's matured decisions whose outcome has arrived (fairness_labeled_share), per window. "
            "TPR, FPR, ECE and the EO gap only see labeled decisions: a group with a much lower share than the "
            "others can look unfair because its outcomes are late, not because the model changed.",
            [target(f'fairness_labeled_share{{{SEL_MA}, window=~"$window"}}', "{{group}} ({{window}})")],
            anchor="labeled-data-coverage",
            anchor_title="Labeled-data coverage",
            unit="percentunit",
            minimum=0,
            maximum=1,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Labeled decisions per group",
            f'fairness_group_samples{{kind="labeled"}} per window. Line at {MIN_LABELED} (min_labeled): below it '
            "the group's outcome metrics are not computed.",
            [
                target(
                    f'fairness_group_samples{{{SEL_MA}, window=~"$window", kind="labeled"}}', "{{group}} ({{window}})"
                )
            ],
            anchor="labeled-data-coverage",
            anchor_title="Labeled-data coverage",
            thresholds=steps((None, "red"), (MIN_LABELED, "transparent")),
            lines=True,
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Outcome joins per second by result",
            "Outcomes matched to their decision (joined), decisions whose outcome never came within join.ttl "
            "(expired), outcomes with no decision (orphaned). Rising expired or orphaned means the outcome feed is "
            "broken or keyed differently; coverage will fall.",
            [
                target(
                    'sum by (result) (rate(fairwatch_outcome_joins_total{model="$model"}[$__rate_interval]))',
                    "{{result}}",
                )
            ],
            anchor="outcome-joins",
            anchor_title="Outcome joins",
            unit="ops",
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Pending outcomes",
            "Decisions waiting for their outcome in the join store. Growing without bound while joins stay flat: "
            "outcomes are not arriving.",
            [target('sum by (model) (fairwatch_pending_outcomes{model="$model"})', "{{model}}")],
            anchor="outcome-joins",
            anchor_title="Outcome joins",
            minimum=0,
        ),
        w=12,
    )

    b.row("Daemon health")
    b.add(
        timeseries(
            "Events per second by result",
            "Events read per topic and result: ok, invalid (dead-lettered), duplicate (same decision_id), late "
            "(older than the oldest live bucket). A drop to zero with lag rising: the consumer is stuck.",
            [target("sum by (topic, result) (rate(fairwatch_events_total[$__rate_interval]))", "{{topic}} {{result}}")],
            anchor="events-by-result",
            anchor_title="Events by result",
            unit="ops",
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Invalid events per second by reason",
            "Events that failed validation, by reason (bad_timestamp, missing_field:…, …); every one is in the "
            "dead-letter topic. A sudden spike of one reason is a producer bug: tell the producing team.",
            [
                target(
                    'sum by (topic, reason) (rate(fairwatch_events_total{result="invalid"}[$__rate_interval]))',
                    "{{topic}} {{reason}}",
                )
            ],
            anchor="invalid-events",
            anchor_title="Invalid events",
            unit="ops",
            minimum=0,
        ),
        w=12,
    )
    b.add(
        timeseries(
            "Kafka consumer lag",
            f"Messages behind per topic (summed over partitions and replicas). Above {LAG_HIGH} for 10 minutes "
            "pages (FairwatchConsumerLagHigh): metrics describe the past.",
            [target("sum by (topic) (fairwatch_consumer_lag)", "{{topic}}")],
            anchor="fairwatchconsumerlaghigh",
            anchor_title="FairwatchConsumerLagHigh",
            thresholds=steps((None, "transparent"), (LAG_HIGH, "red")),
            lines=True,
            minimum=0,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Checkpoint age",
            f"Seconds since each replica's last durable checkpoint. Above {CHECKPOINT_STALE} s pages "
            "(FairwatchCheckpointStale): Kafka offsets are not being committed and a restart would replay that much.",
            [target("time() - fairwatch_last_checkpoint_timestamp_seconds", "{{instance}}")],
            anchor="fairwatchcheckpointstale",
            anchor_title="FairwatchCheckpointStale",
            thresholds=steps((None, "transparent"), (CHECKPOINT_STALE, "red")),
            lines=True,
            unit="s",
            minimum=0,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Replicas by version",
            "Replicas reporting, by fairwatch version (fairwatch_build_info). Fewer than deployed: see FairwatchDown. "
            "Two versions at once: a rollout is in progress.",
            [target("count by (version) (fairwatch_build_info)", "{{version}}")],
            anchor="fairwatchdown",
            anchor_title="FairwatchDown",
            minimum=0,
            decimals=0,
        ),
        w=8,
    )
    b.add(
        timeseries(
            "Evaluator",
            "Which replica merges every partition, exports the fairness gauges and acts (fairwatch_evaluator = 1; "
            "docs/replicas.md). Exactly one line at 1; none or two for 2 minutes pages (FairwatchEvaluatorNotOne).",
            [target("max by (replica) (fairwatch_evaluator)", "{{replica}}")],
            anchor="fairwatchevaluatornotone",
            anchor_title="FairwatchEvaluatorNotOne",
            minimum=0,
            decimals=0,
        ),
        w=8,
    )

    return dashboard(
        "fairwatch-incident",
        "fairwatch / incident drill-down",
        "One model and attribute: every window side by side, labeled-data coverage and outcome joins, "
        "daemon health. Open it from an alert or the fairness overview.",
        ["fairwatch", "fairness", "incident"],
        [
            v_datasource(),
            v_query("model", "Model", "label_values(fairness_group_samples, model)"),
            v_query("attribute", "Attribute", 'label_values(fairness_group_samples{model="$model"}, attribute)'),
            v_query(
                "window",
                "Windows",
                'label_values(fairness_group_samples{model="$model"}, window)',
                multi=True,
                include_all=True,
            ),
            v_runbook(),
        ],
        b.panels,
        [ROLLBACKS, PIPELINES],
        [
            {
                "title": "Fairness overview",
                "type": "link",
                "url": "/d/fairwatch-overview?${model:queryparam}&${attribute:queryparam}&${__url_time_range}",
                "icon": "dashboard",
                "tooltip": "Per-group metrics",
                "targetBlank": False,
                "includeVars": False,
                "keepTime": False,
                "asDropdown": False,
                "tags": [],
            },
            {
                "title": "Runbook",
                "type": "link",
                "url": "${runbook}",
                "icon": "doc",
                "tooltip": "On-call runbook",
                "targetBlank": True,
                "includeVars": False,
                "keepTime": False,
                "asDropdown": False,
                "tags": [],
            },
        ],
    )


DASHBOARDS = {"fairwatch-overview.json": overview, "fairwatch-incident.json": incident}


def render() -> dict[str, str]:
    """File name → JSON text, exactly as committed."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {(OUT / name).relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
