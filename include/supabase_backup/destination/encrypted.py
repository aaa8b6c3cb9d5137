"""Upload and read back a client-side encrypted archive (``….zip.age``), see ``encryption``.

The order of checks, and why: the workers hold only public keys, so they cannot decrypt what they
uploaded. The plaintext zip is therefore verified against its manifest in staging first; it is then
encrypted (streamed, the ciphertext hashed as it is written), uploaded with the same conditional,
never-overwriting write as a plain archive, and read back whole from S3: its sha256 must be the
ciphertext's. age authenticates every 64 KiB chunk, so those exact bytes decrypt to exactly the
verified plaintext.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from supabase_backup.archive import encryption
from supabase_backup.archive.hashing import copy_hashing
from supabase_backup.archive.verify import verify_archive
from supabase_backup.destination import s3 as destination
from supabase_backup.errors import VerificationFailed
from supabase_backup.units import format_bytes, format_rate

log = logging.getLogger(__name__)


def encrypt_and_upload(
    client,
    plaintext_path,
    ciphertext_path,
    bucket: str,
    prefix: str,
    started_at: datetime,
    *,
    recipients: tuple[str, ...],
    sha256: str,
    size: int,
    server_side_encryption: str = "AES256",
    kms_key_id: str | None = None,
    run_id: str | None = None,
) -> dict:
    """Verify the plaintext archive, encrypt it to ``recipients``, upload the ciphertext."""
    with plaintext_path.open("rb") as plaintext:
        plaintext_check = verify_archive(plaintext, label=f"{plaintext_path} (before encryption)")
    ciphertext = encryption.encrypt_file(plaintext_path, ciphertext_path, recipients)
    location = destination.upload_archive(
        client,
        ciphertext_path,
        bucket,
        prefix,
        started_at,
        sha256=ciphertext["sha256"],
        size=ciphertext["bytes"],
        server_side_encryption=server_side_encryption,
        kms_key_id=kms_key_id,
        suffix=encryption.ENCRYPTED_SUFFIX,
        content_type="application/octet-stream",
        run_id=run_id,
        # S3 metadata is ASCII text: public keys only, comma-separated (never an identity).
        metadata={
            encryption.RECIPIENTS_METADATA_KEY: ",".join(recipients),
            encryption.PLAINTEXT_SHA256_METADATA_KEY: sha256,
        },
    )
    return {
        **location,
        "encrypted": True,
        "recipients": list(recipients),
        "ciphertext_bytes": ciphertext["bytes"],
        "ciphertext_sha256": ciphertext["sha256"],
        "plaintext_bytes": size,
        "plaintext_sha256": sha256,
        "plaintext_members_checked": plaintext_check["members_checked"],
        "format_version": plaintext_check["format_version"],
    }


def read_back_and_check(client, bucket: str, key: str, *, size: int, sha256: str) -> dict:
    """Read the whole ciphertext back from S3 (streamed) and compare its size and sha256."""
    label = f"s3://{bucket}/{key}"
    started = time.monotonic()
    reply = client.get_object(Bucket=bucket, Key=key)
    with reply["Body"] as body:
        read_size, read_sha256 = copy_hashing(body)
    if (read_size, read_sha256) != (size, sha256):
        raise VerificationFailed(
            label,
            f"the encrypted archive reads back as {read_size} bytes / "
            f"sha256 {read_sha256}, the upload was {size} / {sha256}",
        )
    seconds = max(time.monotonic() - started, 1e-6)
    log.info(
        "Read back %s: %s of ciphertext in %.1f s (%s), sha256 matches the encrypted upload",
        label,
        format_bytes(read_size),
        seconds,
        format_rate(read_size, seconds),
    )
    return {
        "bytes": size,
        "sha256": sha256,
        "bytes_fetched": read_size,
        "seconds": round(seconds, 3),
    }
