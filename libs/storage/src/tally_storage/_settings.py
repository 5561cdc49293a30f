"""The object store's part of a service's settings (TALLY_S3_* variables)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tally_storage._s3 import S3Settings


class S3Fields(BaseSettings):
    """Mixed into a service's Settings: `settings.s3` is what ObjectStore.open takes."""

    s3_endpoint_url: str | None = None  # None: AWS
    s3_bucket: str = "tally"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    @property
    def s3(self) -> S3Settings:
        secret = self.s3_secret_access_key
        return S3Settings(
            bucket=self.s3_bucket,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
        )
