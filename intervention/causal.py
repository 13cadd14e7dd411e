"""Causal analysis: DAG from expert knowledge, variable roles, adjustment sets, sensitivity.

Roles, for protected attributes ``A`` and outcome ``Y`` in the DAG ``G``:

* **mediator**: on a directed path ``A → … → Y`` (a descendant of some ``A`` and an
  ancestor of ``Y``);
* **confounder**: a common cause of some ``A`` and ``Y`` — an ancestor of both that is
  not a descendant of ``A``;
* **proxy**: a descendant of ``A`` the experts name a proxy (Kilbertus et al. 2017),
  plus features strongly associated with ``A`` in the data (Cramér's V ≥ 0.3);
* **resolving**: a descendant of ``A`` through which influence is deemed legitimate
  (Kilbertus et al. 2017), as named by the experts;
* **biased mediator**: a mediator the experts flag as carrying historical bias.

Backdoor adjustment sets (Pearl 2009) are minimal sets ``Z`` of non-descendants of the
treatment that d-separate treatment and outcome once the treatment's outgoing edges
are removed (networkx d-separation). Sensitivity: E-value (VanderWeele & Ding 2017) of
the risk ratio of the favorable outcome, and the robustness value of Cinelli & Hazlett
(2020) for the linear-probability coefficient of the disadvantaged-group indicator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from scipy import stats

from .errors import BAD_VALUE, UNREADABLE_FILE, PipelineInputError, check_columns

__all__ = [
    "load_expert_knowledge",
    "build_dag",
    "classify_variables",
    "backdoor_adjustment_set",
    "check_edges",
    "cramers_v",
    "e_value",
    "robustness_value",
    "sensitivity_analysis",
    "recommend_interventions",
    "write_dot",
    "propose_dag",
    "causal_analysis",
]

PROXY_CRAMERS_V = 0.3
_KNOWLEDGE_KEYS = ("edges", "proxies", "resolving", "biased_mediators", "approved", "description", "nodes")


def load_expert_knowledge(path: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate the expert-knowledge JSON.

    Format: ``{"edges": [[cause, effect], ...], "proxies": [...], "resolving": [...],
    "biased_mediators": [...], "approved": bool, "description": str}``; only
    ``edges`` is required.

    >>> load_expert_knowledge({"edges": [["race", "zip_code"]]})["proxies"]
    []
    >>> load_expert_knowledge({"edges": [["race"]]})
    Traceback (most recent call last):
    ...
    fairwatch.intervention.errors.PipelineInputError: --expert-knowledge: ['race'] is invalid: every edge must be a ...
    """
    field = "--expert-knowledge"
    if isinstance(path, Mapping):
        raw = dict(path)
    else:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PipelineInputError(
                UNREADABLE_FILE.format(field=field, value=str(path), reason=exc), field=field
            ) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("edges"), list):
        raise PipelineInputError(
            BAD_VALUE.format(field=field, value=type(raw).__name__, reason='needs an "edges" list'),
            field=field,
        )
    unknown = sorted(set(raw) - set(_KNOWLEDGE_KEYS))
    if unknown:
        raise PipelineInputError(
            BAD_VALUE.format(
                field=field, value=unknown[0], reason=f"unknown key; valid keys: {', '.join(_KNOWLEDGE_KEYS)}"
            ),
            field=field,
        )
    for e in raw["edges"]:
        if not (isinstance(e, list | tuple) and len(e) == 2 and all(isinstance(v, str) for v in e)):
            raise PipelineInputError(
                BAD_VALUE.format(field=field, value=e, reason="every edge must be a [cause, effect] pair of names"),
                field=field,
            )
    return {
        "edges": [list(e) for e in raw["edges"]],
        "nodes": list(raw.get("nodes", [])),
        "proxies": list(raw.get("proxies", [])),
        "resolving": list(raw.get("resolving", [])),
        "biased_mediators": list(raw.get("biased_mediators", [])),
        "approved": bool(raw.get("approved", False)),
        "description": str(raw.get("description", "")),
    }


def build_dag(knowledge: Mapping[str, Any], *, protected: Sequence[str], outcome: str) -> nx.DiGraph:
    """The DAG of the stated edges; protected attributes and outcome are always nodes.

    >>> g = build_dag({"edges": [["a", "m"], ["m", "y"]]}, protected=["a"], outcome="y")
    >>> sorted(g.edges)
    [('a', 'm'), ('m', 'y')]
    >>> build_dag({"edges": [["a", "y"], ["y", "a"]]}, protected=["a"], outcome="y")
    Traceback (most recent call last):
    ...
    fairwatch.intervention.errors.PipelineInputError: --expert-knowledge: ['a', 'y'] is invalid: the graph has a cycle
    """
    g = nx.DiGraph()
    g.add_nodes_from([*protected, outcome, *knowledge.get("nodes", [])])
    g.add_edges_from(tuple(e) for e in knowledge["edges"])
    if not nx.is_directed_acyclic_graph(g):
        cycle = [u for u, _ in nx.find_cycle(g)]
        raise PipelineInputError(
            BAD_VALUE.format(field="--expert-knowledge", value=sorted(cycle), reason="the graph has a cycle"),
            field="--expert-knowledge",
        )
    return g


def classify_variables(
    g: nx.DiGraph,
    *,
    protected: Sequence[str],
    outcome: str,
    knowledge: Mapping[str, Any] | None = None,
    data_proxies: Sequence[str] = (),
) -> dict[str, list[str]]:
    """Confounders, mediators, proxies, resolving variables and biased mediators.

    >>> g = nx.DiGraph([("race", "zip"), ("zip", "income"), ("income", "y"), ("age", "y"),
    ...                 ("region", "race"), ("region", "y")])
    >>> r = classify_variables(g, protected=["race"], outcome="y", knowledge={"proxies": ["zip"]})
    >>> r["mediators"], r["confounders"], r["proxies"]
    (['income', 'zip'], ['region'], ['zip'])
    """
    knowledge = knowledge or {}
    prot = set(protected)
    desc = set().union(*(nx.descendants(g, a) for a in protected)) - prot - {outcome}
    anc_y = nx.ancestors(g, outcome)
    anc_a = set().union(*(nx.ancestors(g, a) for a in protected)) - prot
    mediators = sorted(desc & anc_y)
    confounders = sorted((anc_a & anc_y) - desc)
    proxies = sorted((set(knowledge.get("proxies", [])) | set(data_proxies)) - prot - {outcome})
    resolving = sorted(set(knowledge.get("resolving", [])) & set(g.nodes))
    biased = sorted(set(knowledge.get("biased_mediators", [])) & set(mediators))
    return {
        "mediators": mediators,
        "confounders": confounders,
        "proxies": proxies,
        "resolving": resolving,
        "biased_mediators": biased,
    }


def backdoor_adjustment_set(g: nx.DiGraph, treatment: str, outcome: str) -> list[str] | None:
    """A minimal backdoor adjustment set for ``treatment → outcome``, or None if none exists.

    >>> g = nx.DiGraph([("c", "t"), ("c", "y"), ("t", "m"), ("m", "y")])
    >>> backdoor_adjustment_set(g, "t", "y")
    ['c']
    >>> backdoor_adjustment_set(nx.DiGraph([("t", "y")]), "t", "y")
    []
    """
    h = g.copy()
    h.remove_edges_from(list(g.out_edges(treatment)))
    allowed = set(g.nodes) - nx.descendants(g, treatment) - {treatment, outcome}
    z = nx.find_minimal_d_separator(h, {treatment}, {outcome}, restricted=allowed)
    return None if z is None else sorted(z)


def cramers_v(a: pd.Series, b: pd.Series, *, bins: int = 5) -> tuple[float, float]:
    """Cramér's V and the chi-square p-value; numeric columns are binned into quantiles.

    >>> v, p = cramers_v(pd.Series(list("aabb") * 25), pd.Series(list("xxyy") * 25))
    >>> round(v, 3), p < 1e-6
    (1.0, True)
    """

    def cat(s: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(s) and s.nunique() > bins:
            return pd.qcut(s.rank(method="first"), bins, labels=False).astype(str)
        return s.astype(str)

    table = pd.crosstab(cat(a), cat(b))
    if min(table.shape) < 2:
        return 0.0, 1.0
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    n = table.to_numpy().sum()
    v = float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))
    return min(v, 1.0), float(p)


def check_edges(df: pd.DataFrame, g: nx.DiGraph, *, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Data-driven check of each stated edge whose ends are both columns: dependence test.

    Numeric–numeric pairs use Spearman's rank correlation, other pairs the chi-square
    test of the contingency table; an edge is *supported* if ``p < alpha``. Edges with
    an end missing from the data are reported as ``untestable``.
    """
    out = []
    for u, v in sorted(g.edges):
        rec: dict[str, Any] = {"edge": [u, v]}
        if u not in df.columns or v not in df.columns:
            rec.update(test="untestable", supported=None)
        elif pd.api.types.is_numeric_dtype(df[u]) and pd.api.types.is_numeric_dtype(df[v]):
            if df[u].nunique() < 2 or df[v].nunique() < 2:  # one value: no correlation to test
                rec.update(test="constant", supported=None)
            else:
                r = stats.spearmanr(df[u], df[v])
                rec.update(test="spearman", statistic=round(float(r.statistic), 6),
                           p_value=float(r.pvalue), supported=bool(r.pvalue < alpha))  # fmt: skip
        else:
            cv, p = cramers_v(df[u], df[v])
            rec.update(test="chi2", statistic=round(cv, 6), p_value=p, supported=bool(p < alpha))
        out.append(rec)
    return out


def e_value(rr: float) -> float:
    """E-value of a risk ratio (VanderWeele & Ding 2017): ``RR + sqrt(RR·(RR − 1))``.

    Ratios below 1 are inverted first.

    >>> round(e_value(3.9), 2)
    7.26
    >>> e_value(1.0)
    1.0
    """
    rr = 1.0 / rr if rr < 1 else rr
    return float(rr + np.sqrt(rr * (rr - 1.0)))


def robustness_value(t_statistic: float, dof: int, *, q: float = 1.0, alpha: float | None = None) -> float:
    """Cinelli & Hazlett (2020) robustness value ``RV_q`` (or ``RV_{q,α}`` with ``alpha``).

    The minimum share of residual variance of both treatment and outcome an unobserved
    confounder must explain to reduce the estimate by ``100·q`` % (or make it
    insignificant at level ``alpha``).

    >>> round(robustness_value(4.18, 783), 3)
    0.139
    >>> round(robustness_value(4.18, 783, alpha=0.05), 3)
    0.076
    """
    fq = q * abs(t_statistic) / np.sqrt(dof)
    f_crit = 0.0 if alpha is None else abs(stats.t.ppf(alpha / 2, dof - 1)) / np.sqrt(dof - 1)
    fqa = fq - f_crit
    if fqa < 0:
        return 0.0
    if f_crit > 0 and fq > 1 / f_crit:
        return float((fq**2 - f_crit**2) / (1 + fq**2))
    return float(0.5 * (np.sqrt(fqa**4 + 4 * fqa**2) - fqa**2))


def _design(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    if not cols:
        return np.zeros((len(df), 0))
    return pd.get_dummies(df[list(cols)], drop_first=True, dtype=float).to_numpy(dtype=float)


def sensitivity_analysis(
    df: pd.DataFrame,
    *,
    attribute: str,
    outcome_values: np.ndarray,
    adjustment: Sequence[str] = (),
    min_group_size: int = 30,
) -> dict[str, Any]:
    """E-values and robustness values for the most vs least favored group of ``attribute``."""
    s = df[attribute].astype(str)
    rates = pd.Series(outcome_values, index=df.index).groupby(s).agg(["mean", "size", "sum"])
    rates = rates[rates["size"] >= min_group_size]
    if len(rates) < 2 or rates["mean"].min() <= 0:
        return {"attribute": attribute, "evaluable": False}
    ref, dis = rates["mean"].idxmax(), rates["mean"].idxmin()
    a, n1 = rates.loc[ref, "sum"], rates.loc[ref, "size"]
    c, n0 = rates.loc[dis, "sum"], rates.loc[dis, "size"]
    rr = float((a / n1) / (c / n0))
    se = float(np.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)) if a > 0 and c > 0 else float("inf")
    rr_lo = float(np.exp(np.log(rr) - 1.959964 * se))
    m = s.isin([ref, dis]).to_numpy()
    cov = [c_ for c_ in adjustment if c_ in df.columns]
    x = np.c_[np.ones(m.sum()), (s[m] == dis).to_numpy(dtype=float), _design(df.loc[m], cov)]
    y = np.asarray(outcome_values, dtype=float)[m]
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    dof = int(x.shape[0] - np.linalg.matrix_rank(x))
    sigma2 = float(resid @ resid / dof)
    xtx_inv = np.linalg.pinv(x.T @ x)
    t = float(beta[1] / np.sqrt(sigma2 * xtx_inv[1, 1]))
    return {
        "attribute": attribute,
        "evaluable": True,
        "reference_group": ref,
        "disadvantaged_group": dis,
        "risk_ratio": round(rr, 6),
        "risk_ratio_ci_lower": round(rr_lo, 6),
        "e_value": round(e_value(rr), 6),
        "e_value_ci": round(e_value(rr_lo), 6) if rr_lo > 1 else 1.0,
        "adjustment_set": cov,
        "coefficient": round(float(beta[1]), 6),
        "t_statistic": round(t, 6),
        "dof": dof,
        "robustness_value": round(robustness_value(t, dof), 6),
        "robustness_value_alpha_0_05": round(robustness_value(t, dof, alpha=0.05), 6),
    }


def recommend_interventions(
    roles: Mapping[str, list[str]],
    *,
    base_rates_differ: bool,
    numeric_columns: Sequence[str],
) -> dict[str, Any]:
    """The playbook's decision point 1 (which intervention types), with reasons."""
    points = []
    biased = [v for v in roles["biased_mediators"] if v in numeric_columns]
    if biased:
        points.append({"stage": "preprocess", "technique": "disparate_impact_remover", "variables": biased,
                       "reason": "biased mediators carry the protected attribute's influence (data bias)"})  # fmt: skip
    if roles["proxies"]:
        points.append({"stage": "inprocess", "technique": "constrained_training_without_proxies",
                       "variables": roles["proxies"],
                       "reason": "proxy variables let the model reconstruct the protected attribute"})  # fmt: skip
    if base_rates_differ:
        points.append({"stage": "postprocess", "technique": "threshold_optimization", "variables": [],
                       "reason": "base rates differ between groups while the threshold is uniform"})  # fmt: skip
    stages = [p["stage"] for p in points]
    strategy = "hybrid" if len(stages) > 1 else (stages[0] if stages else "none")
    return {"strategy": strategy, "intervention_points": points}


def write_dot(g: nx.DiGraph, roles: Mapping[str, str], path: str | Path) -> Path:
    """Write the DAG in Graphviz DOT, role as node attribute and fill color."""
    colors = {"protected": "#f4a6a6", "outcome": "#a6e3a1", "proxy": "#fcd29f", "mediator": "#a6c8f4",
              "resolving": "#d5b8f0", "confounder": "#d9c2a7", "other": "#e0e0e0"}  # fmt: skip
    lines = ["digraph causal_dag {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled"];']
    for n in sorted(g.nodes):
        r = roles.get(n, "other")
        lines.append(f'  "{n}" [role="{r}", fillcolor="{colors.get(r, "#e0e0e0")}"];')
    for u, v in sorted(g.edges):
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    p = Path(path)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def node_roles(
    g: nx.DiGraph, classes: Mapping[str, list[str]], protected: Sequence[str], outcome: str
) -> dict[str, str]:
    """One display role per node (protected > outcome > proxy > resolving > mediator > confounder)."""
    roles = {n: "other" for n in g.nodes}
    for key, role in (("confounders", "confounder"), ("mediators", "mediator"),
                      ("resolving", "resolving"), ("proxies", "proxy")):  # fmt: skip
        for n in classes[key]:
            if n in roles:
                roles[n] = role
    for a in protected:
        roles[a] = "protected"
    roles[outcome] = "outcome"
    return roles


PROPOSAL_CRAMERS_V = 0.05


def propose_dag(
    df: pd.DataFrame,
    *,
    protected: Sequence[str],
    outcome: str,
    outcome_values: np.ndarray,
    features: Sequence[str],
    mediators: Sequence[str] = (),
    primary: str,
    min_v: float = PROPOSAL_CRAMERS_V,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """A DAG proposed from the data when no expert knowledge is given — never approved.

    Edges ``A → f`` for every feature whose association with a protected attribute
    ``A`` is significant (chi-square ``p < alpha``) and not negligible (Cramér's V ≥
    ``min_v``), plus ``A → m`` for the stated ``mediators``; ``f → Y`` for every
    feature. Protected attributes are taken as exogenous (nothing points into them).
    Numeric features associated with the primary attribute (and the stated mediators)
    are proposed as biased mediators. This is the "current data checks" route: no
    causal-discovery library is used (the maintained ones pull in heavy stacks), and the
    result is marked ``approved: False`` so the causal gate keeps the run a *draft*
    until domain experts review it.
    """
    y = pd.Series(outcome_values, index=df.index)
    edges = [[a, m] for a in protected for m in mediators]
    biased = list(mediators)
    for f in features:
        for a in protected:
            v, p = cramers_v(df[f], df[a])
            if v >= min_v and p < alpha and [a, f] not in edges:
                edges.append([a, f])
                if a == primary and pd.api.types.is_numeric_dtype(df[f]) and cramers_v(df[f], y)[1] < alpha:
                    biased.append(f)
        edges.append([f, outcome])
    return {"edges": edges, "proxies": [], "resolving": [], "biased_mediators": sorted(set(biased)),
            "approved": False,
            "description": f"proposed from data associations (Cramér's V >= {min_v}, chi-square p < {alpha}); "
                           "not approved by domain experts — awaits expert review"}  # fmt: skip


def _numbers_filled(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` with the missing numbers of ``columns`` replaced by their column's median.

    >>> _numbers_filled(pd.DataFrame({"x": [1.0, None, 3.0], "s": ["a", None, "b"]}), ["x", "s"])["x"].tolist()
    [1.0, 2.0, 3.0]
    """
    gaps = [c for c in columns if pd.api.types.is_numeric_dtype(df[c]) and df[c].isna().any()]
    if not gaps:
        return df
    out = df.copy()
    for c in gaps:
        median = out[c].median()
        out[c] = out[c].fillna(0.0 if pd.isna(median) else median)
    return out


def causal_analysis(
    df: pd.DataFrame,
    *,
    protected: Sequence[str],
    outcome: str,
    outcome_values: np.ndarray,
    features: Sequence[str],
    knowledge: Mapping[str, Any] | None = None,
    mediators: Sequence[str] = (),
    primary: str | None = None,
    min_group_size: int = 30,
) -> tuple[dict[str, Any], nx.DiGraph, dict[str, str]]:
    """Run the whole causal component; returns (report, DAG, node roles).

    Missing numbers in ``features`` count as the column's median here (0 where a column has
    none): the tests of association and the regressions need a value in every row."""
    check_columns("--protected", protected, df.columns)
    check_columns("--mediators", mediators, df.columns)
    df = _numbers_filled(df, features)
    source = "expert knowledge"
    if knowledge is None:
        knowledge = propose_dag(df, protected=protected, outcome=outcome, outcome_values=outcome_values,
                                features=features, mediators=mediators, primary=primary or protected[0])  # fmt: skip
        source = "proposed from data"
    g = build_dag(knowledge, protected=protected, outcome=outcome)
    data_proxies = []
    proxy_scores = {}
    for f in features:
        for a in protected:
            v, p = cramers_v(df[f], df[a])
            proxy_scores[f"{f}~{a}"] = round(v, 6)
            if v >= PROXY_CRAMERS_V and p < 0.05:
                data_proxies.append(f)
    classes = classify_variables(g, protected=protected, outcome=outcome, knowledge=knowledge,
                                 data_proxies=sorted(set(data_proxies)))  # fmt: skip
    stated = sorted(set(mediators) - set(classes["mediators"]))
    adjustment = {a: backdoor_adjustment_set(g, a, outcome) for a in protected}
    sens = {
        a: sensitivity_analysis(
            df,
            attribute=a,
            outcome_values=outcome_values,
            adjustment=adjustment[a] or [],
            min_group_size=min_group_size,
        )  # fmt: skip
        for a in protected
    }
    base = {}
    for a in protected:
        _, p = cramers_v(df[a], pd.Series(outcome_values, index=df.index))
        base[a] = p
    primary = primary or protected[0]
    num = [c for c in features if pd.api.types.is_numeric_dtype(df[c])]
    rec = recommend_interventions(classes, base_rates_differ=base[primary] < 0.05, numeric_columns=num)
    roles = node_roles(g, classes, protected, outcome)
    report = {
        "protected": list(protected),
        "primary_attribute": primary,
        "outcome": outcome,
        "dag": {"nodes": sorted(g.nodes), "edges": sorted([list(e) for e in g.edges])},
        "expert_approved": bool(knowledge.get("approved", False)),
        "dag_source": source,
        "dag_description": knowledge.get("description"),
        "awaits_expert_review": not bool(knowledge.get("approved", False)),
        **classes,
        "data_driven_proxies": sorted(set(data_proxies)),
        "proxy_association": proxy_scores,
        "stated_mediators_not_in_dag": stated,
        "edge_checks": check_edges(df, g),
        "adjustment_sets": adjustment,
        "sensitivity": sens,
        "base_rate_difference_p_value": base,
        "recommendation": rec,
        "protected_in_model_features": sorted(set(protected) & set(features)),
    }
    return report, g, roles
