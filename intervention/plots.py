"""Plots (matplotlib, Agg backend): causal DAG, reliability diagrams, Pareto frontier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

from .metrics import calibration_bins  # noqa: E402

__all__ = ["plot_dag", "plot_reliability", "plot_pareto"]

_ROLE_COLORS = {
    "protected": "#d62728",
    "outcome": "#2ca02c",
    "proxy": "#ff7f0e",
    "mediator": "#1f77b4",
    "resolving": "#9467bd",
    "confounder": "#8c564b",
    "other": "#7f7f7f",
}


def plot_dag(graph: nx.DiGraph, roles: Mapping[str, str], path: str | Path) -> Path:
    """Draw the DAG layered by topological generation, nodes colored by role."""
    g = graph.copy()
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(g, subset_key="layer")
    fig, ax = plt.subplots(figsize=(11, 6.5))
    colors = [_ROLE_COLORS.get(roles.get(n, "other"), "#7f7f7f") for n in g.nodes]
    nx.draw_networkx(g, pos, ax=ax, node_color=colors, node_size=1500, font_size=8,
                     arrowsize=14, edge_color="#444444", font_color="white")  # fmt: skip
    for role, c in _ROLE_COLORS.items():
        ax.scatter([], [], color=c, label=role)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_axis_off()
    ax.set_title("Causal DAG (expert knowledge)")
    return _save(fig, path)


def plot_reliability(
    curves: Mapping[str, tuple[Any, Any]],
    path: str | Path,
    *,
    bins: int = 10,
    title: str = "Reliability diagram",
) -> Path:
    """Observed frequency vs mean score per bin for each group (``{group: (y, p)}``)."""
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    for name, (y, p) in curves.items():
        b = calibration_bins(y, p, bins)
        m = b["n"] > 0
        ax.plot(b["s"][m] / b["n"][m], b["l"][m] / b["n"][m], "o-", ms=4, label=str(name))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted P(favorable)",
           ylabel="observed favorable rate", title=title)  # fmt: skip
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_pareto(
    points: Sequence[Mapping[str, Any]],
    frontier: Sequence[str],
    path: str | Path,
    *,
    x: str = "accuracy",
    y: str = "dp_ratio",
) -> Path:
    """Candidates in the fairness–accuracy plane, the non-dominated ones joined."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    valid = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    for p in valid:
        on = p["name"] in frontier
        ax.scatter(p[x], p[y], s=50 if on else 25, color="#d62728" if on else "#1f77b4")
        ax.annotate(p["name"], (p[x], p[y]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = sorted((p for p in valid if p["name"] in frontier), key=lambda p: p[x])
    if front:
        ax.plot([p[x] for p in front], [p[y] for p in front], "-", color="#d62728", lw=1,
                label="Pareto frontier")  # fmt: skip
        ax.legend(fontsize=8)
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "),
           title="Fairness–accuracy trade-off of all candidates")  # fmt: skip
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
