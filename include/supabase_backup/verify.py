"""Check an archive against its own manifest: every member present, no stranger, sizes and sha256.

Used by the DAG's ``verify_upload`` on the uploaded archive (read in place by ranged reads, see
``destination.read_back_and_verify``) and by ``supabase-backup verify``.
"""

from __future__ import annotations

import bisect
import io
import logging
import zipfile

from supabase_backup.archive import MANIFEST_MEMBER, member_digest
from supabase_backup.errors import VerificationFailed
from supabase_backup.manifest import ManifestInvalid, read_manifest
from supabase_backup.units import format_bytes

log = logging.getLogger(__name__)


def verify_archive(path, label: str | None = None) -> dict:
    """Verify a zip, given as a local path or a seekable binary file; raises VerificationFailed
    with the first problem found.

    Memory stays close to what zipfile itself holds (its central directory): members are checked
    one at a time as the manifest streams, and no set of names is built unless the counts disagree.
    """
    label = label or str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise VerificationFailed(label, f"not a readable zip file ({error})") from None
    with archive:
        if not _has_member(archive, MANIFEST_MEMBER):
            raise VerificationFailed(label, "manifest.json is missing")
        try:
            with archive.open(MANIFEST_MEMBER) as raw:
                header, members = read_manifest(io.TextIOWrapper(raw, encoding="utf-8"))
                checked = total = 0
                for member in members:
                    name = member["path"]
                    if name == MANIFEST_MEMBER or not _has_member(archive, name):
                        raise VerificationFailed(label, f"member {name!r} is listed but missing")
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
        except (ManifestInvalid, ValueError, KeyError) as error:
            raise VerificationFailed(label, f"manifest.json is not valid: {error}") from None
        # Every listed member exists; equal counts then mean nothing is listed twice and nothing
        # in the zip is unlisted. Only when they differ are the names gathered, to say which.
        if checked + 1 != len(archive.infolist()):
            raise VerificationFailed(label, _describe_count_mismatch(archive))
        if header["format_version"] >= 2:
            clash = first_file_folder_clash(archive.namelist())
            if clash:
                raise VerificationFailed(
                    label, f"member {clash[0]!r} is also the folder of member {clash[1]!r}: "
                           "unzip could not extract both")
    log.info("Verified %s: all %s members manifest.json lists (%s of member content) match their "
             "size and sha256", label, f"{checked:,}", format_bytes(total))
    return {
        "members_checked": checked,
        "content_bytes": total,
        "format_version": header["format_version"],
        "run_id": (header.get("run") or {}).get("run_id"),
    }


def first_file_folder_clash(names: list[str]) -> tuple[str, str] | None:
    """(name, other) where ``name`` is also a folder of ``other``, or None. Sorted, the names inside
    a folder ``N/`` are one block starting where ``N/`` would be."""
    ordered = sorted(names)
    for name in ordered:
        index = bisect.bisect_left(ordered, name + "/")
        if index < len(ordered) and ordered[index].startswith(name + "/"):
            return name, ordered[index]
    return None


def _has_member(archive: zipfile.ZipFile, name: str) -> bool:
    try:
        archive.getinfo(name)
    except KeyError:
        return False
    return True


def _describe_count_mismatch(archive: zipfile.ZipFile) -> str:
    with archive.open(MANIFEST_MEMBER) as raw:
        _, members = read_manifest(io.TextIOWrapper(raw, encoding="utf-8"))
        listed: set[str] = set()
        for member in members:
            if member["path"] in listed:
                return f"member {member['path']!r} is listed twice"
            listed.add(member["path"])
    seen: set[str] = set()
    for name in archive.namelist():
        if name in seen:
            return f"the zip holds member {name!r} twice"
        seen.add(name)
    strangers = sorted(seen - listed - {MANIFEST_MEMBER})
    return f"{len(strangers)} member(s) not in the manifest, e.g. {strangers[0]!r}"
