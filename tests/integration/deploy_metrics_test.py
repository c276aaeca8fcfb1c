#!/usr/bin/python3
"""The deploy assets agree with the server: scrape a real `qsig serve`, lint the exposition with
the real promtool, and check that every qsig metric named in the Grafana dashboards and the
Prometheus alert rules is one the server exports.

    deploy_metrics_test.py --qsig build/server/qsig --config config/demo.yaml --deploy deploy
"""
import argparse
import glob
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qsig", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--deploy", required=True)
    args = ap.parse_args()
    metrics_port = free_port()
    server = subprocess.Popen(
        [args.qsig, "serve", "--config", args.config, "--set", f"grpc.listen=127.0.0.1:{free_port()}",
         "--set", "admin.listen=127.0.0.1:0",
         "--set", f"metrics.listen=127.0.0.1:{metrics_port}", "--set", "console.status_interval_s=0",
         "--set", "calibration.warmup_samples=200"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text = ""
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                              timeout=2).read().decode()
                if 'qsig_model_version{model="lstm"} 1' in text:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert "qsig_tick_to_signal_seconds_bucket" in text, text[:2000]

        promtool = shutil.which("promtool")
        assert promtool, "promtool not found (Debian package prometheus)"
        lint = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                              capture_output=True)
        assert lint.returncode == 0, f"promtool check metrics:\n{lint.stdout}{lint.stderr}"

        exported = set(re.findall(r"^(qsig_[a-z0-9_]+)", text, re.M))
        referenced = {}
        for path in glob.glob(f"{args.deploy}/grafana/dashboards/*.json"):
            for panel in json.load(open(path))["panels"]:
                for target in panel["targets"]:
                    for name in re.findall(r"qsig_[a-z0-9_]+", target["expr"]):
                        referenced.setdefault(name, path)
        for name in re.findall(r"qsig_[a-z0-9_]+",
                               open(f"{args.deploy}/prometheus/alerts.yml").read()):
            referenced.setdefault(name, "alerts.yml")
        missing = sorted(f"{n} ({p})" for n, p in referenced.items() if n not in exported)
        assert not missing, "metrics referenced but not exported: " + ", ".join(missing)
        print(f"deploy assets: {len(referenced)} metrics referenced, all exported; promtool lint clean")
    finally:
        server.terminate()
        server.communicate(timeout=10)


if __name__ == "__main__":
    main()
