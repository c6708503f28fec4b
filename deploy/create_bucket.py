"""Create the bucket of Farline's S3 stores if it is missing, then exit.

The one-shot `s3-bucket` job of docker-compose.yml runs this in the worker's image, with the
worker's S3 settings (FARLINE_S3_BUCKET, FARLINE_S3_ENDPOINT, FARLINE_S3_REGION,
FARLINE_S3_ACCESS_KEY_ID, FARLINE_S3_SECRET_ACCESS_KEY), before the worker starts: the
worker needs the bucket to exist. It waits for the endpoint to answer, creates the bucket,
and exits 0 once the bucket exists and these keys can use it; otherwise it exits 1 and says
why (never printing the secret key).

    python deploy/create_bucket.py [--wait-s 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from harness.config import ConfigError, FarlineConfig
from harness.object_store_s3 import build_client

# what S3-compatible services answer to creating a bucket that is there already
_EXISTS_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
# regions where a bucket is created without a location constraint
_NO_LOCATION_CONSTRAINT = frozenset({"us-east-1", "auto"})


class BucketError(Exception):
    """The bucket cannot be created or used; the message says what to fix."""


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def ensure_bucket(config: FarlineConfig, wait_s: float, client: Any = None) -> str:
    """Create the configured bucket unless it exists; return what was done."""
    bucket = config.s3_bucket
    if not bucket:
        raise BucketError("FARLINE_S3_BUCKET is not set: name the bucket Farline's stores use")
    where = f"bucket {bucket!r} at {config.s3_endpoint_url or 'AWS S3'}"
    if client is None:
        secret = config.s3_secret_access_key
        client = build_client(
            config.s3_endpoint_url,
            config.s3_region,
            config.s3_access_key_id,
            secret.get_secret_value() if secret is not None else None,
        )
    request: dict[str, Any] = {"Bucket": bucket}
    if config.s3_region and config.s3_region not in _NO_LOCATION_CONSTRAINT:
        request["CreateBucketConfiguration"] = {"LocationConstraint": config.s3_region}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.create_bucket(**request)
            return f"created {where}"
        except ClientError as error:
            if _error_code(error) in _EXISTS_CODES:
                return _check_access(client, bucket, where)
            if _status(error) < 500:
                # the service is up and refuses: waiting will not help
                raise BucketError(
                    f"cannot create {where}: {error} (check FARLINE_S3_ACCESS_KEY_ID, "
                    "FARLINE_S3_SECRET_ACCESS_KEY and FARLINE_S3_REGION)"
                ) from None
            last: Exception = error
        except BotoCoreError as error:
            last = error
        if time.monotonic() >= deadline:
            raise BucketError(
                f"cannot reach {where} within {wait_s:.0f} s: {last} "
                "(check FARLINE_S3_ENDPOINT and that the service is running)"
            )
        time.sleep(1)


def _check_access(client: Any, bucket: str, where: str) -> str:
    """The bucket exists: make sure it is ours to use (on AWS, a name taken by another
    account also answers "already exists")."""
    try:
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as error:
        raise BucketError(f"{where} exists but these keys cannot use it: {error}") from None
    return f"{where} exists"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the endpoint")
    args = parser.parse_args(argv)
    try:
        print(f"farline s3-bucket: {ensure_bucket(FarlineConfig.from_env(), args.wait_s)}", flush=True)
    except (ConfigError, BucketError) as error:
        sys.exit(f"farline s3-bucket: {error}")


if __name__ == "__main__":
    main()
