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
from urllib.parse import quote

import httpx
import pandas as pd

from sandbox.client.errors import GatewayUnavailable, ServerError, error_from_response
from sandbox.client.frame import DPFrame

__all__ = ["Client", "Estimate"]

URL_VARIABLE = "SANDBOX_GATEWAY_URL"
TOKEN_VARIABLES = ("SANDBOX_TOKEN", "JUPYTERHUB_API_TOKEN")
API_PREFIX = "/api/v1"
DEFAULT_VALIDITY = timedelta(days=90)
TIME_COLUMNS = frozenset({"time", "valid_from", "valid_until"})


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# the fields of the gateway's listings (issue 4's contract), so empty listings keep their columns
REQUEST_COLUMNS = _names(
    "id organisation dataset dataset_owner requested_by purpose columns epsilon delta valid_from "
    "valid_until status created_at decided_by decided_at reason policy_id"
)
POLICY_COLUMNS = _names(
    "id request_id organisation dataset dataset_owner columns epsilon delta max_epsilon_per_query "
    "max_delta_per_query min_group_size aggregates valid_from valid_until status approved_by "
    "approved_at ended_by ended_at reason"
)
QUERY_COLUMNS = _names(
    "id principal organisation dataset dataset_version policy_id sql fingerprint epsilon delta "
    "status cached replay_of rule error_code result_shape created_at finished_at"
)
BUDGET_COLUMNS = _names(
    "policy_id organisation dataset status ledger epsilon_granted epsilon_spent epsilon_reserved "
    "epsilon_remaining delta_granted delta_spent delta_reserved delta_remaining lifetime_epsilon_used "
    "lifetime_epsilon_cap lifetime_delta_used lifetime_delta_cap valid_until"
)
AUDIT_COLUMNS = _names("seq type time actor via organisation dataset payload prev_hash hash")
USAGE_COLUMNS = _names(
    "organisation dataset queries_answered queries_rejected queries_cached queries_failed "
    "queries_in_flight epsilon_spent delta_spent"
)


@dataclass(frozen=True)
class Estimate:
    """What a query would cost and how accurate it would be; nothing was spent."""

    epsilon: float
    delta: float
    groups: int | None
    accuracy: pd.DataFrame
    budget_after: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    access: dict[str, Any] = field(default_factory=dict)
    policy_needed: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        groups = "" if self.groups is None else f", {self.groups} groups"
        lines = [f"Estimate: ε {self.epsilon:g}, δ {self.delta:g}{groups}"]
        if self.access and not self.access.get("granted"):
            rule = self.access.get("rule")
            lines.append(f"no access yet ({rule}): a policy would need {self.policy_needed}")
        elif self.access.get("fits_policy") is False:
            lines.append(f"does not fit the policy: {self.access.get('message')}")
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
        return self._object("GET", f"/datasets/{_segment(name)}")

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

    def access_requests(
        self, status: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> pd.DataFrame:
        """Access requests visible to the caller (own organisation, own datasets, or all), newest
        first, one page; ``attrs['next_cursor']`` fetches the next (``None`` on the last page)."""
        params = _params(status=status, limit=limit, cursor=cursor)
        return self._page("/access-requests", params, REQUEST_COLUMNS)

    def withdraw_request(self, request_id: str) -> dict[str, Any]:
        """Withdraw your organisation's pending request (analyst)."""
        return self._object("POST", f"/access-requests/{_segment(request_id)}/withdraw")

    def approve(self, request_id: str, **limits: Any) -> dict[str, Any]:
        """Approve a request on your dataset (owner); ``limits`` narrow it (``epsilon``,
        ``max_epsilon_per_query``, ``min_group_size``, ``columns``, ``valid_until`` ...)."""
        return self._object(
            "POST", f"/access-requests/{_segment(request_id)}/approve", json=_params(**limits)
        )

    def reject(self, request_id: str, reason: str) -> dict[str, Any]:
        """Reject a request on your dataset (owner) with a reason the analyst will read."""
        return self._object(
            "POST", f"/access-requests/{_segment(request_id)}/reject", json={"reason": reason}
        )

    def policies(self, *, limit: int = 100, cursor: str | None = None) -> pd.DataFrame:
        """Access policies visible to the caller, newest first, one page (``attrs['next_cursor']``)."""
        return self._page("/policies", _params(limit=limit, cursor=cursor), POLICY_COLUMNS)

    def amend_policy(self, policy_id: str, *, reason: str = "", **terms: Any) -> dict[str, Any]:
        """Amend an active policy on your dataset (owner): ``epsilon``, ``delta`` (top up),
        ``valid_until``, ``columns``, ``aggregates`` (narrow only), per-query caps."""
        body = _params(reason=reason, **terms)
        return self._object("POST", f"/policies/{_segment(policy_id)}/amend", json=body)

    def set_cap(
        self,
        dataset: str,
        *,
        scope: str = "dataset",
        organisation: str | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
    ) -> None:
        """Set a lifetime cap on your dataset (owner): ``scope`` ``dataset`` (all organisations
        together), ``per_organisation`` (each one's default) or ``organisation`` (the one named);
        ``None`` amounts remove the cap."""
        body = {"scope": scope, "organisation": organisation, "epsilon": epsilon, "delta": delta}
        self._request("PUT", f"/datasets/{_segment(dataset)}/caps", json=body)

    def revoke_policy(self, policy_id: str, reason: str) -> dict[str, Any]:
        """Revoke a policy on your dataset (owner); the next query under it is denied."""
        return self._object("POST", f"/policies/{_segment(policy_id)}/revoke", json={"reason": reason})

    def register_dataset(self, metadata_path: str, *, replace: bool = False) -> dict[str, Any]:
        """Register a dataset (owner, operator) from a metadata YAML in the gateway's import folder;
        ``metadata_path`` is relative to that folder, and so are the sources it names."""
        return self._object("POST", "/datasets", json={"metadata_path": metadata_path, "replace": replace})

    def certificate(self, dataset: str) -> dict[str, Any]:
        """The registration certificate (登记存证): fingerprints of a dataset, anchored in the audit chain."""
        return self._object("GET", f"/datasets/{_segment(dataset)}/certificate")

    def preview(
        self, dataset: str, n: int = 1000, *, table: str | None = None, seed: int = 0
    ) -> pd.DataFrame:
        """``n`` SYNTHETIC rows of a table, generated from its metadata alone (free, no budget): for
        writing and debugging a notebook. They carry no information about the real data;
        ``attrs['synthetic']`` is True and ``attrs['notice']`` says so."""
        params = _params(n=n, table=table, seed=seed)
        raw = self._object("GET", f"/datasets/{_segment(dataset)}/preview", params=params)
        frame = pd.DataFrame(raw.get("rows", []), columns=list(raw.get("columns", [])))
        frame.attrs.update(
            {
                "synthetic": True,
                "notice": raw.get("notice", ""),
                "dataset": dataset,
                "table": raw.get("table"),
            }
        )
        return frame

    # queries
    def estimate(
        self,
        sql: str,
        *,
        dataset: str,
        epsilon: float | None = None,
        delta: float = 0.0,
        ci: float | None = None,
        group_size: int | None = None,
        max_joined_rows_per_unit: int | None = None,
    ) -> Estimate:
        """Cost and expected accuracy of a query, spending nothing; works before access is granted
        (``access`` and ``policy_needed`` then say what to request). ``group_size``: an assumed group
        size for the CIs of AVG/VARIANCE/STDDEV; ``ci``: derive the epsilon from a target accuracy;
        ``max_joined_rows_per_unit``: as for ``query``."""
        body = _query_body(dataset, sql, epsilon, delta, ci, group_size, max_joined_rows_per_unit)
        raw = self._object("POST", "/queries/estimate", json=body)
        accuracy = pd.DataFrame(
            [
                {
                    "column": a["column"],
                    "aggregate": a["aggregate"],
                    "ci95": a.get("ci95"),
                    "rank_error95": a.get("rank_error95"),
                    "note": a.get("note", ""),
                }
                for a in raw.get("aggregates", [])
            ],
            columns=["column", "aggregate", "ci95", "rank_error95", "note"],
        )
        after = raw.get("budget_after") or {}
        return Estimate(
            epsilon=float(raw["epsilon"]),
            delta=float(raw["delta"]),
            groups=raw.get("groups"),
            accuracy=accuracy,
            budget_after={k: float(v) for k, v in after.items() if v is not None},
            raw=raw,
            access=dict(raw.get("access") or {}),
            policy_needed=dict(raw.get("policy_needed") or {}),
        )

    def query(
        self,
        sql: str,
        *,
        dataset: str,
        epsilon: float | None = None,
        delta: float = 0.0,
        ci: float | None = None,
        group_size: int | None = None,
        max_joined_rows_per_unit: int | None = None,
    ) -> DPFrame:
        """Run a DP query; the noisy rows as a ``DPFrame`` whose ``attrs`` carry cost, CIs and budget.

        Pass ``epsilon``, or ``ci`` (accuracy first): the smallest epsilon whose 95% half-width on
        the first aggregate is at most ``ci`` is derived, shown in ``attrs['epsilon_spent']``, and
        spent only if the policy and budget allow it (AVG/VARIANCE/STDDEV also need ``group_size``).
        ``max_joined_rows_per_unit`` (joins): keep at most that many joined rows per person for
        this query, lowering the sensitivity (from 1 to the join's bound; docs/sql.md).
        """
        body = _query_body(dataset, sql, epsilon, delta, ci, group_size, max_joined_rows_per_unit)
        raw = self._object("POST", "/queries", json=body)
        return answer_frame(raw, dataset=dataset, sql=sql)

    def history(
        self, dataset: str | None = None, limit: int = 100, *, cursor: str | None = None
    ) -> pd.DataFrame:
        """Recorded queries visible to the caller, newest first, one page (never their results);
        ``attrs['next_cursor']`` fetches the next page."""
        return self._page("/queries", _params(dataset=dataset, limit=limit, cursor=cursor), QUERY_COLUMNS)

    def query_record(self, query_id: str) -> dict[str, Any]:
        """One recorded query."""
        return self._object("GET", f"/queries/{_segment(query_id)}")

    def budget(self) -> pd.DataFrame:
        """Budget per visible policy: granted, spent, reserved and remaining epsilon and delta, and
        the organisation's lifetime loss on the dataset (operators: every organisation's)."""
        return _frame(self._json("GET", "/budget"), BUDGET_COLUMNS)

    # operators and owners
    def audit(
        self,
        *,
        actor: str | None = None,
        org: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        after: int | None = None,
        cursor: str | None = None,
    ) -> pd.DataFrame:
        """Audit events in chain order (operator), filtered by actor, organisation, dataset, event
        type and time: the newest ``limit``, or with ``after`` (a seq; 0 for the start) or
        ``cursor`` one page forward, whose ``attrs['next_cursor']`` fetches the next."""
        params = _params(
            actor=actor,
            org=org,
            dataset=dataset,
            type=type,
            since=since,
            until=until,
            limit=limit,
            after=after,
            cursor=cursor,
        )
        return self._page("/audit", params, AUDIT_COLUMNS)

    def verify_audit(self) -> dict[str, Any]:
        """Walk the audit hash chain and check its signed checkpoints (operator)."""
        return self._object("GET", "/audit/verify")

    def export_audit(
        self,
        fmt: str = "jsonl",
        *,
        actor: str | None = None,
        org: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> str:
        """Audit events as JSON Lines (``jsonl``) or CSV (``csv``) text (operator)."""
        params = _params(
            format=fmt, actor=actor, org=org, dataset=dataset, type=type, since=since, until=until
        )
        return self._request("GET", "/audit/export", params=params).text

    def usage(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        org: str | None = None,
        dataset: str | None = None,
    ) -> pd.DataFrame:
        """The metering report (可计量): one row per organisation and dataset (operator: all;
        owner: own datasets); ``attrs`` hold the period."""
        report = self._object(
            "GET", "/usage", params=_params(since=since, until=until, org=org, dataset=dataset)
        )
        rows = report.get("rows") or []
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(USAGE_COLUMNS))
        frame.attrs.update({"since": report.get("since"), "until": report.get("until")})
        return frame

    # transport
    def _page(self, path: str, params: dict[str, Any], columns: tuple[str, ...]) -> pd.DataFrame:
        response = self._request("GET", path, params=params)
        try:
            body = response.json()
        except ValueError:
            raise ServerError(
                "the gateway answered something that is not JSON", code="client.bad_answer", status=200
            ) from None
        frame = _frame(body, columns)
        frame.attrs["next_cursor"] = response.headers.get("x-next-cursor")
        return frame

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
            "rank_error95": {
                a["column"]: a["rank_error95"] for a in accuracy if a.get("rank_error95") is not None
            },
            "quantile_band95": {
                a["column"]: a["quantile_band95"] for a in accuracy if a.get("quantile_band95") is not None
            },
            "interval95": {a["column"]: a["interval95"] for a in accuracy if a.get("interval95") is not None},
            "accuracy": accuracy,
            "budget": dict(raw.get("budget") or {}),
            "grouping": raw.get("grouping"),
            "suppressed_rows": int(raw.get("suppressed_rows") or 0),
            "min_group_size": int(raw.get("min_group_size") or 0),
            "ci_target": raw.get("ci_target"),
        }
    )
    return frame


def _query_body(  # noqa: PLR0917 - the query request's fields, in order
    dataset: str,
    sql: str,
    epsilon: float | None,
    delta: float,
    ci: float | None,
    group_size: int | None,
    max_joined_rows_per_unit: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"dataset": dataset, "sql": sql, "delta": delta}
    optional = {
        "epsilon": epsilon,
        "ci": ci,
        "group_size": group_size,
        "max_joined_rows_per_unit": max_joined_rows_per_unit,
    }
    return body | {k: v for k, v in optional.items() if v is not None}


def _items(body: Any) -> list[dict[str, Any]]:
    """The rows of a listing answer (a JSON array of objects)."""
    if not isinstance(body, list):
        raise ServerError("the gateway answered a listing that is not an array", code="client.bad_answer")
    return body


def _frame(body: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    """A listing as a DataFrame (with ``columns`` even when empty), timestamp columns parsed."""
    items = _items(body)
    frame = pd.DataFrame(items) if items else pd.DataFrame(columns=list(columns))
    for column in frame.columns:
        if column in TIME_COLUMNS or column.endswith("_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def _segment(value: str) -> str:
    """``value`` as one URL path segment."""
    return quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    """Query or body parameters without the unset ones, dates as ISO-8601 text."""
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items() if v is not None}


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
