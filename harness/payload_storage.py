"""Temporal external payload storage: big payloads go to a store, history keeps a reference.

Temporal refuses a payload over 2 MB and a history over 50 MB; a model call's
context or a long tool result can exceed that. With external storage the SDK
moves every payload above a threshold (default 256 KiB) out of the history
into a store and puts a small reference in its place; the worker that reads
the history fetches it back transparently. Two drivers:

- `local` (the embedded default): files under `<data dir>/payloads`, named by
  the sha256 of their bytes and verified on read;
- `s3`: the Temporal SDK's own S3 driver (`temporalio.contrib.aws.s3driver`),
  on Farline's boto3 object store (any S3-compatible service).

Every process that reads a run's history (workers, the CLI, a replayer) must use
the same data converter: `farline_data_converter(config)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from harness.config import FarlineConfig
from harness.object_store import ObjectStore
from harness.stores import open_object_store


class PayloadMissing(Exception):
    """A payload a history refers to is not in the store (or is corrupt)."""


class LocalPayloadDriver(StorageDriver):
    """Payloads as files under one directory, content-addressed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def name(self) -> str:
        return "farline.local"

    def type(self) -> str:
        return "farline.local"

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return [await asyncio.to_thread(self._store_one, payload) for payload in payloads]

    def _store_one(self, payload: Payload) -> StorageDriverClaim:
        data = payload.SerializeToString(deterministic=True)
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        return StorageDriverClaim(claim_data={"sha256": digest, "size": str(len(data))})

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return [await asyncio.to_thread(self._retrieve_one, claim) for claim in claims]

    def _retrieve_one(self, claim: StorageDriverClaim) -> Payload:
        digest = claim.claim_data.get("sha256", "")
        try:
            data = self._path(digest).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise PayloadMissing(f"payload {digest} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise PayloadMissing(f"payload {digest} in {self.root} is corrupt: its content hash differs")
        return Payload.FromString(data)


class ObjectStoreS3Client(S3StorageDriverClient):
    """The SDK's S3 driver on Farline's boto3 object store (its bucket and prefix)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.objects.put, key, data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        return await asyncio.to_thread(self.objects.exists, key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        return await asyncio.to_thread(self.objects.get, key)


def payload_driver(config: FarlineConfig) -> StorageDriver:
    if config.effective_payload_store == "local":
        return LocalPayloadDriver(config.payloads_dir)
    objects = open_object_store(config, "s3", config.payloads_dir, s3_subprefix="payloads")
    assert config.s3_bucket is not None  # checked by FarlineConfig
    return S3StorageDriver(client=ObjectStoreS3Client(objects), bucket=config.s3_bucket)


def farline_data_converter(config: FarlineConfig) -> DataConverter:
    """Pydantic payloads, and every payload above the threshold in external storage."""
    storage = ExternalStorage(
        drivers=[payload_driver(config)], payload_size_threshold=config.payload_threshold_bytes
    )
    return dataclasses.replace(pydantic_data_converter, external_storage=storage)
