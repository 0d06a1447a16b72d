"""What every command needs: the service home's settings, the acting name and the local admin's
principals, opened lazily so ``sandbox --help`` stays fast.

The command line acts as a local administrator with direct access to the state store; the audit
chain records the acting name (``--as NAME``, default the OS user).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from sandbox.principals import Principal, Role

if TYPE_CHECKING:
    from sandbox.catalog.models import DatasetRecord
    from sandbox.catalog.registry import Catalog
    from sandbox.control import ControlPlane
    from sandbox.settings import Settings


@dataclass
class CliState:
    """Options given before the command: ``--home`` and ``--as``."""

    home: Path | None
    actor: str

    def settings(self) -> Settings:
        """Settings from the environment and ``<home>/settings.env``."""
        from sandbox.settings import load_settings  # noqa: PLC0415

        return load_settings(self.home)

    def control(self, *, create: bool = False) -> ControlPlane:
        """The control plane on the home's state store (must be at the current schema)."""
        from sandbox.control import ControlPlane  # noqa: PLC0415

        return ControlPlane(self.settings(), create=create)

    def catalog(self) -> Catalog:
        """The home's dataset catalog."""
        from sandbox.catalog.registry import Catalog  # noqa: PLC0415

        return Catalog(self.settings().home_dir)

    def operator(self) -> Principal:
        """The local administrator as an operator (reads everything, registers datasets)."""
        return Principal(self.actor, frozenset({Role.OPERATOR}))

    def owner_of(self, record: DatasetRecord) -> Principal:
        """The local administrator acting for the dataset's owning body (decisions on access)."""
        return Principal(self.actor, frozenset({Role.OWNER}), record.metadata.owner)


def state(ctx: typer.Context) -> CliState:
    """The options of the top-level command."""
    found = ctx.find_object(CliState)
    if found is None:
        return CliState(home=None, actor=default_actor())
    return found


def default_actor() -> str:
    """The OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local-admin"
