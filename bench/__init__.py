"""`make bench`: the gateway's warm latency, throughput, cold starts and deploy-to-ready, against
a bare ASGI app on the same server. A benchmark, not a test: see bench/run.py."""
