"""What one gateway process holds open: catalog, engine, control plane, pipeline, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.api.limits import Limiter, make_rate_limiter
from sandbox.api.metrics import GatewayMetrics
from sandbox.auth.base import Authenticator, make_authenticator
from sandbox.catalog.models import DatasetRecord
from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane
from sandbox.errors import NotFound
from sandbox.pipeline import QueryPipeline
from sandbox.principals import Principal
from sandbox.query.engine import Engine
from sandbox.query.warmup import warm_up
from sandbox.settings import Settings


@dataclass
class Services:
    """The gateway's long-lived parts, opened once in the app's lifespan."""

    settings: Settings
    catalog: Catalog
    engine: Engine
    control: ControlPlane
    pipeline: QueryPipeline
    authenticator: Authenticator
    rate_limiter: Limiter
    metrics: GatewayMetrics

    @classmethod
    def open(cls, settings: Settings, metrics: GatewayMetrics) -> Services:
        """Open the state store (which must be at the current schema), the catalog and the engine."""
        control = ControlPlane(settings)
        catalog = Catalog(settings.home_dir)
        engine = Engine(catalog, settings)
        warm_up(engine)
        return cls(
            settings=settings,
            catalog=catalog,
            engine=engine,
            control=control,
            pipeline=QueryPipeline(catalog, engine, control, max_sql_length=settings.max_sql_length),
            authenticator=make_authenticator(settings, control),
            rate_limiter=make_rate_limiter(settings),
            metrics=metrics,
        )

    def close(self) -> None:
        """Close the authenticator, the engine's databases and the store's connections."""
        self.authenticator.close()
        self.engine.close()
        self.control.close()

    def visible_dataset(self, principal: Principal, name: str) -> DatasetRecord:
        """A dataset the principal may see; ``NotFound`` for unknown and hidden ones alike."""
        record = self.catalog.get(name)
        if not can_see(principal, record):
            raise NotFound(f"dataset {name!r} is not registered", code="catalog.dataset_not_found")
        return record


def can_see(principal: Principal, record: DatasetRecord) -> bool:
    """Whether the principal may see the dataset (``DatasetRecord.visible_to``: core datasets are
    visible to operators and their owners only)."""
    return record.visible_to(principal)
