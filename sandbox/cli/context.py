"""What every command needs: the service home's settings and the verified acting principal,
opened lazily so ``sandbox --help`` stays fast.

The command line acts with direct access to the state store, so the operating-system user
running it is who acts, and every audit event records it (``via``: ``os:<user>``). Without
``--as`` that OS user acts as the local administrator. With ``--as NAME``, NAME must be a
registered, enabled user holding the role the command needs (an owner of the dataset's owning
body for decisions on access, an operator for administration): it is recorded as the actor, the
OS user as ``via``; anything else is refused and recorded as ``auth.failed``/``auth.refused``.
"""

from __future__ import annotations

import getpass
import os
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
    """Options given before the command: ``--home`` and ``--as``; and the OS user running it."""

    home: Path | None
    as_user: str | None
    os_user: str

    @property
    def via(self) -> str:
        """How the CLI's actor was verified: the operating-system account running it."""
        return f"os:{self.os_user}"

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

    def reader(self) -> Principal:
        """The local administrator reading (lists and look-ups record nothing)."""
        return Principal(self.os_user, frozenset({Role.OPERATOR}), via=self.via)

    def operator(self, control: ControlPlane) -> Principal:
        """The verified operator acting: ``--as`` user holding the operator role, or the OS user."""
        if self.as_user is None:
            return self.reader()
        return control.acting_user(self.as_user, self.via, role=Role.OPERATOR)

    def owner_of(self, control: ControlPlane, record: DatasetRecord) -> Principal:
        """The verified owner deciding on ``record``: ``--as`` user who is an owner of its owning
        body, or the OS user acting as the local administrator for that body."""
        owner = record.metadata.owner
        if self.as_user is None:
            return Principal(self.os_user, frozenset({Role.OWNER}), owner, via=self.via)
        return control.acting_user(self.as_user, self.via, role=Role.OWNER, organisation=owner)

    def registrar(self, control: ControlPlane) -> Principal:
        """Who registers datasets: the ``--as`` user (an operator or owner) or the local administrator."""
        if self.as_user is None:
            return self.reader()
        return control.acting_user(self.as_user, self.via, role=(Role.OPERATOR, Role.OWNER))

    def analyst(self, control: ControlPlane) -> Principal:
        """The ``--as`` user acting as an analyst of its organisation (required)."""
        if self.as_user is None:
            from sandbox.errors import InvalidRequest  # noqa: PLC0415

            raise InvalidRequest("name the analyst with --as NAME", code="cli.as_required")
        return control.acting_user(self.as_user, self.via, role=Role.ANALYST)


def state(ctx: typer.Context) -> CliState:
    """The options of the top-level command."""
    found = ctx.find_object(CliState)
    if found is None:
        return CliState(home=None, as_user=None, os_user=os_user())
    return found


def os_user() -> str:
    """The OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
