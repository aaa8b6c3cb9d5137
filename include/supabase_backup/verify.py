"""Check an archive against its own manifest: every member present, no stranger, sizes and sha256.

Used by the DAG's ``verify_upload`` on the copy read back from S3, and by
``python -m supabase_backup verify``.
"""

from __future__ import annotations

import io
import logging
import zipfile

from supabase_backup.archive import MANIFEST_MEMBER, member_digest
from supabase_backup.errors import VerificationFailed
from supabase_backup.manifest import ManifestFormatError, read_manifest

log = logging.getLogger(__name__)


def verify_archive(path, label: str | None = None) -> dict:
    """Verify a local zip file; raises VerificationFailed with the first problem found."""
    label = label or str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise VerificationFailed(label, f"not a readable zip file ({error})") from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST_MEMBER not in names:
            raise VerificationFailed(label, "manifest.json is missing")
        with archive.open(MANIFEST_MEMBER) as raw:
            try:
                header, members = read_manifest(io.TextIOWrapper(raw, encoding="utf-8"))
                checked = total = 0
                expected_names = {MANIFEST_MEMBER}
                for member in members:
                    name = member["path"]
                    if name not in names:
                        raise VerificationFailed(label, f"member {name!r} is listed but missing")
                    if name in expected_names:
                        raise VerificationFailed(label, f"member {name!r} is listed twice")
                    expected_names.add(name)
                    size, sha256 = member_digest(archive, name)
                    if size != member["size"] or sha256 != member["sha256"]:
                        raise VerificationFailed(
                            label,
                            f"member {name!r} has {size} bytes / sha256 {sha256}, manifest says "
                            f"{member['size']} / {member['sha256']}",
                        )
                    checked += 1
                    total += size
            except zipfile.BadZipFile as error:  # a CRC mismatch or a damaged member
                raise VerificationFailed(label, f"damaged member: {error}") from None
            except (ManifestFormatError, ValueError, KeyError) as error:
                raise VerificationFailed(label, f"manifest.json is not valid: {error}") from None
        strangers = names - expected_names
        if strangers:
            raise VerificationFailed(
                label, f"{len(strangers)} member(s) not in the manifest, e.g. {sorted(strangers)[0]!r}"
            )
    log.info("Verified %s: %d members, %.1f MiB, all sha256 match", label, checked, total / 2**20)
    return {
        "members_checked": checked,
        "content_bytes": total,
        "format_version": header["format_version"],
        "run_id": (header.get("run") or {}).get("run_id"),
    }
