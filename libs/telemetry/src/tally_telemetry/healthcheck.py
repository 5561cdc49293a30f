"""`tally-healthcheck`: a container's health, for Docker's HEALTHCHECK (exit 0 when ready).

One image runs every service, so the check does not know which one it is in: an HTTP service
answers /readyz on TALLY_PORT, a worker on TALLY_PROBES_PORT (and nothing listens on the other),
so it is healthy when either answers 200. The standard library only: it runs every few seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe_urls(environ: dict[str, str]) -> list[str]:
    ports = [environ.get(name, "") for name in ("TALLY_PORT", "TALLY_PROBES_PORT")]
    return [f"http://127.0.0.1:{port}/readyz" for port in ports if port]


def ready(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def main() -> int:
    urls = probe_urls(dict(os.environ))
    if not urls:
        print("tally-healthcheck: neither TALLY_PORT nor TALLY_PROBES_PORT is set", file=sys.stderr)
        return 1
    if any(ready(url, timeout_s=3.0) for url in urls):
        return 0
    print(f"tally-healthcheck: not ready at {', '.join(urls)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
