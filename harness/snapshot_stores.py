"""The snapshot stores a worker serves: its own (FARLINE_SNAPSHOT_STORE) and those runs choose.

A run's `snapshot_store` names a kind, a bucket and named credentials; the keys are looked up
here, on the worker, and never enter the run's history or its sandbox. Each store is opened once
and shared by every activity that needs it.
"""

from __future__ import annotations

import threading

from harness.config import ConfigError, FarlineConfig
from harness.object_store import LocalDirectoryStore
from harness.snapshot_store import SnapshotStore
from harness.specs import SnapshotStoreChoice


class StoreRefused(ValueError):
    """A run's snapshot store this worker cannot open (its credentials are not set here)."""


class SnapshotStores:
    def __init__(self, config: FarlineConfig, default: SnapshotStore) -> None:
        self._config = config
        self.default = default
        self._opened: dict[str, SnapshotStore] = {}
        self._lock = threading.Lock()

    def get(self, choice: SnapshotStoreChoice | None) -> SnapshotStore:
        """The store of a run (None: the worker's own)."""
        if choice is None:
            return self.default
        key = choice.model_dump_json()
        with self._lock:
            store = self._opened.get(key)
            if store is None:
                store = self._opened[key] = self._open(choice)
            return store

    def opened(self) -> list[SnapshotStore]:
        """The worker's store and every store a run chose, so far."""
        with self._lock:
            return [self.default, *self._opened.values()]

    def _open(self, choice: SnapshotStoreChoice) -> SnapshotStore:
        if choice.kind == "local":
            return SnapshotStore(LocalDirectoryStore(self._config.snapshots_dir))
        from harness.object_store_s3 import S3ObjectStore  # boto3 loads only when S3 is used

        assert choice.bucket is not None  # checked by SnapshotStoreChoice
        try:
            key_id, secret = self._config.s3_credentials(choice.credentials)
        except ConfigError as error:
            raise StoreRefused(f"the run's snapshot store s3://{choice.bucket}: {error}") from None
        return SnapshotStore(
            S3ObjectStore(
                bucket=choice.bucket,
                prefix=choice.prefix.strip("/"),
                endpoint_url=choice.endpoint_url or self._config.s3_endpoint_url,
                region=choice.region or self._config.s3_region,
                access_key_id=key_id,
                secret_access_key=secret,
            )
        )
