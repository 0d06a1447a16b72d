"""The one settings object. Every field can be set as ``SANDBOX_<NAME>`` in the environment."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings; defaults are the embedded demo defaults."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore")

    home: Path = Field(Path("~/.sandbox"), description="Service home: state DB, datasets, keys.")
    db_url: str | None = Field(
        None, description="SQLAlchemy URL of the state store; default sqlite:///<home>/state.db."
    )
    import_dir: Path | None = Field(
        None, description="Folder the HTTP API may register datasets from; default <home>/import."
    )

    # DuckDB lockdown
    duckdb_memory_limit: str = Field("2GB", description="memory_limit of analyst query connections.")
    duckdb_threads: int = Field(2, ge=1, description="threads of analyst query connections.")
    query_timeout_s: float = Field(30.0, gt=0, description="Wall-clock limit of one query's execution.")

    # DP defaults
    mechanism: Literal["laplace", "gaussian"] = Field(
        "laplace", description="Noise family: laplace (pure DP) or gaussian (zCDP, needs delta)."
    )
    max_epsilon_per_query: float = Field(10.0, gt=0, description="Hard ceiling on one query's epsilon.")
    max_public_key_cells: int = Field(100_000, ge=1, description="Largest GROUP BY cross product of keys.")
    quantile_candidates: int = Field(512, ge=8, description="Candidate grid size for quantiles.")

    # classification limits (important / 重要)
    important_max_epsilon_per_query: float = Field(
        1.0, gt=0, description="Per-query epsilon cap an owner may grant on an 'important' dataset."
    )
    important_min_group_size: int = Field(
        10, ge=1, description="Minimum group size an owner must set on an 'important' dataset."
    )

    # gateway limits
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest accepted request body.")
    max_sql_length: int = Field(8 * 1024, ge=64, description="Longest accepted SQL text.")
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per principal per minute.")
    rate_limit_redis_url: str | None = Field(
        None,
        description="Redis URL of the rate-limit buckets shared by every gateway replica "
        "(e.g. redis://redis:6379/0); default: each process keeps its own.",
    )

    # control-plane upkeep (run by the gateway)
    maintenance_interval_s: float = Field(
        60.0, gt=0, description="How often the gateway expires policies and closes abandoned queries."
    )
    abandoned_reservation_s: float = Field(
        600.0,
        gt=0,
        description="How long a replica may miss its heartbeat (sent every quarter of this) before "
        "its running queries count as abandoned: closed as failed, their charge kept.",
    )
    request_ttl_days: int = Field(
        30, ge=1, description="Days an access request may stay pending before it expires undecided."
    )

    # authentication
    auth_mode: Literal["tokens", "jupyterhub"] = Field("tokens", description="Authenticator to use.")
    hub_api_url: str | None = Field(None, description="JupyterHub API URL (jupyterhub mode).")
    hub_api_token: str | None = Field(None, description="The gateway's own hub service token.")
    auth_cache_seconds: float = Field(30.0, ge=0, description="How long a token lookup is cached.")
    token_ttl_days: int = Field(90, ge=1, description="Default lifetime of CLI-issued API tokens.")
    hub_service_name: str = Field(
        "sandbox-gateway",
        description="The gateway's JupyterHub service name; hub tokens need access:services!service=<name>.",
    )
    service_prefix: str | None = Field(
        None,
        description="URL path prefix the gateway also answers under (e.g. /services/sandbox-gateway/); "
        "default in jupyterhub mode: $JUPYTERHUB_SERVICE_PREFIX.",
    )

    # web console
    notification_webhooks: dict[str, str] = Field(
        default_factory=dict,
        description="Outgoing notification webhooks, organisation → URL (JSON object in the environment): "
        "each new console notification of that organisation is POSTed there as JSON.",
    )

    @cached_property
    def home_dir(self) -> Path:
        """``home`` with ``~`` expanded, made absolute."""
        return self.home.expanduser().resolve()

    @property
    def state_db_url(self) -> str:
        """The effective state-store URL."""
        return self.db_url or f"sqlite:///{self.home_dir / 'state.db'}"

    @property
    def datasets_dir(self) -> Path:
        """Where registered datasets (DuckDB files and metadata) live."""
        return self.home_dir / "datasets"

    @property
    def effective_import_dir(self) -> Path:
        """Where the HTTP API may register datasets from."""
        return (self.import_dir or self.home_dir / "import").expanduser().resolve()

    @property
    def keys_dir(self) -> Path:
        """Where operator keys (audit checkpoint signing) live."""
        return self.home_dir / "keys"


SETTINGS_FILE = "settings.env"
SECRETS_DIR_VARIABLE = "SANDBOX_SECRETS_DIR"


def load_settings(home: Path | str | None = None) -> Settings:
    """Settings from the environment, then ``<home>/settings.env``, then secret files.

    ``home`` (if given) overrides ``SANDBOX_HOME``; the file is the one ``sandbox init`` writes.
    When ``SANDBOX_SECRETS_DIR`` names a folder (Compose and Kubernetes mount secrets there), a file
    ``sandbox_<name>`` in it sets the setting ``<name>`` (``sandbox_db_url``, ``sandbox_hub_api_token``)
    unless the environment or the settings file does, so secrets need not sit in either.
    """
    secrets = os.environ.get(SECRETS_DIR_VARIABLE) or None
    if home is None:
        file = Settings().home_dir / SETTINGS_FILE
        return Settings(_env_file=file if file.is_file() else None, _secrets_dir=secrets)
    file = Path(home).expanduser() / SETTINGS_FILE
    return Settings(_env_file=file if file.is_file() else None, _secrets_dir=secrets, home=Path(home))
