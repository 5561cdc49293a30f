"""Tally's benchmarks of the running services, each started as subprocesses on its own database,
bus prefix and Redis database: the status path (`tally-bench-status`: the gateway and the
projector fed through PostgreSQL and the bus, measured over loopback HTTP) and the pipeline's
throughput (`tally-bench-pipeline`: the whole stack against raw Triton)."""
