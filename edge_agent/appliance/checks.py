"""Config problems an operator should fix but that do not stop the service: reported at start and reload."""

from __future__ import annotations

import logging

from aiohttp import web

from ..config import HazardRule
from ..runtime import AGENT
from .runtime import APPLIANCE

log = logging.getLogger(__name__)


def unknown_rule_classes(
    rules: list[HazardRule], labels: tuple[str, ...] | list[str], model: str
) -> list[str]:
    """One line per hazard rule class the model cannot detect, named by its key path."""
    known = set(labels)
    return [
        f"hazards.{i}.classes.{j}: rule {rule.name!r} watches {cls!r}, which model {model} does not detect"
        for i, rule in enumerate(rules)
        for j, cls in enumerate(rule.classes)
        if cls not in known
    ]


def report_config(app: web.Application) -> list[str]:
    """Log each config warning once and keep them for /healthz notes (replaced on every start and reload)."""
    agent = app[AGENT]
    found = list(agent.loaded.warnings)
    engine = agent.engine_or_none
    if engine is not None:
        found += unknown_rule_classes(agent.config.hazards, engine.model.labels, engine.model.name)
    for line in found:
        log.warning("config: %s", line)
    app[APPLIANCE].lifecycle.config_warnings = found
    return found
