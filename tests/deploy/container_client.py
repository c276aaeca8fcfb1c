#!/usr/bin/python3
"""Talks to a qsig running in a container, as its users would: a real gRPC client (Python grpcio,
stubs generated from proto/qsig/v1/signal.proto) subscribes and must receive signals for every
instrument it asks for, and /metrics must answer with qsig's metrics.

    container_client.py --grpc 127.0.0.1:P --metrics 127.0.0.1:M --stubs DIR [--prometheus 127.0.0.1:Q]

With --prometheus it also waits until that Prometheus has scraped qsig (up{job="qsig"} == 1) and
has loaded qsig's alert rules. Bounded in time everywhere; exit 0 on success.
"""
import argparse
import json
import sys
import time
import urllib.request


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--prometheus")
    ap.add_argument("--signals", type=int, default=200)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    from qsig.v1 import signal_pb2, signal_pb2_grpc

    channel = grpc.insecure_channel(args.grpc)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = signal_pb2_grpc.SignalServiceStub(channel)
    wanted = {"AAPL", "MSFT"}
    stream = stub.Subscribe(signal_pb2.SubscribeRequest(instruments=sorted(wanted)), timeout=60)
    seen, n = set(), 0
    for sig in stream:
        assert sig.instrument in wanted, sig.instrument
        seen.add(sig.instrument)
        n += 1
        if seen == wanted and n >= args.signals:
            stream.cancel()
            break
    assert seen == wanted, f"signals only for {seen}"
    print(f"container client: {n} signals over gRPC for {sorted(seen)}")

    status, body = http_get(f"http://{args.metrics}/metrics")
    assert status == 200 and "qsig_tick_to_signal_seconds" in body, "no qsig metrics"
    print(f"container client: /metrics answered ({len(body)} bytes)")

    if args.prometheus:
        deadline = time.monotonic() + 90
        up = rules = False
        while time.monotonic() < deadline and not (up and rules):
            try:
                _, q = http_get(f"http://{args.prometheus}/api/v1/query?query=up%7Bjob%3D%22qsig%22%7D")
                res = json.loads(q)["data"]["result"]
                up = bool(res) and res[0]["value"][1] == "1"
                _, r = http_get(f"http://{args.prometheus}/api/v1/rules")
                rules = len(json.loads(r)["data"]["groups"]) > 0
            except OSError:
                pass
            if not (up and rules):
                time.sleep(1)
        assert up, "Prometheus never scraped qsig (up{job=\"qsig\"} != 1)"
        assert rules, "Prometheus did not load qsig's alert rules"
        print("container client: Prometheus scrapes qsig and has its alert rules")


if __name__ == "__main__":
    main()
