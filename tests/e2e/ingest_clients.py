#!/usr/bin/env python3
"""Real clients for the ingest end-to-end test (tests/e2e/ingest.rs).

  ingest_clients.py push   HTTP_PORT UDP_PORT TOKEN   push_to_gateway + pushadd_to_gateway + StatsD
  ingest_clients.py delete HTTP_PORT UDP_PORT TOKEN   delete_from_gateway

The libraries are used exactly as an application would use them against a Pushgateway and
a StatsD server; only the addresses differ. Exits 77 when a library is missing, so the
caller can tell "skipped" from "failed".
"""
import sys

try:
    import statsd
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        delete_from_gateway,
        push_to_gateway,
        pushadd_to_gateway,
    )
    from prometheus_client.exposition import basic_auth_handler
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: {e} (pip install prometheus_client statsd)")
    sys.exit(77)

mode, http_port, udp_port, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
gateway = f"127.0.0.1:{http_port}"
# A grouping value with a slash: prometheus_client sends it as instance@base64/...
grouping = {"instance": "host/1"}


def auth(url, method, timeout, headers, data):
    # The documented way to authenticate pushes; Telltale takes the token as the password.
    return basic_auth_handler(url, method, timeout, headers, data, "etl", token)


if mode == "push":
    registry = CollectorRegistry()
    Gauge("batch_rows_processed", "Rows processed by the last run", registry=registry).set(250)
    Counter("batch_runs", "Runs", registry=registry).inc()
    push_to_gateway(gateway, job="etl", registry=registry, grouping_key=grouping, handler=auth)

    # pushadd (POST) adds a family and keeps the ones pushed before.
    extra = CollectorRegistry()
    Gauge("batch_last_success", "1 if the last run succeeded", registry=extra).set(1)
    pushadd_to_gateway(gateway, job="etl", registry=extra, grouping_key=grouping, handler=auth)

    client = statsd.StatsClient("127.0.0.1", udp_port, prefix="api")
    client.incr("hits", 3)
    client.gauge("pool_in_use", 10)
    client.gauge("pool_in_use", -3, delta=True)
    client.timing("latency", 12)
    client.set("users", "alice")
    client.set("users", "bob")
    print("pushed")
elif mode == "delete":
    delete_from_gateway(gateway, job="etl", grouping_key=grouping, handler=auth)
    print("deleted")
else:
    sys.exit(f"unknown mode {mode}")
