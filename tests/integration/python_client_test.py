#!/usr/bin/python3
"""An independent client: Python grpcio (Debian's python3-grpcio) against a real `qsig serve`.

Checks what a trading engineer's Python code would rely on: the health service, server
reflection listing qsig.v1 services, Subscribe with an instrument filter, GetLatest and Predict,
all through stubs generated from proto/qsig/v1/signal.proto by grpc_python_plugin.

    python_client_test.py --qsig build/server/qsig --stubs build/tests/integration/py --config config/demo.yaml
"""
import argparse
import math
import socket
import subprocess
import sys
import time


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qsig", required=True)
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    from qsig.v1 import signal_pb2, signal_pb2_grpc

    grpc_port, metrics_port, admin_port = free_port(), free_port(), free_port()
    server = subprocess.Popen(
        [args.qsig, "serve", "--config", args.config,
         "--set", f"grpc.listen=127.0.0.1:{grpc_port}",
         "--set", f"admin.listen=127.0.0.1:{admin_port}",
         "--set", f"metrics.listen=127.0.0.1:{metrics_port}",
         "--set", "calibration.warmup_samples=300",
         "--set", "console.status_interval_s=0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=30)

        # grpc.health.v1.Health/Check with an empty request: SERVING is field 1 = 1.
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        assert check(b"", timeout=5) == b"\x08\x01", "health is not SERVING"

        # Reflection: list_services (field 7) answers with the registered service names.
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        listing = b"".join(reflect(iter([b"\x3a\x00"]), timeout=5))
        for name in (b"qsig.v1.SignalService", b"grpc.health.v1.Health"):
            assert name in listing, f"reflection does not list {name!r}"
        # AdminService has its own listener (admin.listen), never the SignalService port.
        assert b"qsig.v1.AdminService" not in listing, "AdminService on the SignalService port"
        admin_channel = grpc.insecure_channel(f"127.0.0.1:{admin_port}")
        admin_listing = b"".join(admin_channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b)(iter([b"\x3a\x00"]), timeout=5))
        assert b"qsig.v1.AdminService" in admin_listing, "reflection on admin.listen"

        stub = signal_pb2_grpc.SignalServiceStub(channel)
        stream = stub.Subscribe(signal_pb2.SubscribeRequest(instruments=["NVDA", "TSLA"],
                                                            models=["lstm"]), timeout=60)
        seen, last_seq = set(), {}
        int8 = 0
        for sig in stream:
            assert sig.instrument in ("NVDA", "TSLA"), sig.instrument
            assert sig.model == "lstm", sig.model
            assert math.isfinite(sig.value)
            assert sig.sequence > last_seq.get(sig.instrument, 0)
            last_seq[sig.instrument] = sig.sequence
            seen.add(sig.instrument)
            int8 += sig.precision == "int8"
            if seen == {"NVDA", "TSLA"} and int8 >= 200:
                stream.cancel()
                break
        assert seen == {"NVDA", "TSLA"}, seen

        latest = stub.GetLatest(signal_pb2.GetLatestRequest(instruments=["NVDA"]), timeout=5)
        assert sorted(s.model for s in latest.signals) == ["lstm", "mlp"], latest
        # An in-distribution window (spread ~2-3 bps, small returns and imbalances).
        window = [0.1, -0.2, 0.3, 0.75, 0.2, -0.1, 0.2, 0.05] * 16
        pred = stub.Predict(signal_pb2.PredictRequest(model="lstm", features=window), timeout=5)
        assert math.isfinite(pred.int8_value) and math.isfinite(pred.fp32_value)
        assert abs(pred.int8_value - pred.fp32_value) <= 0.1 * max(1.0, abs(pred.fp32_value)), pred
        try:
            stub.Predict(signal_pb2.PredictRequest(model="nope", features=[1.0]), timeout=5)
            raise AssertionError("unknown model accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
        print(f"python client: OK ({sum(last_seq.values())} sequence numbers, latest "
              f"{len(latest.signals)} signals, predict int8 {pred.int8_value:.5f} "
              f"fp32 {pred.fp32_value:.5f})")
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        if server.returncode != 0:
            print(out)
            raise SystemExit(f"qsig serve exited with {server.returncode}")


if __name__ == "__main__":
    main()
