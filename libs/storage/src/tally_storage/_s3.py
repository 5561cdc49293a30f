"""Objects in S3 (MinIO, moto's server or AWS) through aioboto3."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

# S3's minimum part size: streams are sent in parts of this size (the last one may be smaller).
PART_SIZE = 5 * 1024 * 1024

log = logging.getLogger(__name__)


class ObjectNotFoundError(KeyError):
    pass


class ObjectTooLargeError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str
    endpoint_url: str | None = None  # None: AWS
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int


class ObjectStore:
    """One bucket. Open it with `async with ObjectStore.open(settings) as store:`."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: S3Settings, *, create_bucket: bool = False
    ) -> AsyncIterator[Self]:
        session = aioboto3.Session()
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5)
        async with session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=config,
        ) as client:
            store = cls(client, settings.bucket)
            if create_bucket:
                await store.ensure_bucket()
            yield store

    async def ensure_bucket(self, wait_s: float = 60.0) -> None:
        """Create the bucket unless it exists; an object store that is not up yet (starting
        alongside this service) is waited for, up to `wait_s`."""
        deadline = asyncio.get_running_loop().time() + wait_s
        delay = 0.2
        while True:
            try:
                await self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError:
                await self._client.create_bucket(Bucket=self.bucket)
                return
            except EndpointConnectionError:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.info("the object store is not reachable yet; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        await self._client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )
        return StoredObject(key, len(data))

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        max_bytes: int | None = None,
    ) -> StoredObject:
        """Store a stream without holding it in memory: one PUT if it is small, else multipart.

        Raises `ObjectTooLargeError` (and stores nothing) once more than `max_bytes` arrive.
        """
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLargeError(f"{key} is over {max_bytes} bytes")
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type
                        )
                        upload_id = created["UploadId"]
                    part, buffer = bytes(buffer[:PART_SIZE]), buffer[PART_SIZE:]
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                return await self.put_bytes(key, bytes(buffer), content_type)
            if buffer:
                parts.append(await self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer)))
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            return StoredObject(key, size)
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(ClientError):
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
            raise

    async def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes
    ) -> CompletedPartTypeDef:
        response = await self._client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"ETag": response["ETag"], "PartNumber": number}

    async def get_bytes(self, key: str) -> bytes:
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFoundError(key) from None
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=key)
