"""`tally-db migrate`: bring the record store's schema up to date."""

from __future__ import annotations

import argparse
import asyncio
import os

import asyncpg

from tally_db._migrate import migrate

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/tally"


async def _migrate(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-db", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["migrate"])
    parser.add_argument("--dsn", default=os.environ.get("TALLY_DATABASE_URL", DEFAULT_DSN))
    args = parser.parse_args(argv)
    applied = asyncio.run(_migrate(args.dsn))
    print(f"applied migrations {applied}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
