"""The root configuration loader: every accepted key is used."""

from __future__ import annotations

import time

from fairwatch.monitor.engine import Engine
from fairwatch.streaming.simulator import LoanSimulator

from fairwatch.app.config import load_config


def _disparate_impact(cfg, model: str) -> dict[str, float]:
    sim = LoanSimulator(seed=3, rate=5.0, scenario="none", model=model, start=time.time() - 7200)
    batch = sim.advance_batch(3600.0)
    engine = Engine(cfg.engine_settings())
    decisions = [v for o, v in zip(batch.is_outcome.tolist(), batch.values, strict=True) if not o]
    engine.process(decisions=decisions, outcomes=[], now=time.time())
    return {
        s.labels["group"]: s.value
        for s in engine.snapshot().samples
        if s.name == "fairness_disparate_impact" and s.labels["attribute"] == "race" and s.labels["window"] == "24h"
    }


def test_a_models_reference_groups_pick_its_disparate_impact_reference():
    cfg = load_config(env={"FAIRWATCH_MODELS": "{loan-approval: {reference_groups: {race: Black}}}"})
    per_model = _disparate_impact(cfg, "loan-approval")
    assert per_model["Black"] == 1.0 and any(v != 1.0 for v in per_model.values())
    other = _disparate_impact(load_config(env={}), "loan-approval")
    assert other != per_model  # without it, the reference is the group with the highest rate
