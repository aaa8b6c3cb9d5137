"""TODO"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from supabase_backup.errors import UnsafeObjectName

MANIFEST_MEMBER = "manifest.json"


# Format 2: an object whose member name is also the folder of another member is stored inside that
# folder under this name instead ("x" beside "x/y" becomes "x/%00"). Keys never hold NUL, so the
# name is unambiguous; strip it before percent-decoding (FORMAT.md).
FOLDER_FILE_SUFFIX = "/%00"


DATABASE_MEMBER = "db/backup.sql"


ROLES_MEMBER = "db/roles.sql"


AUTH_USERS_MEMBER = "auth/users.json"


STORAGE_FOLDER = "storage"


# A member name keeps every printable character of the key except '%' (so decoding is unambiguous)
# and '\\' (a separator on Windows). Those two, control and invisible formatting characters (which
# could disguise a name, e.g. U+202E) are percent-encoded as UTF-8. Zip stores names as UTF-8.
_ENCODED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _percent_encode(character: str) -> str:
    return "".join(f"%{byte:02X}" for byte in character.encode("utf-8", "surrogatepass"))


def _encode_segment(segment: str) -> str:
    encoded = "".join(
        _percent_encode(character)
        if character in "%\\" or unicodedata.category(character) in _ENCODED_CATEGORIES
        else character
        for character in segment
    )
    if encoded in (".", ".."):
        return encoded.replace(".", "%2E")
    return encoded


def encode_object_key(key: str) -> str:
    """Percent-encode a key into a relative path with no empty, '.' or '..' segment.

    A '/' is kept only between two non-empty segments; any other '/' (leading, trailing, doubled)
    is written as %2F, so ``unquote(encode_object_key(key)) == key`` for every key.
    """
    if key == "":
        raise UnsafeObjectName(key, "an empty name has no path")
    if "\x00" in key:
        raise UnsafeObjectName(key, "NUL is not allowed in a name")
    parts = [_encode_segment(segment) for segment in key.split("/")]
    encoded = parts[0]
    for part in parts[1:]:
        encoded += "/" + part if encoded and part else "%2F" + part
    return encoded


def key_of_member(member_path: str) -> tuple[str, str]:
    """(bucket id, key) of a ``storage/<bucket>/<…>`` member name: the inverse of the mapping."""

    _, bucket_folder, encoded = member_path.split("/", 2)
    if encoded.endswith(FOLDER_FILE_SUFFIX):
        encoded = encoded[: -len(FOLDER_FILE_SUFFIX)]
    return unquote(bucket_folder), unquote(encoded)


def object_member_name(bucket_id: str, key: str) -> str:
    bucket_folder = _encode_segment(bucket_id).replace("/", "%2F")
    return f"{STORAGE_FOLDER}/{bucket_folder}/{encode_object_key(key)}"


_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


def member_path_problem(name: str) -> str | None:
    """Why a member name could land outside the folder (or target) it is restored into, or None.

    Archives written by supabase-backup never have any of these (FORMAT.md, "Object member names").
    """
    if "\x00" in name:
        return "contains a NUL character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "starts with a drive letter"
    segments = name.split("/")
    if ".." in segments:
        return "has a '..' segment"
    if "." in segments:
        return "has a '.' segment"
    if "" in segments:
        return "has an empty segment (a leading, trailing or doubled '/')"
    return None
