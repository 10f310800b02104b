"""The lifecycle stages of a trained configuration.

The machine assigns ``REJECTED``, ``PAPER`` or ``LIVE_CANDIDATE`` at the end of a job
(``app.validation.confidence``); ``LIVE`` and ``RETIRED`` are a person's decisions, made
through ``POST /api/v2/configurations/<name>/stage`` and kept in an audit trail.
"""
from __future__ import annotations

__all__ = ["STAGES", "MACHINE_STAGES", "PERSON_STAGES"]

MACHINE_STAGES = ("REJECTED", "PAPER", "LIVE_CANDIDATE")
PERSON_STAGES = ("LIVE", "RETIRED")
STAGES = MACHINE_STAGES + PERSON_STAGES
