"""Ed25519-signed checkpoints of the audit chain head, with an operator-held key.

A checkpoint signs the canonical JSON of ``{seq, hash, time, key_id}`` of the chain head. It is
recorded twice: as an ``audit.checkpoint`` event in the chain and as a line of an append-only
checkpoint log file outside the database. Verification checks each signature and that the chain
still has that hash at that seq, so rewriting history (even consistently) is caught.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sandbox.audit.chain import canonical_json, format_time
from sandbox.audit.models import AuditEventView, CheckpointView

PRIVATE_KEY_FILE = "audit-ed25519.pem"
PUBLIC_KEY_FILE = "audit-ed25519.pub.pem"


def generate_key(keys_dir: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Create the operator's signing key pair in ``keys_dir`` (private key mode 0600); both paths."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = keys_dir / PRIVATE_KEY_FILE, keys_dir / PUBLIC_KEY_FILE
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists; refusing to replace the audit signing key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(private_path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file ``path``."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM file ``path``."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short identifier of a public key: SHA-256 of its raw bytes, first 16 hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(seq: int, head_hash: str, time: str, signer: str) -> bytes:
    return canonical_json({"seq": seq, "hash": head_hash, "time": time, "key_id": signer})


def sign(private_key: Ed25519PrivateKey, seq: int, head_hash: str, now: datetime) -> CheckpointView:
    """A signed checkpoint of the head ``(seq, head_hash)``."""
    signer = key_id(private_key.public_key())
    time = format_time(now)
    signature = private_key.sign(_message(seq, head_hash, time, signer)).hex()
    return CheckpointView(seq=seq, hash=head_hash, time=time, key_id=signer, signature=signature)


def signature_valid(checkpoint: CheckpointView, public_key: Ed25519PublicKey) -> bool:
    """Whether ``checkpoint`` was signed by ``public_key``."""
    if checkpoint.key_id != key_id(public_key):
        return False
    message = _message(checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.key_id)
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def from_event(event: AuditEventView) -> CheckpointView:
    """The checkpoint an ``audit.checkpoint`` event records."""
    payload = event.payload
    return CheckpointView(
        seq=int(payload["seq"]),
        hash=str(payload["hash"]),
        time=str(payload["time"]),
        key_id=str(payload["key_id"]),
        signature=str(payload["signature"]),
        event_seq=event.seq,
    )


def event_payload(checkpoint: CheckpointView) -> dict[str, object]:
    """The payload of the ``audit.checkpoint`` event recording ``checkpoint``."""
    return checkpoint.model_dump(include={"seq", "hash", "time", "key_id", "signature"})


def append_to_log(path: Path, checkpoint: CheckpointView) -> None:
    """Append ``checkpoint`` to the checkpoint log file (JSON Lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(checkpoint.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_log(path: Path) -> list[CheckpointView]:
    """Every checkpoint in the log file (none if it does not exist)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [CheckpointView.model_validate(json.loads(line)) for line in lines if line.strip()]
