"""The ObjectStore contract, against both backends: a local directory and S3 (a real SeaweedFS)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from harness.object_store import LocalDirectoryStore, ObjectMissing, ObjectStore, ObjectStoreError
from harness.object_store_s3 import S3ObjectStore
from tests.s3_server import S3Server

INVALID_KEYS = ["../x", "/abs", "a//b", "", "a/", "a/./b", "a/../b", "nul\0byte"]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalDirectoryStore(tmp_path / "objects")
    return request.getfixturevalue("s3_store")


def s3_store_on(server: S3Server, **overrides: Any) -> S3ObjectStore:
    settings: dict[str, Any] = {
        "bucket": server.bucket,
        "prefix": f"tests/{uuid.uuid4().hex}",
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
    }
    settings.update(overrides)
    return S3ObjectStore(**settings)


# -- both backends --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", bytes(range(256)) * 4, os.urandom(5 * 1024 * 1024)],
    ids=["empty", "binary", "5MB"],
)
def test_put_get_round_trip(store: ObjectStore, data: bytes) -> None:
    store.put("blobs/ab/ab12cd", data)
    assert store.get("blobs/ab/ab12cd") == data
    assert [(stored.key, stored.size) for stored in store.list("blobs/")] == [("blobs/ab/ab12cd", len(data))]


def test_overwrite_replaces_the_bytes(store: ObjectStore) -> None:
    store.put("trees/t1", b"first version, longer")
    store.put("trees/t1", b"second")
    assert store.get("trees/t1") == b"second"
    assert [(stored.key, stored.size) for stored in store.list("trees/")] == [("trees/t1", 6)]


def test_get_missing_raises_object_missing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing, match="blobs/00/0000"):
        store.get("blobs/00/0000")
    store.put("blobs/00/0001", b"x")
    with pytest.raises(ObjectMissing):
        store.get("blobs/00/0000")


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("runs/r/1")
    store.put("runs/r/1", b"")
    assert store.exists("runs/r/1")
    # a key that is only a prefix of other keys is no object
    assert not store.exists("runs/r")
    assert not store.exists("runs")
    store.delete("runs/r/1")
    assert not store.exists("runs/r/1")


def test_list_by_prefix_in_key_order(store: ObjectStore) -> None:
    objects = {
        "runs/r1/00000002-b": b"22",
        "runs/r1/00000001-a": b"1",
        "runs/r1/sub/z": b"",
        # '-' sorts before '/', '0' after it: a directory-at-a-time listing gets these wrong
        "runs/r1-x/y": b"333",
        "runs/r10/x": b"4444",
        "runs/r1.z": b"55555",
        "blobs/ab/ab12": b"666666",
        "trees/t": b"7777777",
    }
    before = time.time()
    for key, data in objects.items():
        store.put(key, data)
    after = time.time()

    listed = list(store.list("runs/r1/"))
    assert [(stored.key, stored.size) for stored in listed] == [
        ("runs/r1/00000001-a", 1),
        ("runs/r1/00000002-b", 2),
        ("runs/r1/sub/z", 0),
    ]
    # S3 keeps whole seconds; leave room for clock granularity
    for stored in listed:
        assert before - 2 <= stored.modified_at <= after + 2

    # a prefix that ends mid-name
    assert [stored.key for stored in store.list("runs/r1")] == sorted(
        key for key in objects if key.startswith("runs/r1")
    )
    everything = list(store.list(""))
    assert [stored.key for stored in everything] == sorted(objects)
    assert {stored.key: stored.size for stored in everything} == {
        key: len(data) for key, data in objects.items()
    }


def test_list_of_an_empty_prefix(store: ObjectStore) -> None:
    assert list(store.list("")) == []
    assert list(store.list("runs/")) == []
    store.put("runs/r/1", b"x")
    assert list(store.list("trees/")) == []
    assert list(store.list("runs/q")) == []


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.delete("blobs/ff/ff00")  # never existed
    store.put("blobs/ff/ff00", b"x")
    store.put("blobs/ff/ff01", b"y")
    store.delete("blobs/ff/ff00")
    store.delete("blobs/ff/ff00")
    with pytest.raises(ObjectMissing):
        store.get("blobs/ff/ff00")
    assert [stored.key for stored in store.list("blobs/")] == ["blobs/ff/ff01"]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused(store: ObjectStore, key: str) -> None:
    for operation in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(ObjectStoreError, match="invalid object key") as caught:
            operation()
        assert not isinstance(caught.value, ObjectMissing)
    assert list(store.list("")) == []


def test_concurrent_use_from_threads(store: ObjectStore) -> None:
    """Activities share one store across threads; an overwrite is seen whole or not at all."""
    versions = [bytes([n]) * 200_000 for n in range(8)]
    store.put("shared", versions[0])

    def work(n: int) -> bytes:
        store.put(f"own/{n:02d}", versions[n])
        store.put("shared", versions[n])
        assert store.get(f"own/{n:02d}") == versions[n]
        return store.get("shared")

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(work, range(8)))
    assert all(data in versions for data in seen)
    assert store.get("shared") in versions
    assert [stored.key for stored in store.list("own/")] == [f"own/{n:02d}" for n in range(8)]


# -- S3 only ---------------------------------------------------------------------


def test_s3_keys_live_under_the_prefix(s3_server: S3Server) -> None:
    prefix = f"tests/{uuid.uuid4().hex}"
    store = s3_store_on(s3_server, prefix=f"/{prefix}/")
    other = s3_store_on(s3_server)
    assert store.prefix == f"{prefix}/"
    store.put("runs/r/1", b"one")
    other.put("runs/r/1", b"other")
    assert store.get("runs/r/1") == b"one"
    assert [stored.key for stored in store.list("")] == ["runs/r/1"]
    # seen from the bucket root, the prefix is part of the key
    root = s3_store_on(s3_server, prefix="")
    assert [stored.key for stored in root.list(prefix)] == [f"{prefix}/runs/r/1"]
    assert root.get(f"{prefix}/runs/r/1") == b"one"


def test_s3_prefix_is_normalised_and_checked() -> None:
    def prefix_of(prefix: str) -> str:
        store = S3ObjectStore("bucket", prefix=prefix, endpoint_url="http://127.0.0.1:9", region="us-east-1")
        return store.prefix

    assert prefix_of("") == ""
    assert prefix_of("/") == ""
    assert prefix_of("snapshots") == "snapshots/"
    assert prefix_of("/snapshots/prod/") == "snapshots/prod/"
    for bad in ("../x", "a//b", "a/./b"):
        with pytest.raises(ObjectStoreError, match="invalid S3 key prefix"):
            prefix_of(bad)


def test_s3_list_follows_pages(s3_server: S3Server) -> None:
    client = s3_server.client()

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 2

    client.meta.events.register("provide-client-params.s3.ListObjectsV2", small_pages)
    store = s3_store_on(s3_server, client=client)
    keys = [f"runs/r/{n:08d}" for n in range(7)]
    for key in reversed(keys):
        store.put(key, key.encode())
    assert [stored.key for stored in store.list("runs/")] == keys
    assert [stored.size for stored in store.list("runs/")] == [len(key) for key in keys]


def test_s3_empty_put_does_not_stall_the_next_one(s3_server: S3Server) -> None:
    """An empty PUT must not poison the pooled connection (boto/botocore#3755)."""
    client = s3_server.client(
        retries={"mode": "standard", "max_attempts": 1}, read_timeout=5, max_pool_connections=1
    )
    store = s3_store_on(s3_server, client=client)
    store.put("warm", b"w")
    started = time.monotonic()
    for n in range(3):
        store.put(f"empty/{n}", b"")
        store.put(f"full/{n}", b"data")
    assert time.monotonic() - started < 3
    assert [stored.size for stored in store.list("")] == [0, 0, 0, 4, 4, 4, 1]


def test_s3_wrong_secret_is_a_clear_error_without_the_secret(s3_server: S3Server) -> None:
    good = s3_store_on(s3_server)
    good.put("runs/r/1", b"x")
    wrong_secret = f"wrong-{uuid.uuid4().hex}"
    store = s3_store_on(s3_server, prefix=good.prefix, secret_access_key=wrong_secret)
    for operation in (
        lambda: store.get("runs/r/1"),
        lambda: store.get("runs/r/missing"),
        lambda: store.put("runs/r/2", b"y"),
        lambda: store.exists("runs/r/1"),
        lambda: list(store.list("runs/")),
        lambda: store.delete("runs/r/1"),
    ):
        with pytest.raises(ObjectStoreError) as caught:
            operation()
        message = str(caught.value)
        assert not isinstance(caught.value, ObjectMissing), message
        assert "access denied" in message
        assert "FARLINE_S3_SECRET_ACCESS_KEY" in message
        assert s3_server.bucket in message
        assert wrong_secret not in message
        assert s3_server.secret_access_key not in message
    assert good.get("runs/r/1") == b"x"


def test_s3_missing_bucket_is_a_clear_error(s3_server: S3Server) -> None:
    bucket = f"farline-missing-{uuid.uuid4().hex[:8]}"
    store = s3_store_on(s3_server, bucket=bucket)
    for operation in (
        lambda: store.get("runs/r/1"),
        lambda: store.put("runs/r/1", b"x"),
        lambda: store.exists("runs/r/1"),
        lambda: list(store.list("")),
    ):
        with pytest.raises(ObjectStoreError) as caught:
            operation()
        message = str(caught.value)
        assert not isinstance(caught.value, ObjectMissing), message
        assert f"bucket {bucket!r} does not exist" in message
        assert s3_server.endpoint_url in message
        assert s3_server.secret_access_key not in message


def test_s3_unreachable_endpoint_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="key",
        aws_secret_access_key="not-a-real-secret",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2),
    )
    store = S3ObjectStore(
        "bucket", endpoint_url=endpoint, secret_access_key="not-a-real-secret", client=client
    )
    with pytest.raises(ObjectStoreError, match="cannot reach the S3 endpoint") as caught:
        store.get("runs/r/1")
    assert endpoint in str(caught.value)
    assert "not-a-real-secret" not in str(caught.value)


def test_s3_describe_names_the_place_without_credentials(s3_server: S3Server) -> None:
    store = s3_store_on(s3_server, prefix="snapshots/prod")
    described = store.describe()
    assert described == f"s3://{s3_server.bucket}/snapshots/prod/ at {s3_server.endpoint_url}"
    assert s3_server.secret_access_key not in described
    assert s3_server.access_key_id not in described
    assert S3ObjectStore("bucket", region="eu-west-1").describe() == "s3://bucket/"
    with_userinfo = S3ObjectStore("bucket", endpoint_url="https://user:pass@s3.example.com", region="auto")
    assert with_userinfo.describe() == "s3://bucket/ at https://s3.example.com"
