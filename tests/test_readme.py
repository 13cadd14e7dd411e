"""The README's promises: two set-up commands, and a configuration example that loads."""

from __future__ import annotations

from pathlib import Path

import yaml

from fairwatch.app.config import Config

README = Path(__file__).resolve().parents[1] / "README.md"
CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"


def test_readme_configuration_example_is_a_valid_config():
    text = README.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = Config.model_validate(yaml.safe_load(block))
    assert cfg.models["loan-approval"].label_maturity == 90 * 86400.0
    assert cfg.kafka.group_id == "fairwatch" and cfg.alerts.policy.confirm["5m"] == "15m"


def test_readme_gives_two_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = [block.split("```", 1)[0].strip() for block in section.split("```bash\n")[1:]]
    assert commands == ["pip install -e '.[demo]' && fairwatch demo", "pip install -e '.[test]' && python -m pytest"]
    assert commands[1] in CI_RUN.read_text()
