"""The analyst's Python client: ``Client`` talks to the gateway over HTTP, answers are ``DPFrame``s.

A pure client: it needs only httpx and pandas (IPython for the ``%%dpsql`` magic), never the
engine, DuckDB or the data.
"""

from sandbox.client.client import Client, Estimate
from sandbox.client.errors import (
    AuthenticationError,
    BudgetExhausted,
    NotFound,
    PolicyDenied,
    QueryRejected,
    SandboxClientError,
)
from sandbox.client.frame import DPFrame

__all__ = [
    "AuthenticationError",
    "BudgetExhausted",
    "Client",
    "DPFrame",
    "Estimate",
    "NotFound",
    "PolicyDenied",
    "QueryRejected",
    "SandboxClientError",
]
