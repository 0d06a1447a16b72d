"""``Client``: the analyst's (and owner's, and operator's) handle on the gateway's HTTP API.

Inside a JupyterHub single-user server it needs no arguments: the spawner sets
``SANDBOX_GATEWAY_URL`` and the hub sets ``JUPYTERHUB_API_TOKEN`` (the user's own token). Outside
the hub, pass ``url=`` and ``token=`` or set ``SANDBOX_GATEWAY_URL`` and ``SANDBOX_TOKEN``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pandas as pd

from sandbox.client.errors import GatewayUnavailable, ServerError, error_from_response
from sandbox.client.frame import DPFrame

__all__ = ["Client", "Estimate"]

URL_VARIABLE = "SANDBOX_GATEWAY_URL"
TOKEN_VARIABLES = ("SANDBOX_TOKEN", "JUPYTERHUB_API_TOKEN")
API_PREFIX = "/api/v1"
DEFAULT_VALIDITY = timedelta(days=90)


@dataclass(frozen=True)
class Estimate:
    """What a query would cost and how accurate it would be; nothing was spent."""

    epsilon: float
    delta: float
    groups: int | None
    accuracy: pd.DataFrame
    budget_after: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        groups = "" if self.groups is None else f", {self.groups} groups"
        lines = [f"Estimate: ε {self.epsilon:g}, δ {self.delta:g}{groups}"]
        if self.budget_after:
            lines.append("budget after: " + ", ".join(f"{k} {v:g}" for k, v in self.budget_after.items()))
        if not self.accuracy.empty:
            lines.append(self.accuracy.to_string(index=False))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        after = ", ".join(f"{k} {v:g}" for k, v in self.budget_after.items())
        head = f"<p><b>Estimate</b>: ε {self.epsilon:g}, δ {self.delta:g}. Budget after: {after}.</p>"
        return head + (self.accuracy.to_html(index=False) if not self.accuracy.empty else "")


class Client:
    """A connection to the sandbox gateway with one user's token.

    Every method raises a ``sandbox.client.errors.SandboxClientError`` subclass carrying the
    gateway's ``code``, ``message`` and ``rule`` when the gateway refuses.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 120.0) -> None:
        base = url or os.environ.get(URL_VARIABLE)
        if not base:
            raise GatewayUnavailable(
                f"no gateway URL: pass Client(url=...) or set {URL_VARIABLE}", code="client.no_url"
            )
        secret = token or next((os.environ[v] for v in TOKEN_VARIABLES if os.environ.get(v)), None)
        if not secret:
            raise GatewayUnavailable(
                "no token: pass Client(token=...), or set SANDBOX_TOKEN, or run inside JupyterHub",
                code="client.no_token",
            )
        self.url = base.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {secret}", "User-Agent": "sandbox-client"},
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    # who and what
    def me(self) -> dict[str, Any]:
        """The caller: ``name``, ``roles``, ``organisation``."""
        return self._object("GET", "/me")

    def datasets(self) -> pd.DataFrame:
        """The catalogue: one row per dataset visible to the caller (metadata only, never rows)."""
        rows = [_dataset_row(item) for item in _items(self._json("GET", "/datasets"))]
        return pd.DataFrame(
            rows, columns=["name", "title", "owner", "classification", "tables", "description"]
        )

    def dataset(self, name: str) -> dict[str, Any]:
        """The full catalogue entry of one dataset (metadata, schema, fingerprints)."""
        return self._object("GET", f"/datasets/{name}")

    def describe(self, name: str) -> pd.DataFrame:
        """The schema of a dataset: one row per column with its role, type, bounds and public keys."""
        entry = self.dataset(name)
        return pd.DataFrame(
            _column_rows(entry),
            columns=["table", "column", "role", "type", "lower", "upper", "keys", "description"],
        )

    # access
    def request_access(
        self,
        dataset: str,
        purpose: str,
        columns: list[str],
        epsilon: float,
        *,
        delta: float = 0.0,
        valid_until: datetime | date | str | None = None,
    ) -> dict[str, Any]:
        """Ask the dataset's owner for access for your organisation; the new request (``pending``)."""
        until = valid_until or (datetime.now().astimezone() + DEFAULT_VALIDITY)
        body = {
            "dataset": dataset,
            "purpose": purpose,
            "columns": list(columns),
            "epsilon": epsilon,
            "delta": delta,
            "valid_until": until.isoformat() if isinstance(until, date) else until,
        }
        return self._object("POST", "/access-requests", json=body)

    def access_requests(self, status: str | None = None) -> pd.DataFrame:
        """Access requests visible to the caller (own organisation, own datasets, or all)."""
        params = {"status": status} if status else None
        return pd.DataFrame(_items(self._json("GET", "/access-requests", params=params)))

    def approve(self, request_id: str, **limits: Any) -> dict[str, Any]:
        """Approve a request on your dataset (owner); ``limits`` narrow it (``epsilon``,
        ``max_epsilon_per_query``, ``min_group_size``, ``columns``, ``valid_until`` ...)."""
        body = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in limits.items()}
        return self._object("POST", f"/access-requests/{request_id}/approve", json=body)

    def reject(self, request_id: str, reason: str) -> dict[str, Any]:
        """Reject a request on your dataset (owner) with a reason the analyst will read."""
        return self._object("POST", f"/access-requests/{request_id}/reject", json={"reason": reason})

    def policies(self) -> pd.DataFrame:
        """Access policies visible to the caller."""
        return pd.DataFrame(_items(self._json("GET", "/policies")))

    def revoke_policy(self, policy_id: str, reason: str) -> dict[str, Any]:
        """Revoke a policy on your dataset (owner); the next query under it is denied."""
        return self._object("POST", f"/policies/{policy_id}/revoke", json={"reason": reason})

    def register_dataset(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Register a dataset from its metadata document; sources are files in the import folder."""
        return self._object("POST", "/datasets", json=metadata)

    # queries
    def estimate(self, sql: str, *, dataset: str, epsilon: float, delta: float = 0.0) -> Estimate:
        """Cost and expected accuracy of a query, spending nothing."""
        raw = self._object(
            "POST",
            "/queries/estimate",
            json={"dataset": dataset, "sql": sql, "epsilon": epsilon, "delta": delta},
        )
        accuracy = pd.DataFrame(
            [
                {
                    "column": a["column"],
                    "aggregate": a["aggregate"],
                    "ci95": a.get("ci95"),
                    "note": a.get("note", ""),
                }
                for a in raw.get("aggregates", [])
            ],
            columns=["column", "aggregate", "ci95", "note"],
        )
        after = raw.get("budget_after") or {}
        return Estimate(
            epsilon=float(raw["epsilon"]),
            delta=float(raw["delta"]),
            groups=raw.get("groups"),
            accuracy=accuracy,
            budget_after={k: float(v) for k, v in after.items() if v is not None},
            raw=raw,
        )

    def query(self, sql: str, *, dataset: str, epsilon: float, delta: float = 0.0) -> DPFrame:
        """Run a DP query; the noisy rows as a ``DPFrame`` whose ``attrs`` carry cost, CIs and budget."""
        raw = self._object(
            "POST", "/queries", json={"dataset": dataset, "sql": sql, "epsilon": epsilon, "delta": delta}
        )
        return answer_frame(raw, dataset=dataset, sql=sql)

    def history(self, dataset: str | None = None, limit: int = 100) -> pd.DataFrame:
        """Recorded queries visible to the caller, newest first (never their results)."""
        params: dict[str, Any] = {"limit": limit}
        if dataset:
            params["dataset"] = dataset
        return pd.DataFrame(_items(self._json("GET", "/queries", params=params)))

    def query_record(self, query_id: str) -> dict[str, Any]:
        """One recorded query."""
        return self._object("GET", f"/queries/{query_id}")

    def budget(self) -> pd.DataFrame:
        """Budget per visible policy: granted, spent, reserved and remaining epsilon and delta."""
        return pd.DataFrame(_items(self._json("GET", "/budget")))

    # operators and owners
    def audit(self, **filters: Any) -> pd.DataFrame:
        """Audit events (operator); filters: actor, org, dataset, type, since, until."""
        params = {
            k: (v.isoformat() if isinstance(v, date) else v) for k, v in filters.items() if v is not None
        }
        return pd.DataFrame(_items(self._json("GET", "/audit", params=params)))

    def verify_audit(self) -> dict[str, Any]:
        """Walk the audit hash chain and its signed checkpoints (operator)."""
        return self._object("GET", "/audit/verify")

    def export_audit(self, fmt: str = "jsonl", **filters: Any) -> str:
        """Audit events as JSON Lines or CSV text (operator)."""
        params = {"format": fmt, **{k: v for k, v in filters.items() if v is not None}}
        return self._request("GET", "/audit/export", params=params).text

    def usage(self, **filters: Any) -> pd.DataFrame:
        """The metering report (可计量), one row per organisation and dataset (operator: all;
        owner: own datasets); filters: since, until, organisation, dataset."""
        params = {
            k: (v.isoformat() if isinstance(v, date) else v) for k, v in filters.items() if v is not None
        }
        report = self._object("GET", "/usage", params=params)
        frame = pd.DataFrame(report.get("rows", []))
        frame.attrs.update({"since": report.get("since"), "until": report.get("until")})
        return frame

    # transport
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayUnavailable(
                f"cannot reach the gateway at {self.url} ({type(exc).__name__})", code="client.unreachable"
            ) from None
        if response.is_success:
            return response
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_from_response(response.status_code, body)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                "the gateway answered something that is not JSON", code="client.bad_answer", status=200
            ) from None

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = self._json(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ServerError(
                "the gateway answered an unexpected shape", code="client.bad_answer", status=200
            )
        return body


def answer_frame(raw: dict[str, Any], *, dataset: str, sql: str) -> DPFrame:
    """The ``DPFrame`` of a query answer body."""
    columns = [c if isinstance(c, str) else str(c.get("name")) for c in raw.get("columns", [])]
    frame = DPFrame(raw.get("rows", []), columns=columns)
    accuracy = list(raw.get("accuracy", []))
    frame.attrs.update(
        {
            "query_id": raw.get("query_id"),
            "dataset": dataset,
            "sql": sql,
            "epsilon_spent": float(raw.get("epsilon_spent", 0.0)),
            "delta_spent": float(raw.get("delta_spent", 0.0)),
            "cached": bool(raw.get("cached", False)),
            "ci95": {a["column"]: list(a.get("ci95") or []) for a in accuracy if "column" in a},
            "accuracy": accuracy,
            "budget": dict(raw.get("budget") or {}),
        }
    )
    return frame


def _items(body: Any) -> list[dict[str, Any]]:
    """The rows of a listing answer (a JSON array of objects)."""
    if not isinstance(body, list):
        raise ServerError("the gateway answered a listing that is not an array", code="client.bad_answer")
    return body


def _dataset_row(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": entry["name"],
        "title": entry.get("title"),
        "owner": entry.get("owner"),
        "classification": entry.get("classification"),
        "tables": ", ".join(t["name"] for t in entry.get("tables", [])),
        "description": (entry.get("description") or "").strip(),
    }


def _column_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "table": table["name"],
            "column": column["name"],
            "role": column.get("role"),
            "type": column.get("type"),
            "lower": column.get("lower"),
            "upper": column.get("upper"),
            "keys": column.get("keys"),
            "description": column.get("description", ""),
        }
        for table in entry.get("tables", [])
        for column in table.get("columns", [])
    ]
