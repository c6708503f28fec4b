"""Snapshot objects in S3-compatible storage: AWS S3, Cloudflare R2, MinIO, SeaweedFS.

One boto3 client per store, created up front; boto3 clients are thread-safe, so
activities running in worker threads share it. Every failure surfaces as an
`ObjectStoreError` (or `ObjectMissing`) whose message names the bucket and
endpoint and says what to fix, and never contains the secret key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from harness.object_store import ObjectMissing, ObjectStoreError, StoredObject, check_key

# what a message tells the operator to check, by the setting that controls it
_CREDENTIALS_HINT = "check FARLINE_S3_ACCESS_KEY_ID and FARLINE_S3_SECRET_ACCESS_KEY"
_ENDPOINT_HINT = "check FARLINE_S3_ENDPOINT and that the service is running"
_REGION_HINT = "check FARLINE_S3_REGION (the bucket lives in another region)"
_BUCKET_HINT = "create it or fix FARLINE_S3_BUCKET"

_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
_WRONG_REGION_CODES = frozenset({"AuthorizationHeaderMalformed", "PermanentRedirect", "301"})
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
        "AccountProblem",
    }
)


def _normalise_prefix(prefix: str) -> str:
    """`/snapshots/prod` -> `snapshots/prod/`; empty stays empty."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        check_key(stripped)
    except ObjectStoreError:
        raise ObjectStoreError(f"invalid S3 key prefix {prefix!r}") from None
    return stripped + "/"


def _public_url(endpoint_url: str) -> str:
    """The endpoint without any user:password part."""
    parts = urlsplit(endpoint_url)
    if "@" not in parts.netloc:
        return endpoint_url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def build_client(
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    """A boto3 S3 client tuned for S3-compatible services."""
    options: dict[str, Any] = {
        "region_name": region,
        "retries": {"mode": "standard", "max_attempts": 3},
        "connect_timeout": 10,
        "read_timeout": 60,
        "max_pool_connections": 32,
        # Path-style (`endpoint/bucket/key`): self-hosted services (MinIO, SeaweedFS)
        # have no per-bucket DNS names.
        "s3": {"addressing_style": "path"} if endpoint_url else {},
    }
    if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
        # botocore >= 1.36 adds CRC checksums (aws-chunked trailers) to every upload by
        # default, which several S3-compatible services reject; `put` sends Content-MD5.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    config = Config(**options)
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


class S3ObjectStore:
    """Objects under `s3://<bucket>/<prefix>` on any S3-compatible service."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ObjectStoreError(f"invalid S3 bucket name {bucket!r}: {_BUCKET_HINT}")
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.endpoint_url = endpoint_url
        self.region = region
        # kept only to scrub it from any message that might echo it
        self._secret = secret_access_key or ""
        self._bucket_seen = False
        self._client = (
            client
            if client is not None
            else build_client(endpoint_url, region, access_key_id, secret_access_key)
        )
        self._client.meta.events.register(
            "before-send.s3", _drop_expect_continue, unique_id="farline-drop-expect-continue"
        )

    # -- the ObjectStore protocol -------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        full = self._full_key(key)
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentMD5=digest)
        except (BotoCoreError, ClientError) as error:
            self._fail("put", key, error)

    def get(self, key: str) -> bytes:
        full = self._full_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            with response["Body"] as body:
                return body.read()
        except (BotoCoreError, ClientError) as error:
            if _code(error) in _MISSING_KEY_CODES:
                raise ObjectMissing(f"no object {key!r} in {self.describe()}") from None
            self._fail("get", key, error)

    def exists(self, key: str) -> bool:
        full = self._full_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except (BotoCoreError, ClientError) as error:
            if _code(error) in _MISSING_KEY_CODES:
                # HEAD has no body: a missing bucket also answers a bare 404
                self._check_bucket()
                return False
            self._fail("check", key, error)
        self._bucket_seen = True
        return True

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under `prefix`, sorted here: not every service lists in key order.

        SeaweedFS lists a directory at a time (`a/b` before `a-c`), so the whole
        listing is collected and sorted before the first object is yielded.
        """
        if "\0" in prefix:
            raise ObjectStoreError(f"invalid object key prefix {prefix!r}")
        paginator = self._client.get_paginator("list_objects_v2")
        strip = len(self.prefix)
        found: list[StoredObject] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                found.extend(
                    StoredObject(
                        key=entry["Key"][strip:],
                        size=int(entry["Size"]),
                        modified_at=entry["LastModified"].timestamp(),
                    )
                    for entry in page.get("Contents", ())
                )
        except (BotoCoreError, ClientError) as error:
            self._fail("list", prefix + "*", error)
        found.sort(key=lambda stored: stored.key)
        yield from found

    def delete(self, key: str) -> None:
        full = self._full_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except (BotoCoreError, ClientError) as error:
            if _code(error) in _MISSING_KEY_CODES:
                return
            self._fail("delete", key, error)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        if self.endpoint_url:
            return f"{where} at {_public_url(self.endpoint_url)}"
        return where

    # -- helpers ------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _check_bucket(self) -> None:
        """Once per store: raise the clear error if the bucket itself is missing."""
        if self._bucket_seen:
            return
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if _code(error) in ("404", "NoSuchBucket", "NotFound"):
                self._fail("check", "", error, bucket_missing=True)
            # 403 and friends: the key may lack ListBucket; the object is still missing
            return
        except BotoCoreError as error:
            self._fail("check", "", error)
        self._bucket_seen = True

    def _fail(self, operation: str, key: str, error: Exception, bucket_missing: bool = False) -> NoReturn:
        where = self.describe()
        code = _code(error)
        if bucket_missing or code in _MISSING_BUCKET_CODES:
            message = f"S3 bucket {self.bucket!r} does not exist at {self._endpoint()}: {_BUCKET_HINT}"
        elif code in _WRONG_REGION_CODES:
            message = f"S3 {operation} of {key!r} in {where} used the wrong region ({code}): {_REGION_HINT}"
        elif code in _DENIED_CODES:
            message = (
                f"S3 access denied ({code}) to {operation} {key!r} in {where}: {_CREDENTIALS_HINT}"
                " and that they may use this bucket"
            )
        elif isinstance(error, NoCredentialsError | PartialCredentialsError):
            message = f"no S3 credentials for {where}: {_CREDENTIALS_HINT}"
        elif isinstance(error, EndpointConnectionError | ConnectTimeoutError):
            message = f"cannot reach the S3 endpoint {self._endpoint()}: {_ENDPOINT_HINT}"
        elif isinstance(error, ReadTimeoutError | ConnectionClosedError):
            message = f"S3 {operation} of {key!r} in {where} timed out or was cut off: {_ENDPOINT_HINT}"
        elif isinstance(error, ClientError):
            detail = error.response.get("Error", {}).get("Message") or "no message"
            message = f"S3 {operation} of {key!r} in {where} failed: {code}: {detail}"
        else:
            message = f"S3 {operation} of {key!r} in {where} failed: {type(error).__name__}: {error}"
        raise ObjectStoreError(self._scrub(message)) from error

    def _endpoint(self) -> str:
        if self.endpoint_url:
            return _public_url(self.endpoint_url)
        return f"AWS S3 ({self.region or 'default region'})"

    def _scrub(self, message: str) -> str:
        return message.replace(self._secret, "<secret>") if self._secret else message


def _drop_expect_continue(request: Any, **_: Any) -> None:
    """Send request bodies straight away, without `Expect: 100-continue`.

    botocore asks for 100-continue on every PUT, even an empty one. A server that
    answers an empty PUT at once with its final status (Go's net/http does: SeaweedFS,
    MinIO) leaves botocore's pooled connection expecting a status line it already
    read, so the next PUT on that connection stalls for the whole read timeout and is
    then silently sent again (boto/botocore#3755). The header is not signed, so
    dropping it is safe; it only saved re-sending a body the server would refuse.
    """
    request.headers.pop("Expect", None)


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""
