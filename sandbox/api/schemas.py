"""Request and response models of the HTTP API (what the OpenAPI document shows).

Wire schemas are declared here, apart from the control plane's domain views (they inherit none
of them), so the wire contract changes only on purpose; ``tests/api/test_wire_schemas.py`` keeps
each response model's fields in step with its view. Dataset responses are built from catalog
records without physical storage details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox import ranges
from sandbox.budget import NewVersionBudget
from sandbox.catalog.models import Classification, ColumnRole, DatasetRecord
from sandbox.control.ledger import QueryStatus
from sandbox.policies.models import PolicyStatus, RequestStatus
from sandbox.principals import Principal, Role
from sandbox.query.summary import AggregateKind

NAME = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
# Numbers must be JSON numbers (strict: "1" and true are refused) within the sane ranges.
Epsilon = Annotated[
    float, Field(strict=True, ge=ranges.MIN_EPSILON, le=ranges.MAX_EPSILON, allow_inf_nan=False)
]
Delta = Annotated[float, Field(strict=True, ge=0, le=ranges.MAX_DELTA, allow_inf_nan=False)]
GroupSize = Annotated[int, Field(strict=True, ge=0, le=ranges.MAX_MIN_GROUP_SIZE)]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# errors


class ErrorDetail(BaseModel):
    """What went wrong and what to change."""

    code: str = Field(description="Stable dotted error code, e.g. `sql.join_not_allowed`.")
    message: str = Field(description="What to change; never contains data values or tokens.")
    rule: str | None = Field(None, description="The policy or SQL rule id that refused the request.")
    details: dict[str, Any] | None = Field(None, description="Structured extras (problems, limits).")


class ErrorBody(BaseModel):
    """The one error body of every non-2xx response."""

    model_config = _examples(
        {
            "error": {
                "code": "budget.epsilon_exhausted",
                "message": "The query needs epsilon 0.5 but "
                "0.2 remains under policy pol_1a2b; ask the owner for more budget.",
                "rule": "budget.epsilon_exhausted",
            }
        }
    )

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    meaning = {
        400: "Query not accepted (SQL outside the whitelist).",
        401: "No, invalid, expired or revoked token.",
        403: "Role, policy denial or budget exhausted.",
        404: "Not found (or not visible to you).",
        409: "Conflicts with the current state.",
        413: "Request body or SQL text too large.",
        422: "Malformed request.",
        429: "Too many requests from this principal.",
        503: "Temporarily unavailable (query time limit, hub unreachable).",
    }
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}


# identity


class Me(BaseModel):
    """The authenticated caller."""

    model_config = _examples({"name": "alice", "roles": ["analyst"], "organisation": "acme"})

    name: str
    roles: list[Role]
    organisation: str | None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


# datasets


class ColumnOut(BaseModel):
    """A declared column: its role, type, bounds and public keys."""

    name: str
    role: ColumnRole
    type: str | None = Field(description="DuckDB type of the stored column (identifiers: null).")
    description: str
    keys: list[Any] | None = Field(description="Public category list of a dimension.")
    lower: float | None = Field(description="Lower clamping bound of a measure.")
    upper: float | None = Field(description="Upper clamping bound of a measure.")
    scale: int | None = Field(description="Decimal places kept for a floating-point measure.")


class TableOut(BaseModel):
    """A declared table with its privacy unit and fingerprints."""

    name: str
    description: str
    privacy_unit: str | None
    max_rows_per_unit: int | None
    columns: list[ColumnOut]
    source_sha256: str | None = Field(
        description="SHA-256 of the source file(s) as registered (owners and operators; null for others)."
    )
    content_sha256: str | None = Field(
        description="SHA-256 of the loaded content (owners and operators; null for others)."
    )


class DatasetOut(BaseModel):
    """Catalogue entry of a dataset: metadata and schema, never rows."""

    model_config = _examples(
        {
            "name": "pums",
            "title": "PUMS census sample (1,000 persons)",
            "owner": "census-bureau",
            "classification": "general",
            "description": "One row per person.",
            "version": "reg_3f0c9a…",
            "content_digest": None,
            "registered_at": "2025-01-01T00:00:00Z",
            "tables": [
                {
                    "name": "people",
                    "description": "One row per person.",
                    "privacy_unit": "pid",
                    "max_rows_per_unit": 1,
                    "source_sha256": None,
                    "content_sha256": None,
                    "columns": [
                        {
                            "name": "age",
                            "role": "measure",
                            "type": "BIGINT",
                            "description": "Age.",
                            "keys": None,
                            "lower": 0,
                            "upper": 100,
                            "scale": None,
                        },
                        {
                            "name": "sex",
                            "role": "dimension",
                            "type": "BIGINT",
                            "description": "Sex.",
                            "keys": [0, 1],
                            "lower": None,
                            "upper": None,
                            "scale": None,
                        },
                    ],
                }
            ],
        }
    )

    name: str
    title: str
    owner: str
    classification: Classification
    description: str
    version: str = Field(description="Opaque id of this registration (random; not derived from the data).")
    content_digest: str | None = Field(
        description="SHA-256 over the metadata and every table's content (owners and operators; null for "
        "others, since a digest of the rows can be checked against a guess of them)."
    )
    registered_at: datetime
    tables: list[TableOut]

    @classmethod
    def of(cls, record: DatasetRecord, principal: Principal) -> DatasetOut:
        """The caller's view of a catalog record: digests only for its owners and operators."""
        digests = record.can_see_digests(principal)
        tables = []
        for table in record.metadata.tables:
            stored = record.stored_table(table.name)
            columns = []
            for column in table.columns:
                stored_column = stored.column(column.name) if stored else None
                columns.append(
                    ColumnOut(
                        name=column.name,
                        role=column.role,
                        type=stored_column.duckdb_type if stored_column else None,
                        description=column.description,
                        keys=column.keys,
                        lower=column.lower,
                        upper=column.upper,
                        scale=column.scale,
                    )
                )
            tables.append(
                TableOut(
                    name=table.name,
                    description=table.description,
                    privacy_unit=table.privacy_unit,
                    max_rows_per_unit=table.max_rows_per_unit,
                    columns=columns,
                    source_sha256=stored.source_sha256 if stored and digests else None,
                    content_sha256=stored.content_sha256 if stored and digests else None,
                )
            )
        meta = record.metadata
        return cls(
            name=meta.dataset,
            title=meta.title,
            owner=meta.owner,
            classification=meta.classification,
            description=meta.description,
            version=record.registration_id,
            content_digest=record.version if digests else None,
            registered_at=record.registered_at,
            tables=tables,
        )


class DatasetRegistration(BaseModel):
    """Register a dataset from a metadata YAML under the gateway's import folder."""

    model_config = _examples({"metadata_path": "census/pums.yaml", "replace": False})

    metadata_path: str = Field(
        min_length=1,
        max_length=1024,
        description="Path of the metadata YAML relative to the import folder; its sources are "
        "relative to the YAML's folder and must also lie inside the import folder.",
    )
    replace: bool = Field(False, description="Replace an already registered dataset of that name.")
    new_version_budget: NewVersionBudget = Field(
        NewVersionBudget.CARRY,
        description="What a new version does to budgets: `carry` the lifetime ledger over (default), "
        "or `renew` it (only for data about new people or a new period). Identical content always "
        "shares the ledger it was first registered with.",
    )


# access lifecycle


class AccessRequestCreate(BaseModel):
    """An analyst's request for access to a dataset, for their organisation."""

    model_config = _examples(
        {
            "dataset": "pums",
            "purpose": "Income statistics by education for a market study.",
            "columns": ["age", "educ", "income"],
            "epsilon": 3.0,
            "delta": 0.0,
            "valid_until": "2030-12-31T00:00:00Z",
        }
    )

    dataset: str = NAME
    purpose: str = Field(min_length=1, max_length=2000)
    columns: list[str] = Field(min_length=1, max_length=1000)
    epsilon: Epsilon = Field(description="Total epsilon asked for.")
    delta: Delta = Field(0.0, description="Total delta asked for.")
    valid_until: datetime
    valid_from: datetime | None = None


class AccessRequestOut(BaseModel):
    """An access request."""

    model_config = _examples(
        {
            "id": "req_3f2a9c",
            "organisation": "acme",
            "dataset": "pums",
            "dataset_owner": "census-bureau",
            "requested_by": "alice",
            "purpose": "Income statistics by education for a market study.",
            "columns": ["age", "educ", "income"],
            "epsilon": 3.0,
            "delta": 0.0,
            "valid_from": "2025-01-01T00:00:00Z",
            "valid_until": "2030-12-31T00:00:00Z",
            "status": "pending",
            "created_at": "2025-01-01T00:00:00Z",
        }
    )

    id: str
    organisation: str
    dataset: str
    dataset_owner: str
    requested_by: str
    purpose: str
    columns: tuple[str, ...]
    epsilon: float
    delta: float
    valid_from: datetime
    valid_until: datetime
    status: RequestStatus
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    policy_id: str | None = None


class Approval(BaseModel):
    """The owner's approval, possibly narrowing the request, with per-query limits."""

    model_config = _examples(
        {"epsilon": 2.0, "max_epsilon_per_query": 0.5, "min_group_size": 10, "aggregates": ["count", "avg"]}
    )

    columns: list[str] | None = Field(None, max_length=1000, description="Granted columns (default: asked).")
    epsilon: Epsilon | None = Field(None, description="Granted total epsilon.")
    delta: Delta | None = Field(None, description="Granted total delta.")
    valid_until: datetime | None = None
    max_epsilon_per_query: Epsilon
    max_delta_per_query: Delta = 0.0
    min_group_size: GroupSize = 0
    aggregates: list[AggregateKind] | None = Field(None, description="Allowed aggregates (default: all).")


class Rejection(BaseModel):
    """Why the owner rejects a request."""

    model_config = _examples({"reason": "The purpose does not match the dataset's licence."})

    reason: str = Field(min_length=1, max_length=2000)


class Revocation(BaseModel):
    """Why the owner revokes a policy."""

    model_config = _examples({"reason": "The study ended."})

    reason: str = Field(min_length=1, max_length=2000)


class Amendment(BaseModel):
    """The owner's amendment of an active policy; omitted terms stay as they are."""

    model_config = _examples({"epsilon": 3.0, "valid_until": "2031-06-30T00:00:00Z", "reason": "phase two"})

    epsilon: Epsilon | None = Field(None, description="New total epsilon (not below what was used).")
    delta: Delta | None = Field(None, description="New total delta.")
    valid_until: datetime | None = Field(None, description="New end of validity (in the future).")
    columns: list[str] | None = Field(None, max_length=1000, description="Granted columns (narrow only).")
    aggregates: list[AggregateKind] | None = Field(None, description="Allowed aggregates (narrow only).")
    max_epsilon_per_query: Epsilon | None = None
    max_delta_per_query: Delta | None = None
    reason: str = Field("", max_length=2000, description="Why; recorded in the audit log.")


class CapSetting(BaseModel):
    """A lifetime cap on a dataset's ledger; ``null`` amounts remove the cap."""

    model_config = _examples({"scope": "organisation", "organisation": "acme", "epsilon": 5.0, "delta": None})

    scope: Literal["dataset", "per_organisation", "organisation"] = Field(
        description="`dataset`: all organisations together; `per_organisation`: the default of each "
        "organisation; `organisation`: the one named."
    )
    organisation: str | None = Field(None, min_length=1, max_length=128)
    epsilon: float | None = Field(None, strict=True, ge=0, le=ranges.MAX_EPSILON, allow_inf_nan=False)
    delta: Delta | None = None

    @model_validator(mode="after")
    def _organisation_named_for_its_scope(self) -> CapSetting:
        if (self.scope == "organisation") != (self.organisation is not None):
            raise ValueError("name the organisation for scope `organisation`, and only then")
        return self


class PolicyOut(BaseModel):
    """An access policy and its limits."""

    model_config = _examples(
        {
            "id": "pol_8d1e",
            "request_id": "req_3f2a9c",
            "organisation": "acme",
            "dataset": "pums",
            "dataset_owner": "census-bureau",
            "columns": ["age", "educ", "income"],
            "epsilon": 2.0,
            "delta": 0.0,
            "max_epsilon_per_query": 0.5,
            "max_delta_per_query": 0.0,
            "min_group_size": 10,
            "aggregates": ["count", "avg"],
            "valid_from": "2025-01-01T00:00:00Z",
            "valid_until": "2030-12-31T00:00:00Z",
            "status": "active",
            "approved_by": "olivia",
            "approved_at": "2025-01-02T00:00:00Z",
        }
    )

    id: str
    request_id: str
    organisation: str
    dataset: str
    dataset_owner: str
    columns: tuple[str, ...]
    epsilon: float
    delta: float
    max_epsilon_per_query: float
    max_delta_per_query: float
    min_group_size: int
    aggregates: tuple[AggregateKind, ...]
    valid_from: datetime
    valid_until: datetime
    status: PolicyStatus
    approved_by: str
    approved_at: datetime
    ended_by: str | None = None
    ended_at: datetime | None = None
    reason: str | None = None


class BudgetOut(BaseModel):
    """One policy's budget: granted, spent, reserved, remaining (policy and lifetime cap), and the
    organisation's lifetime loss on the dataset's ledger across all its policies."""

    model_config = _examples(
        {
            "policy_id": "pol_8d1e",
            "organisation": "acme",
            "dataset": "pums",
            "status": "active",
            "epsilon_granted": 2.0,
            "epsilon_spent": 0.5,
            "epsilon_reserved": 0.0,
            "epsilon_remaining": 1.5,
            "delta_granted": 0.0,
            "delta_spent": 0.0,
            "delta_reserved": 0.0,
            "delta_remaining": 0.0,
            "ledger": "pums",
            "lifetime_epsilon_used": 3.5,
            "lifetime_epsilon_cap": 5.0,
            "lifetime_delta_used": 0.0,
            "lifetime_delta_cap": None,
            "valid_until": "2030-12-31T00:00:00Z",
        }
    )

    policy_id: str
    organisation: str
    dataset: str
    status: str
    ledger: str = Field(description="The lifetime ledger the dataset is charged to.")
    epsilon_granted: float
    epsilon_spent: float
    epsilon_reserved: float
    epsilon_remaining: float = Field(description="What may still be spent: policy and lifetime cap.")
    delta_granted: float
    delta_spent: float
    delta_reserved: float
    delta_remaining: float
    lifetime_epsilon_used: float = Field(description="The organisation's loss on the ledger, all policies.")
    lifetime_epsilon_cap: float | None
    lifetime_delta_used: float
    lifetime_delta_cap: float | None
    valid_until: datetime


# queries


class QueryRequest(BaseModel):
    """A DP SQL query (DuckDB dialect) on one dataset, with the epsilon (and delta) to spend."""

    model_config = _examples(
        {
            "dataset": "pums",
            "sql": "SELECT educ, COUNT(*) AS n, AVG(income) AS mean_income FROM people GROUP BY educ",
            "epsilon": 0.5,
            "delta": 0.0,
        }
    )

    dataset: str = NAME
    sql: str = Field(min_length=1, description="One SELECT; the SQL length limit is a setting (413).")
    epsilon: Epsilon | None = Field(None, description="Epsilon to spend; or pass ci instead.")
    delta: Delta = 0.0
    ci: float | None = Field(
        None,
        strict=True,
        gt=0,
        allow_inf_nan=False,
        description="Accuracy first: the 95% CI half-width wanted on the first aggregate; the "
        "smallest epsilon that achieves it is derived and spent (instead of epsilon).",
    )
    group_size: int | None = Field(
        None,
        strict=True,
        ge=1,
        le=ranges.MAX_MIN_GROUP_SIZE,
        description="Assumed group size for the CIs of AVG, VARIANCE and STDDEV (estimate, ci).",
    )
    max_joined_rows_per_unit: int | None = Field(
        None,
        strict=True,
        ge=1,
        description="Joins: keep at most this many joined rows per person for this query (lower "
        "sensitivity, some rows dropped); from 1 to the join's bound (the product of the tables' "
        "bounds, or the owner's max_joined_rows_per_unit), else 422 request.max_joined_rows_per_unit.",
    )


class ColumnAccuracyOut(BaseModel):
    """Noise of one released aggregate column."""

    column: str
    aggregate: str
    mechanisms: list[dict[str, Any]]
    ci95: list[float | None] = Field(description="95% confidence half-width per row (null: unknown).")
    note: str = ""
    rank_error95: float | None = Field(
        None, description="Quantiles: rows by which the released rank may miss the best candidate (95%)."
    )
    quantile_band95: list[list[float] | None] | None = Field(
        None,
        description="Quantiles, when COUNT(col) is released too: per row the quantile levels "
        "[q - e, q + e] the released value lies between (95%, relative to the best grid candidate).",
    )
    interval95: list[list[float] | None] | None = Field(
        None,
        description="Quantiles: per row the 95% interval [lower, upper] on the value (two more noisy "
        "runs, accounted in epsilon); ci95 is then the half-width around the value that covers it.",
    )


class BudgetRemaining(BaseModel):
    """Budget left under the policy after this query."""

    epsilon_remaining: float
    delta_remaining: float


class QueryAnswer(BaseModel):
    """A released noisy answer, its cost and accuracy, and the budget left."""

    model_config = _examples(
        {
            "query_id": "qry_51c0",
            "columns": ["educ", "n"],
            "rows": [[1, 12.4], [2, 30.9]],
            "epsilon_spent": 0.5,
            "delta_spent": 0.0,
            "cached": False,
            "accuracy": [
                {
                    "column": "n",
                    "aggregate": "count",
                    "mechanisms": [{"quantity": "count", "mechanism": "laplace", "scale": 2.0}],
                    "ci95": [5.99, 5.99],
                    "note": "",
                }
            ],
            "grouping": "public_keys",
            "suppressed_rows": 0,
            "budget": {"epsilon_remaining": 1.5, "delta_remaining": 0.0},
        }
    )

    query_id: str
    columns: list[str]
    rows: list[list[Any]]
    epsilon_spent: float = Field(description="Charged by this request (0 for a cached replay).")
    delta_spent: float
    cached: bool = Field(description="True when this is a replay of an identical earlier release.")
    accuracy: list[ColumnAccuracyOut]
    grouping: str | None = None
    suppressed_rows: int = 0
    min_group_size: int = Field(0, description="Groups with a noisy count below it are withheld.")
    ci_target: float | None = Field(None, description="The ci asked for, when epsilon was derived.")
    budget: BudgetRemaining


class AggregateEstimate(BaseModel):
    """Expected noise of one aggregate."""

    column: str
    aggregate: str
    mechanisms: list[dict[str, Any]]
    ci95: float | None = Field(description="Expected 95% confidence half-width (null: depends on data).")
    rank_error95: float | None = Field(None, description="Quantiles: rank error in rows (95%).")
    note: str = ""


class EstimateAccess(BaseModel):
    """Whether the caller's organisation has a usable policy, and whether the query fits it."""

    granted: bool
    policy_id: str | None = None
    fits_policy: bool | None = None
    rule: str | None = None
    message: str = ""


class PolicyNeeded(BaseModel):
    """What an access request (or policy) must grant for this query."""

    columns: list[str]
    aggregates: list[str]
    max_epsilon_per_query: float
    max_delta_per_query: float
    min_group_size: int


class BudgetAfter(BaseModel):
    """Budget that would remain after the query (null: no policy budget found)."""

    epsilon_remaining: float | None
    delta_remaining: float | None


class QueryEstimate(BaseModel):
    """Cost and expected accuracy of a query; nothing read, nothing spent."""

    model_config = _examples(
        {
            "dataset": "pums",
            "epsilon": 0.5,
            "delta": 0.0,
            "grouping": "public_keys",
            "groups": 16,
            "aggregates": [{"column": "n", "aggregate": "count", "mechanisms": [], "ci95": 5.99, "note": ""}],
            "budget_after": {"epsilon_remaining": 1.0, "delta_remaining": 0.0},
        }
    )

    dataset: str
    epsilon: float
    delta: float
    grouping: str
    groups: int | None
    aggregates: list[AggregateEstimate]
    group_size: int | None = None
    ci_target: float | None = None
    access: EstimateAccess
    policy_needed: PolicyNeeded
    budget_after: BudgetAfter


class PreviewOut(BaseModel):
    """Synthetic rows in a table's declared shape; nothing in them comes from the real data."""

    dataset: str
    table: str
    synthetic: bool = Field(description="Always true: these rows are generated, not real.")
    notice: str
    seed: int
    columns: list[str]
    rows: list[list[Any]]


class QueryOut(BaseModel):
    """A recorded query (history); never its result values."""

    id: str
    principal: str
    organisation: str | None
    dataset: str
    dataset_version: str | None
    policy_id: str | None
    sql: str
    fingerprint: str | None
    epsilon: float
    delta: float
    status: QueryStatus
    cached: bool
    replay_of: str | None
    rule: str | None
    error_code: str | None
    result_shape: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


# audit and usage


class AuditEventOut(BaseModel):
    """One audit event exactly as hashed into the chain (``via``: how a CLI actor was verified)."""

    model_config = _examples(
        {
            "seq": 42,
            "type": "query.answered",
            "time": "2025-01-02T10:00:00.000000Z",
            "actor": "alice",
            "organisation": "acme",
            "dataset": "pums",
            "payload": {"query_id": "qry_51c0", "epsilon": "0.5"},
            "prev_hash": "1f0e…",
            "hash": "9b7d…",
        }
    )

    seq: int
    type: str
    time: str
    actor: str
    via: str | None = None
    organisation: str | None
    dataset: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyProblemOut(BaseModel):
    """The first broken or missing link of the chain."""

    seq: int
    reason: str


class StateDivergenceOut(BaseModel):
    """A stored value the audit chain does not prove."""

    table: str
    row: str
    field: str
    chain: Any
    stored: Any


class VerifyReportOut(BaseModel):
    """Result of walking the audit chain, checking its checkpoints and proving the stored state."""

    ok: bool
    events: int
    head_seq: int
    head_hash: str
    first_error: VerifyProblemOut | None = None
    checkpoints: int = 0
    checkpoints_verified: int = 0
    state_checked: bool = False
    divergences: tuple[StateDivergenceOut, ...] = ()
    warnings: tuple[str, ...] = ()


class UsageRowOut(BaseModel):
    """Usage of one organisation on one dataset in the period."""

    organisation: str | None
    dataset: str
    queries_answered: int
    queries_rejected: int
    queries_cached: int
    queries_failed: int
    queries_in_flight: int
    epsilon_spent: float
    delta_spent: float


class UsageReportOut(BaseModel):
    """Metering rows per organisation and dataset."""

    since: datetime | None
    until: datetime | None
    rows: tuple[UsageRowOut, ...]
