"""moto's S3 server as a local process: for tests and the local stack, never for production."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Self

from tally_stack import launcher

MOTO_ACCESS_KEY = "tally-local"  # moto accepts any credentials; these mark local use
MOTO_SECRET_KEY = "tally-local-secret"


class MotoS3Server:
    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or launcher.free_port()
        self.log_path = log_path
        self.process: launcher.Process | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        """Start it and return its URL once it listens (LaunchError if it does not)."""
        moto = Path(sys.executable).parent / "moto_server"
        self.process = launcher.start(
            "moto_server", [moto, "-H", "127.0.0.1", "-p", str(self.port)], log_path=self.log_path
        )
        try:
            self.process.wait_until(launcher.port_open(self.port), timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.endpoint_url

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace_s=10.0)
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
