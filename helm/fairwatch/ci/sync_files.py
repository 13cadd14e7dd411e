"""Copy the chart's embedded files from their one source of truth.

Helm's ``.Files.Get`` reads only inside the chart, so the chart carries copies of
``alerts/prometheus/{recording,alerting}_rules.yml`` (→ the PrometheusRule) and
``grafana/dashboards/*.json`` (→ the dashboard ConfigMaps) under ``files/``.
``tests/test_helm.py`` fails when a copy differs from its source; fix it with
(from the repository root)::

    python helm/fairwatch/ci/sync_files.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHART = Path(__file__).resolve().parents[1]
ROOT = CHART.parents[1]


#: chart file -> source file, relative to the chart and the repository.
def copies() -> dict[Path, Path]:
    out = {
        CHART / "files" / "prometheus" / name: ROOT / "alerts" / "prometheus" / name
        for name in ("recording_rules.yml", "alerting_rules.yml")
    }
    for src in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        out[CHART / "files" / "dashboards" / src.name] = src
    return out


def main() -> int:
    wanted = copies()
    for stale in (CHART / "files" / "dashboards").glob("*.json"):
        if stale not in wanted:
            stale.unlink()
    for dst, src in wanted.items():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        print(f"{src.relative_to(ROOT)} -> {dst.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
