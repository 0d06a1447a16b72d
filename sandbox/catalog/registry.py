"""The catalog: registering datasets into service-owned DuckDB files, and looking them up.

Layout: ``<home>/datasets/<dataset>/{data.duckdb,dataset.json}``. A registration is built in
``<home>/datasets/.staging-<uuid>/`` and renamed into place, so a failure or a crash never leaves
a half-registered dataset.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sandbox.catalog.fingerprint import dataset_version
from sandbox.catalog.ingest import Progress, build_database
from sandbox.catalog.models import NAME_PATTERN, DatasetMetadata, DatasetRecord
from sandbox.catalog.sources import Source
from sandbox.catalog.validate import validate_document
from sandbox.errors import Conflict, MetadataInvalid, NotFound

DATABASE_FILE = "data.duckdb"
RECORD_FILE = "dataset.json"
_NAME = re.compile(NAME_PATTERN)


class Catalog:
    """Registered datasets under ``<home>/datasets/``."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser().resolve()
        self.datasets_dir = self.home / "datasets"
        self._records: dict[str, tuple[tuple[int, int, int, int], DatasetRecord, Path]] = {}

    def validate(self, metadata_path: Path | str, *, source_root: Path | str | None = None) -> list[str]:
        """Every problem of a metadata document against its rules and sources; empty when valid."""
        root = Path(source_root) if source_root is not None else None
        return validate_document(Path(metadata_path), root).problems

    def register(
        self,
        metadata_path: Path | str,
        *,
        source_root: Path | str | None = None,
        replace: bool = False,
        progress: Progress | None = None,
    ) -> DatasetRecord:
        """Validate, load and record a dataset; sources are relative to the YAML's folder or ``source_root``.

        Raises ``MetadataInvalid`` listing every problem, or ``Conflict`` if the dataset exists and
        ``replace`` is false.
        """
        root = Path(source_root) if source_root is not None else None
        validation = validate_document(Path(metadata_path), root)
        if validation.metadata is None or validation.problems:
            raise MetadataInvalid(
                f"the metadata has {len(validation.problems)} problem(s)",
                details={"problems": validation.problems},
            )
        metadata = validation.metadata
        if not replace and (self.datasets_dir / metadata.dataset).exists():
            raise _exists(metadata.dataset)
        self._ensure_dirs()
        self._remove_stale()
        staging = self.datasets_dir / f".staging-{uuid.uuid4().hex}"
        marker = _marker(staging)
        with _file_lock(marker, blocking=True):
            staging.mkdir(mode=0o700)
            try:
                record = self._build(staging, metadata, validation.sources, progress)
                self._install(staging, metadata.dataset, replace=replace)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
                marker.unlink(missing_ok=True)
        return record

    def get(self, name: str) -> DatasetRecord:
        """The registered dataset of that name; ``NotFound`` (``catalog.dataset_not_found``) otherwise.

        The parsed record is reused while its file is unchanged (same device, inode, mtime, size):
        a re-registration installs a new file, so it is read again. For a known dataset the check
        is one ``stat``; the record is read (and stamped from the open file) only when it differs.
        """
        cached = self._records.get(name)
        if cached is not None:
            stamp, record, path = cached
            try:
                found = os.stat(path)
            except FileNotFoundError:
                raise _not_found(name) from None
            if stamp == (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size):
                return record
        path = self._record_path(name)
        try:
            with path.open("rb") as handle:
                found = os.fstat(handle.fileno())
                stamp = (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)
                text = handle.read().decode("utf-8")
        except FileNotFoundError:
            raise _not_found(name) from None
        record = DatasetRecord.model_validate_json(text)
        self._records[name] = (stamp, record, path)
        return record

    def list(self) -> builtins.list[DatasetRecord]:
        """Every registered dataset, sorted by name."""
        if not self.datasets_dir.is_dir():
            return []
        names = sorted(
            entry.name
            for entry in self.datasets_dir.iterdir()
            if _NAME.match(entry.name) and (entry / RECORD_FILE).is_file()
        )
        return [self.get(name) for name in names]

    def database_path(self, name: str) -> Path:
        """The DuckDB file of a registered dataset."""
        record = self.get(name)
        return self.datasets_dir / record.name / record.database_file

    def _record_path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise _not_found(name)
        return self.datasets_dir / name / RECORD_FILE

    def _ensure_dirs(self) -> None:
        for folder in (self.home, self.datasets_dir):
            if not folder.exists():
                folder.mkdir(mode=0o700, parents=True)
        os.chmod(self.datasets_dir, 0o700)

    def _build(
        self,
        staging: Path,
        metadata: DatasetMetadata,
        sources: dict[str, Source],
        progress: Progress | None,
    ) -> DatasetRecord:
        """Load the database and write the record in the staging folder."""
        tables = build_database(
            staging / DATABASE_FILE, metadata, sources, temp_dir=staging / "tmp", progress=progress
        )
        shutil.rmtree(staging / "tmp", ignore_errors=True)
        record = DatasetRecord(
            metadata=metadata,
            tables=tables,
            version=dataset_version(metadata, tables),
            registration_id=f"reg_{secrets.token_hex(16)}",
            registered_at=datetime.now(UTC),
            database_file=DATABASE_FILE,
        )
        _write_private(staging / RECORD_FILE, record.model_dump_json(indent=2))
        os.chmod(staging / DATABASE_FILE, 0o600)
        return record

    def _remove_stale(self) -> None:
        """Delete what a crashed registration left: staging folders nobody holds, old versions."""
        with self._lock():
            for entry in self.datasets_dir.iterdir():
                if entry.name.startswith(".old-") and entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.name.startswith(".staging-") and entry.is_dir():
                    marker = _marker(entry)
                    with _file_lock(marker, blocking=False) as free:
                        if free:
                            shutil.rmtree(entry, ignore_errors=True)
                            marker.unlink(missing_ok=True)

    def _install(self, staging: Path, name: str, *, replace: bool) -> None:
        """Rename the staging folder into place (old version renamed away, then deleted)."""
        final = self.datasets_dir / name
        with self._lock():
            if not final.exists():
                os.rename(staging, final)
            elif not replace:
                raise _exists(name)
            else:
                old = self.datasets_dir / f".old-{uuid.uuid4().hex}"
                os.rename(final, old)
                try:
                    os.rename(staging, final)
                except OSError:
                    os.rename(old, final)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            _fsync_dir(self.datasets_dir)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """The catalog-wide lock around renames in the datasets folder."""
        with _file_lock(self.datasets_dir / ".lock", blocking=True):
            yield


def _marker(staging: Path) -> Path:
    """The lock file a registration holds while it builds in ``staging``."""
    return staging.with_name(staging.name + ".lock")


@contextmanager
def _file_lock(path: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path``; yields False if not blocking and it is held elsewhere."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _exists(name: str) -> Conflict:
    return Conflict(
        f"dataset {name!r} is already registered; register with replace to replace it",
        code="catalog.dataset_exists",
        details={"dataset": name},
    )


def _not_found(name: str) -> NotFound:
    return NotFound(f"dataset {name!r} is not registered", code="catalog.dataset_not_found")
