"""Reading inputs and writing outputs: s3://, https://, file://, data: and plain paths.

Sizes are checked before bodies are read (S3 HEAD / Content-Length / stat / base64
length), so a huge input is refused without being downloaded. Every failure maps to the
exit-code contract: missing or forbidden -> StorageRefused (5), malformed -> InvalidInput
(3), network trouble -> Retryable (1) after botocore's own retries with backoff.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multitalk.runner.errors import InvalidInput, Retryable, StorageRefused
from multitalk.runner.request import StorageSpec, uri_scheme

HTTP_TIMEOUT_SECONDS = 30.0
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
# Configuration mistakes that no retry fixes (wrong region, bucket elsewhere).
# Paths no retry can open (too long, a file used as a folder, a symlink loop).
_UNUSABLE_PATH = (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP)
_MISCONFIGURED = {"AuthorizationHeaderMalformed", "PermanentRedirect", "301", "IllegalLocationConstraintException"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        parsed = urllib.parse.urlparse(uri)
        return cls(parsed.netloc, parsed.path.lstrip("/"))

    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def s3_client(spec: StorageSpec, read_timeout: float = 60, attempts: int = 4) -> Any:
    """A boto3 client for the request's endpoint; credentials come from the usual AWS environment."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": attempts, "mode": "standard"},  # transient errors: exponential backoff
        connect_timeout=5,
        read_timeout=read_timeout,  # the socket timeout of every send and receive
        s3={"addressing_style": "path"} if spec.endpoint else None,
    )
    return boto3.client("s3", endpoint_url=spec.endpoint, region_name=spec.region, config=config)


def s3_error(exc: Exception, field: str, uri: str) -> Exception:
    """Translate a boto3/botocore failure into the runner's error contract."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return StorageRefused(f"{uri} does not exist ({code})", field)
        if code in _DENIED:
            return StorageRefused(f"access to {uri} was denied ({code}); check the S3 credentials and policy", field)
        if code in _MISCONFIGURED:
            return StorageRefused(f"S3 refused {uri} ({code}); check storage.region and storage.endpoint", field)
        return Retryable(f"S3 error on {uri}: {code or exc}", field)
    if isinstance(exc, NoCredentialsError):
        return StorageRefused(f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", field)
    if isinstance(exc, EndpointConnectionError):
        return Retryable(f"S3 endpoint unreachable for {uri}: {exc}", field)
    return Retryable(f"S3 transfer of {uri} failed: {exc}", field)


def local_path(uri: str) -> Path:
    if uri_scheme(uri) == "file":
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
    return Path(uri)


def read_input(uri: str, field: str, max_bytes: int, storage: StorageSpec) -> bytes:
    """The bytes of one input, refusing anything larger than max_bytes before reading it."""
    scheme = uri_scheme(uri)
    if scheme == "data":
        return _read_data_uri(uri, field, max_bytes)
    if scheme == "s3":
        return _read_s3(uri, field, max_bytes, storage)
    if scheme == "https":
        return _read_https(uri, field, max_bytes)
    if scheme not in ("", "file"):
        raise InvalidInput(f"unsupported URI scheme '{scheme}:'; use s3://, https://, file://, data: or a path", field)
    path = local_path(uri)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InvalidInput(f"{path} is not a regular file", field)
    except FileNotFoundError as exc:
        raise StorageRefused(f"{path} does not exist", field) from exc
    except PermissionError as exc:
        raise StorageRefused(f"{path} is not readable (permission denied)", field) from exc
    except OSError as exc:
        if exc.errno in _UNUSABLE_PATH:
            raise InvalidInput(f"{str(path)[:200]} is not a usable path: {exc.strerror}", field) from exc
        raise  # an I/O error: may pass (exit 1)
    _check_size(size, max_bytes, field)
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise StorageRefused(f"{path} is not readable (permission denied)", field) from exc


def _check_size(size: int, max_bytes: int, field: str) -> None:
    if size > max_bytes:
        raise InvalidInput(f"is {size} bytes; at most {max_bytes} bytes are accepted", field)


def _read_data_uri(uri: str, field: str, max_bytes: int) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or not header.lower().endswith(";base64"):
        raise InvalidInput("data: URIs must be base64 encoded (data:<type>;base64,<payload>)", field)
    _check_size(len(payload) * 3 // 4, max_bytes, field)  # decoded size, before decoding
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"has invalid base64 payload: {exc}", field) from exc


def _read_s3(uri: str, field: str, max_bytes: int, storage: StorageSpec) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    loc = S3Location.parse(uri)
    client = s3_client(storage)
    try:
        head = client.head_object(Bucket=loc.bucket, Key=loc.key)
        _check_size(int(head["ContentLength"]), max_bytes, field)
        body = client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        data: bytes = body.read(max_bytes + 1)
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, field, uri) from exc
    _check_size(len(data), max_bytes, field)  # the object may have changed since HEAD
    return data


def _read_https(uri: str, field: str, max_bytes: int) -> bytes:
    request = urllib.request.Request(uri, headers={"User-Agent": "multitalk-runner"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit():
                _check_size(int(length), max_bytes, field)
            data: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404, 410):
            raise StorageRefused(f"{uri} answered HTTP {exc.code}", field) from exc
        raise Retryable(f"{uri} answered HTTP {exc.code}", field) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise StorageRefused(f"{uri}: TLS certificate not trusted ({exc.reason.verify_message})", field) from exc
        raise Retryable(f"could not fetch {uri}: {exc.reason}", field) from exc
    except (TimeoutError, OSError) as exc:
        raise Retryable(f"could not fetch {uri}: {exc}", field) from exc
    _check_size(len(data), max_bytes, field)
    return data


def ensure_writable_dir(path: Path, field: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageRefused(f"cannot create directory {path}: {exc.strerror}", field) from exc
    if not os.access(path, os.W_OK):
        raise StorageRefused(f"directory {path} is not writable", field)
