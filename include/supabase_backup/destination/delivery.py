"""How a run's archive reaches S3: built, uploaded and verified by one of three deliveries.

- ``LocalDelivery``: the zip is written to staging, uploaded as a file (multipart when large),
  then read back in place and checked member by member against the manifest.
- ``StreamedDelivery`` (``RunPlan.stream_archive``, the default): staging keeps only the manifest;
  the upload writes the zip straight into a multipart upload, and the read-back is the same.
- ``EncryptedDelivery`` (``RunPlan.age_recipients``): the zip is written to staging (encryption
  needs the local file), verified there, encrypted and uploaded; the read-back checks the
  ciphertext's size and sha256, since the workers hold no identity (see ``encrypted``).

``delivery_for(plan)`` makes the choice, once, from the run plan; the build, upload and verify
tasks each call one method of what it returns. Their results are the small dicts that travel
between the tasks (the archive summary, then the location).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from supabase_backup.archive import build
from supabase_backup.archive.encryption import ENCRYPTED_SUFFIX
from supabase_backup.config import RunPlan
from supabase_backup.destination import encrypted as encrypted_archive
from supabase_backup.destination import s3 as destination
from supabase_backup.staging import StagingArea

# Bytes a zip adds per member beyond its data (local header, central directory entry): the
# streamed upload's estimate of the archive's size, which sizes its multipart parts.
ZIP_BYTES_PER_MEMBER = 200


class Delivery(Protocol):
    """Build, upload and verify one run's archive."""

    @property
    def recipients(self) -> list[str] | None:
        """The age recipients the archive is encrypted to; None when it is not."""

    def build(
        self,
        staging: StagingArea,
        header: dict,
        *,
        database: dict | None,
        auth: dict | None,
        storage: dict | None,
        bucket_ids: list[str],
        created_at: datetime,
    ) -> dict:
        """What the upload needs of the archive (its summary), from what the exports staged."""

    def upload(self, client, staging: StagingArea, archive: dict) -> dict:
        """The archive into S3 under a key never taken before; returns its location."""

    def verify(self, client, archive: dict, location: dict) -> dict:
        """Read the uploaded archive back; raises VerificationFailed unless it is what was sent."""


class LocalDelivery:
    """The zip in staging, uploaded as a file."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    @property
    def recipients(self) -> list[str] | None:
        return None

    def build(self, staging, header, *, database, auth, storage, bucket_ids, created_at) -> dict:
        return build.build_archive(
            staging,
            header,
            database=database,
            auth=auth,
            bucket_ids=bucket_ids,
            created_at=created_at,
        )

    def upload(self, client, staging, archive) -> dict:
        return destination.upload_archive(
            client,
            staging.archive,
            self.plan.settings.s3_bucket,
            self.plan.settings.s3_prefix,
            _started_at(self.plan),
            sha256=archive["sha256"],
            size=archive["bytes"],
            server_side_encryption=self.plan.settings.server_side_encryption,
            kms_key_id=self.plan.settings.sse_kms_key_id,
            run_id=self.plan.run_id,  # the archive's own metadata names its run
        )

    def _written(self, archive: dict, location: dict) -> dict:
        """Who knows the uploaded bytes' size and sha256: here, the build."""
        return archive

    def verify(self, client, archive, location) -> dict:
        written = self._written(archive, location)
        result = destination.read_back_and_verify(
            client,
            location["s3_bucket"],
            location["s3_key"],
            size=written["bytes"],
            sha256=written["sha256"],
        )
        return {**location, **result, "s3_url": _s3_url(location)}


class StreamedDelivery(LocalDelivery):
    """Only the manifest in staging; the zip written straight into a multipart upload."""

    def build(self, staging, header, *, database, auth, storage, bucket_ids, created_at) -> dict:
        members = {
            "database": _member_source(database),
            "auth": _member_source(auth),
            "bucket_ids": bucket_ids,
        }
        result = build.write_manifest_file(
            staging,
            header,
            database=members["database"],
            auth=members["auth"],
            bucket_ids=bucket_ids,
        )
        expected = (
            sum((part or {}).get("bytes") or 0 for part in (database, auth))
            + ((storage or {}).get("bytes") or 0)
            + result["manifest_bytes"]
            + ZIP_BYTES_PER_MEMBER * (result["manifest_members"] + 1)
        )
        result.update(
            streamed=True,
            created_at=created_at.isoformat(),
            members_source=members,
            expected_bytes=expected,
        )
        return result

    def upload(self, client, staging, archive) -> dict:
        members = archive["members_source"]

        def write(output) -> dict:
            return build.write_zip(
                output,
                staging,
                archive,
                database=members["database"],
                auth=members["auth"],
                bucket_ids=members["bucket_ids"],
                created_at=datetime.fromisoformat(archive["created_at"]),
            )

        return destination.stream_archive(
            client,
            write,
            self.plan.settings.s3_bucket,
            self.plan.settings.s3_prefix,
            _started_at(self.plan),
            manifest_sha256=archive["manifest_sha256"],
            expected_bytes=archive.get("expected_bytes") or 0,
            server_side_encryption=self.plan.settings.server_side_encryption,
            kms_key_id=self.plan.settings.sse_kms_key_id,
            run_id=self.plan.run_id,  # the archive's own metadata names its run
        )

    def _written(self, archive: dict, location: dict) -> dict:
        return location  # the zip's bytes were first counted and hashed as they were uploaded


class EncryptedDelivery(LocalDelivery):
    """The zip in staging, verified there, encrypted to the plan's age recipients, uploaded."""

    @property
    def recipients(self) -> list[str] | None:
        return list(self.plan.settings.age_recipients or ())

    def upload(self, client, staging, archive) -> dict:
        plaintext: Path = staging.archive
        return encrypted_archive.encrypt_and_upload(
            client,
            plaintext,
            plaintext.with_name(plaintext.name + ENCRYPTED_SUFFIX),
            self.plan.settings.s3_bucket,
            self.plan.settings.s3_prefix,
            _started_at(self.plan),
            recipients=tuple(self.plan.settings.age_recipients or ()),
            sha256=archive["sha256"],
            size=archive["bytes"],
            server_side_encryption=self.plan.settings.server_side_encryption,
            kms_key_id=self.plan.settings.sse_kms_key_id,
            run_id=self.plan.run_id,  # the archive's own metadata names its run
        )

    def verify(self, client, archive, location) -> dict:
        result = encrypted_archive.read_back_and_check(
            client,
            location["s3_bucket"],
            location["s3_key"],
            size=location["ciphertext_bytes"],
            sha256=location["ciphertext_sha256"],
        )
        # The plaintext's members were checked in staging, before encryption.
        result.update(
            members_checked=location["plaintext_members_checked"],
            format_version=location["format_version"],
        )
        return {**location, **result, "s3_url": _s3_url(location)}


def delivery_for(plan: RunPlan) -> Delivery:
    """The run's delivery: encrypted when the plan has age recipients (encryption needs the local
    zip, so it wins over streaming), else streamed or local as the plan says."""
    if plan.settings.age_recipients:
        return EncryptedDelivery(plan)
    if plan.stream_archive:
        return StreamedDelivery(plan)
    return LocalDelivery(plan)


def _started_at(plan: RunPlan) -> datetime:
    return datetime.fromisoformat(plan.started_at).astimezone(UTC)


def _s3_url(location: dict) -> str:
    return f"s3://{location['s3_bucket']}/{location['s3_key']}"


def _member_source(summary: dict | None) -> dict | None:
    """What plan_members needs of an export's summary."""
    if not summary:
        return None
    return {
        name: summary.get(name)
        for name in ("included", "bytes", "sha256", "roles")
        if name in summary
    }
