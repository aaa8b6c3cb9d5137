"""A small in-memory S3 client for the repository's unit tests: the calls the repository makes
(Get/Put/List, multipart, Range, If-None-Match) and a record of them. With ``keep=False`` it keeps
only the size of each object over 1 MiB, for tests that stream hundreds of MiB through the writer."""

from __future__ import annotations

import hashlib
import io

from botocore.exceptions import ClientError


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "fake",
    )


class FakeS3:
    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.objects: dict[str, bytes] = {}
        self.sizes: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_next: dict[str, list[Exception]] = {}  # operation -> errors to raise first
        self._uploads: dict[str, dict[int, bytes]] = {}

    def _maybe_fail(self, operation: str) -> None:
        errors = self.fail_next.get(operation)
        if errors:
            raise errors.pop(0)

    def _store(self, key: str, body) -> None:
        digest, size, kept = hashlib.sha256(), 0, []
        if isinstance(body, (bytes, bytearray)):
            body = io.BytesIO(body)
        while data := body.read(1024 * 1024):
            digest.update(data)
            size += len(data)
            if self.keep or size <= 2**20:
                kept.append(data)
        self.sizes[key] = size
        self.objects[key] = b"".join(kept) if self.keep or size <= 2**20 else b""

    def put_object(self, *, Bucket, Key, Body, IfNoneMatch=None, **extra):
        self.calls.append(("PutObject", Key))
        self._maybe_fail("PutObject")
        if IfNoneMatch == "*" and Key in self.sizes:
            raise client_error("PreconditionFailed", 412)
        self._store(Key, Body)
        return {"ETag": '"fake"'}

    def get_object(self, *, Bucket, Key, Range=None):
        self.calls.append(("GetObject", Key))
        if Key not in self.sizes:
            raise client_error("NoSuchKey", 404)
        data = self.objects[Key]
        if Range:
            start, _, end = Range.removeprefix("bytes=").partition("-")
            data = data[int(start) : int(end) + 1 if end else None]
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}

    def list_objects_v2(self, *, Bucket, Prefix, ContinuationToken=None):
        self.calls.append(("ListObjectsV2", Prefix))
        keys = sorted(key for key in self.sizes if key.startswith(Prefix))
        return {"Contents": [{"Key": key, "Size": self.sizes[key]} for key in keys]}

    def create_multipart_upload(self, *, Bucket, Key, **extra):
        self.calls.append(("CreateMultipartUpload", Key))
        upload_id = f"upload-{len(self._uploads)}"
        self._uploads[upload_id] = {}
        return {"UploadId": upload_id}

    def upload_part(self, *, Bucket, Key, UploadId, PartNumber, Body):
        self.calls.append(("UploadPart", Key))
        self._uploads[UploadId][PartNumber] = bytes(Body) if self.keep else b"x" * 0
        self.sizes.setdefault(f"part:{UploadId}", 0)
        self.sizes[f"part:{UploadId}"] += len(Body)
        return {"ETag": f'"part-{PartNumber}"'}

    def complete_multipart_upload(self, *, Bucket, Key, UploadId, MultipartUpload, **extra):
        self.calls.append(("CompleteMultipartUpload", Key))
        parts = self._uploads.pop(UploadId)
        size = self.sizes.pop(f"part:{UploadId}")
        self.objects[Key] = b"".join(parts[number] for number in sorted(parts))
        self.sizes[Key] = size
        return {}

    def abort_multipart_upload(self, *, Bucket, Key, UploadId):
        self.calls.append(("AbortMultipartUpload", Key))
        self._uploads.pop(UploadId, None)

    def count(self, operation: str, key_part: str = "") -> int:
        return sum(1 for name, key in self.calls if name == operation and key_part in key)
