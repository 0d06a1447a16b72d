"""Sane ranges of the numeric parameters people send: one place for the engine, the HTTP schemas
and the policy workflow.

Outside these ranges a request is refused with a 4xx naming the parameter, rather than reaching a
mechanism whose calibration would overflow (epsilon 1e-320 makes an infinite noise scale) or a
guarantee too weak to mean anything (delta above 1%).
"""

from __future__ import annotations

MIN_EPSILON = 1e-6  # the ledger counts epsilon in units of 1e-9; below 1e-6 no answer carries signal
MAX_EPSILON = 1_000_000.0  # a lifetime grant; the per-query ceiling is the max_epsilon_per_query setting
MAX_DELTA = 0.01  # delta is the chance the guarantee fails outright: 1% is already far too generous
MAX_MIN_GROUP_SIZE = 1_000_000_000
