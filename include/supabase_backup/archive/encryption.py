"""Optional client-side encryption of the archive to one or more age recipients.

Why ``pyrage`` (Rust bindings to the ``age`` crate, pinned in requirements.txt): it is the age
reference format implemented by a maintained, audited-upstream library, it ships manylinux wheels
(no Rust toolchain, no ``age`` binary on every worker), and its ``encrypt_io``/``decrypt_io`` stream
between file objects in age's 64 KiB chunks, so an archive of any size is never whole in memory
(measured: 50 MB through ``encrypt_io`` with a 28 MB peak RSS). Pure-Python ``age`` ports are less
used and slower.

How a run stays verified with only public keys (the workers never hold an identity, so they cannot
decrypt): the plaintext zip is verified against its manifest in staging *before* it is encrypted,
the ciphertext's sha256 is computed while it is written, and after the upload the whole object is
read back from S3 and its sha256 must equal that. age authenticates every chunk, so a ciphertext
whose bytes are exactly the ones written decrypts to exactly the verified plaintext. A person with
an identity can check the plaintext again: ``supabase-backup verify --identity FILE``.

Recipients are the Airflow Variable ``supabase_backup_age_recipients``: comma-separated public keys
(``age1…``, or ``ssh-ed25519 …``/``ssh-rsa …`` lines).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import IO

from supabase_backup.archive.hashing import HashingWriter
from supabase_backup.config import age_recipient
from supabase_backup.errors import (
    ConfigurationError,
    DecryptionFailed,
    IdentityMismatch,
)

log = logging.getLogger(__name__)

ENCRYPTED_SUFFIX = ".age"
RECIPIENTS_METADATA_KEY = "age-recipients"  # x-amz-meta-age-recipients
PLAINTEXT_SHA256_METADATA_KEY = "plaintext-sha256"


def encrypt_file(source: Path, target: Path, recipients: tuple[str, ...]) -> dict:
    """Encrypt ``source`` to ``target``, streamed; returns the ciphertext's size and sha256."""
    import pyrage

    with source.open("rb") as plaintext, target.open("wb") as sink:
        writer = HashingWriter(sink)
        pyrage.encrypt_io(plaintext, writer, [age_recipient(item) for item in recipients])
        writer.flush()
    log.info(
        "Encrypted the archive to %d age recipient(s): %d bytes of ciphertext",
        len(recipients),
        writer.size,
    )
    return {"bytes": writer.size, "sha256": writer.sha256}


def load_identities(identity_file: str) -> list:
    """The identities in an age identity file (``AGE-SECRET-KEY-…`` lines; ``#`` comments)."""
    import pyrage

    path = Path(identity_file)
    if not path.is_file():
        raise ConfigurationError(f"identity file {identity_file} does not exist")
    identities = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                identities.append(pyrage.x25519.Identity.from_str(line))
            except Exception:  # noqa: BLE001
                raise ConfigurationError(
                    f"identity file {identity_file} holds a line that is not an age identity "
                    "(AGE-SECRET-KEY-…)"
                ) from None
    if not identities:
        raise ConfigurationError(f"identity file {identity_file} holds no AGE-SECRET-KEY- line")
    return identities


def decrypt_stream(
    source: IO[bytes],
    target: IO[bytes],
    identity_file: str,
    *,
    label: str,
    recipients: str = "its recipients",
) -> None:
    """Decrypt ``source`` into ``target``, streamed. A wrong identity is IdentityMismatch; altered
    or truncated ciphertext is DecryptionFailed."""
    import pyrage

    identities = load_identities(identity_file)
    try:
        pyrage.decrypt_io(source, target, identities)
    except pyrage.DecryptError as error:
        if "no matching keys" in str(error).lower():
            raise IdentityMismatch(label, recipients, identity_file) from None
        raise DecryptionFailed(label, str(error)) from None
    except OSError as error:
        raise DecryptionFailed(label, str(error) or type(error).__name__) from None


def is_encrypted_name(name: str) -> bool:
    return name.endswith(".zip" + ENCRYPTED_SUFFIX)


def decrypted_copy(
    source: IO[bytes],
    folder: str,
    identity_file: str,
    *,
    label: str,
    recipients: str = "its recipients",
) -> Path:
    """Decrypt into a private temporary file in ``folder`` (zip needs to seek; disk, not memory,
    holds the plaintext). The caller removes it."""

    descriptor, name = tempfile.mkstemp(
        prefix="supabase-backup-decrypted-", suffix=".zip", dir=folder
    )
    try:
        with os.fdopen(descriptor, "wb") as target:
            decrypt_stream(source, target, identity_file, label=label, recipients=recipients)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def recipients_label(metadata: dict | None) -> str:
    recipients = (metadata or {}).get(RECIPIENTS_METADATA_KEY)
    return f"recipient(s) {recipients}" if recipients else "its recipients"


def refuse_without_identity(location: str, identity_file: str | None) -> None:
    if is_encrypted_name(location) and not identity_file:
        raise ConfigurationError(
            f"{location} is encrypted (age): pass --identity FILE with the AGE-SECRET-KEY-… of "
            "one of its recipients"
        )
