"""Publishing the video, its poster PNG and its JSON manifest (local or S3), atomically.

The video is published last, so its presence at the final key means the set is complete.
Locally the encoder writes a hidden temp file in the target directory and it is linked
(no overwrite) or renamed (overwrite) into place; on S3 a multipart upload is completed
only once every part is in, with `If-None-Match: *` when overwrite is off, so a
concurrent writer cannot be clobbered either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multitalk.runner.errors import StorageRefused
from multitalk.runner.request import OutputSpec, StorageSpec, uri_scheme
from multitalk.runner.storage import S3Location, ensure_writable_dir, local_path, s3_client, s3_error

FIELD = "output.uri"
PART_BYTES = 8 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024  # ours are a few KB: anything larger is not one


@dataclass(frozen=True)
class OutputSet:
    video: str
    poster: str
    manifest: str

    @classmethod
    def for_video(cls, uri: str) -> OutputSet:
        stem = uri[: -len(".mp4")]
        return cls(video=uri, poster=stem + ".png", manifest=stem + ".json")


def poster_frame(frames: int) -> int:
    """The frame the poster shows: the middle one."""
    return frames // 2


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Publisher:
    """Checks the destination before rendering, then publishes the finished files."""

    def __init__(self, output: OutputSpec, storage: StorageSpec) -> None:
        self.output = output
        self.storage = storage
        self.targets = OutputSet.for_video(output.uri)
        self.is_s3 = uri_scheme(output.uri) == "s3"
        self._client: Any = s3_client(storage) if self.is_s3 else None

    # -- before rendering -------------------------------------------------------------
    def preflight(self) -> None:
        """Refuse early (before any work) when the video exists and overwrite is off."""
        if self.is_s3:
            if self.output.overwrite:
                self._s3_check_bucket(S3Location.parse(self.targets.video))
            elif self._s3_exists(self.targets.video):
                raise self._exists_error()
            return
        path = local_path(self.targets.video)
        ensure_writable_dir(path.parent, FIELD)
        if path.is_dir():
            raise StorageRefused(f"{path} is a directory", FIELD)
        if path.exists() and not self.output.overwrite:
            raise self._exists_error()

    def _exists_error(self) -> StorageRefused:
        return StorageRefused(
            f"{self.targets.video} already exists and output.overwrite is false; "
            "choose another output.uri or set output.overwrite: true",
            FIELD,
        )

    def scratch_video(self) -> Path:
        """Where the encoder writes: next to the target locally (same filesystem), else a temp dir."""
        if self.is_s3:
            fd, name = tempfile.mkstemp(prefix="multitalk-", suffix=".mp4")
        else:
            target = local_path(self.targets.video)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        os.chmod(name, 0o644)  # mkstemp's 0600 would hide the video from other readers
        return Path(name)

    def finished(self, request_hash: str) -> dict[str, Any] | None:
        """The manifest of a complete earlier render of this very request at the output, if there is
        one: a retry after its publish (a pod preempted or deleted between publishing and exiting)
        reports that render instead of refusing an output that exists, and renders nothing twice.
        The video is published last, so a video whose size is the manifest's completes the set."""
        from multitalk.runner.request import RenderRequest, canonical_hash

        if self.output.overwrite:
            return None
        try:
            found = self._s3_finished() if self.is_s3 else self._local_finished()
        except (OSError, ValueError, StorageRefused):
            return None  # unreadable: preflight decides as before
        if found is None:
            return None
        manifest, size = found
        try:
            same = canonical_hash(RenderRequest.model_validate(manifest.get("request"))) == request_hash
            complete = int(manifest["output"]["sizeBytes"]) == size
        except (ValueError, KeyError, TypeError):
            return None
        return manifest if same and complete else None

    def _local_finished(self) -> tuple[dict[str, Any], int] | None:
        video, manifest = local_path(self.targets.video), local_path(self.targets.manifest)
        if not (video.is_file() and manifest.is_file()) or manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        return json.loads(manifest.read_bytes()), video.stat().st_size

    def _s3_finished(self) -> tuple[dict[str, Any], int] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        video, manifest = S3Location.parse(self.targets.video), S3Location.parse(self.targets.manifest)
        try:
            size = int(self._client.head_object(Bucket=video.bucket, Key=video.key)["ContentLength"])
            body = self._client.get_object(Bucket=manifest.bucket, Key=manifest.key)["Body"].read(
                MAX_MANIFEST_BYTES + 1
            )
        except (ClientError, BotoCoreError):
            return None
        return (json.loads(body), size) if len(body) <= MAX_MANIFEST_BYTES else None

    # -- after rendering --------------------------------------------------------------
    def publish(self, video: Path, poster_png: bytes, manifest_json: bytes) -> None:
        """Poster and manifest first, the video last (its presence means the set is complete)."""
        if self.is_s3:
            self._s3_put_small(self.targets.poster, poster_png, "image/png")
            self._s3_put_small(self.targets.manifest, manifest_json, "application/json")
            self._s3_multipart(self.targets.video, video, "video/mp4")
            return
        self._local_put_small(self.targets.poster, poster_png)
        self._local_put_small(self.targets.manifest, manifest_json)
        target = local_path(self.targets.video)
        if self.output.overwrite:
            os.replace(video, target)
        else:
            try:
                os.link(video, target)  # atomic create-if-absent
            except FileExistsError as exc:
                raise self._exists_error() from exc
            finally:
                with contextlib.suppress(FileNotFoundError):
                    video.unlink()

    def _local_put_small(self, uri: str, data: bytes) -> None:
        target = local_path(uri)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(name, 0o644)
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    def _s3_exists(self, uri: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        loc = S3Location.parse(uri)
        try:
            self._client.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                self._s3_check_bucket(loc)
                return False
            raise s3_error(exc, FIELD, uri) from exc
        except BotoCoreError as exc:
            raise s3_error(exc, FIELD, uri) from exc

    def _s3_check_bucket(self, loc: S3Location) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=loc.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StorageRefused(f"bucket {loc.bucket} does not exist", FIELD) from exc
            # A writer may lack s3:ListBucket; the upload itself will tell.
        except BotoCoreError as exc:
            raise s3_error(exc, FIELD, f"s3://{loc.bucket}") from exc

    def _s3_put_small(self, uri: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        loc = S3Location.parse(uri)
        try:
            self._client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, FIELD, uri) from exc

    def _s3_multipart(self, uri: str, path: Path, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        loc = S3Location.parse(uri)
        try:
            upload_id = self._client.create_multipart_upload(Bucket=loc.bucket, Key=loc.key, ContentType=content_type)[
                "UploadId"
            ]
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, FIELD, uri) from exc
        try:
            parts = []
            with path.open("rb") as fh:
                for number, chunk in enumerate(iter(lambda: fh.read(PART_BYTES), b""), start=1):
                    etag = self._client.upload_part(
                        Bucket=loc.bucket, Key=loc.key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )["ETag"]
                    parts.append({"PartNumber": number, "ETag": etag})
            extra = {} if self.output.overwrite else {"IfNoneMatch": "*"}
            self._client.complete_multipart_upload(
                Bucket=loc.bucket, Key=loc.key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id)
            if isinstance(exc, ClientError):
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise self._exists_error() from exc
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise s3_error(exc, FIELD, uri) from exc
            raise
