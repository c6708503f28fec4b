"""Opening the object stores the settings name: a local directory or an S3 bucket (and prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from harness.config import FarlineConfig
from harness.object_store import LocalDirectoryStore, ObjectStore


def open_object_store(
    config: FarlineConfig, kind: Literal["local", "s3"], local_dir: Path, s3_subprefix: str = ""
) -> ObjectStore:
    """`local_dir` for a local store; for S3, the bucket under FARLINE_S3_PREFIX + `s3_subprefix`."""
    if kind == "local":
        return LocalDirectoryStore(local_dir)
    from harness.object_store_s3 import S3ObjectStore  # boto3 loads only when S3 is used

    assert config.s3_bucket is not None  # checked by FarlineConfig
    secret = config.s3_secret_access_key
    prefix = "/".join(part.strip("/") for part in (config.s3_prefix, s3_subprefix) if part.strip("/"))
    return S3ObjectStore(
        bucket=config.s3_bucket,
        prefix=prefix,
        endpoint_url=config.s3_endpoint_url,
        region=config.s3_region,
        access_key_id=config.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
    )


def open_run_store(config: FarlineConfig) -> ObjectStore:
    """Where snapshots and model contexts live (FARLINE_SNAPSHOT_STORE)."""
    return open_object_store(config, config.snapshot_store, config.snapshots_dir)
