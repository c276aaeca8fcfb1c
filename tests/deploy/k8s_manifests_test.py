#!/usr/bin/env python3
"""Validates deploy/k8s offline, with no cluster.

Each kustomization (base, overlays, jobs) is rendered with `kubectl kustomize` when kubectl is
installed (otherwise the base's and the jobs' own resource files are read as they are, and the
overlays are skipped with a line saying so). Every rendered object is then checked against the
Kubernetes API schema in python3-kubernetes' models: every field must exist in its type (a typo
is an error, not silently dropped), values must have the field's type, required fields must be
present. On top of the schema, what qsig's deployment relies on:
  - the StatefulSet's shard index comes from the pod ordinal, replicas == feed.shard.count and
    feed.shard.addresses name each pod behind the headless Service;
  - Guaranteed QoS with whole CPUs (requests == limits, integer cpu), host networking with
    ClusterFirstWithHostNet DNS, Prometheus scrape annotations on the metrics port;
  - AdminService on loopback (or credentials configured), the PDB selecting the pods;
  - the per-day Job is Indexed with one completion per listed day.
Usage: k8s_manifests_test.py REPO_ROOT
"""
import os
import re
import shutil
import subprocess
import sys

import kubernetes.client as k8s
import yaml

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.getcwd()
K8S = os.path.join(ROOT, "deploy", "k8s")
KINDS = {
    ("apps/v1", "StatefulSet"): k8s.V1StatefulSet,
    ("v1", "Service"): k8s.V1Service,
    ("v1", "ConfigMap"): k8s.V1ConfigMap,
    ("v1", "Secret"): k8s.V1Secret,
    ("policy/v1", "PodDisruptionBudget"): k8s.V1PodDisruptionBudget,
    ("batch/v1", "Job"): k8s.V1Job,
}
PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object,
              "datetime": str, "date": str}
errors = []


def fail(where, what):
    errors.append(f"{where}: {what}")


def check_type(value, type_name, where):
    """Checks `value` against an openapi type name ('V1PodSpec', 'list[str]', 'dict(str, str)')."""
    if value is None:
        return
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            return fail(where, f"expected a list, got {type(value).__name__}")
        for i, v in enumerate(value):
            check_type(v, m.group(1), f"{where}[{i}]")
        return
    m = re.fullmatch(r"dict\(([^,]+), (.+)\)", type_name)
    if m:
        if not isinstance(value, dict):
            return fail(where, f"expected a mapping, got {type(value).__name__}")
        for k, v in value.items():
            check_type(v, m.group(2), f"{where}.{k}")
        return
    if type_name in PRIMITIVES:
        if type_name == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return fail(where, f"expected a string, got the number {value!r} (quote it)")
        if not isinstance(value, PRIMITIVES[type_name]) or (
                type_name == "int" and isinstance(value, bool)):
            fail(where, f"expected {type_name}, got {type(value).__name__} {value!r}")
        return
    cls = getattr(k8s, type_name, None)
    if cls is None:
        return fail(where, f"unknown schema type {type_name}")
    check_object(value, cls, where)


def check_object(obj, cls, where):
    if not isinstance(obj, dict):
        return fail(where, f"expected a {cls.__name__} mapping, got {type(obj).__name__}")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, value in obj.items():
        if key not in by_json:
            fail(f"{where}.{key}", f"no such field in {cls.__name__}")
            continue
        check_type(value, cls.openapi_types[by_json[key]], f"{where}.{key}")
    # Required fields: the generated constructor refuses None for them.
    kwargs = {attr: (obj.get(json_name) if obj.get(json_name) is not None else None)
              for attr, json_name in cls.attribute_map.items()}
    try:
        cls(**kwargs)
    except ValueError as e:
        fail(where, str(e))


def render(path):
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", path], check=True, capture_output=True,
                             text=True).stdout
        return list(yaml.safe_load_all(out))
    # No kubectl: the kustomization's own resource files, unrendered.
    with open(os.path.join(path, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    docs = []
    for r in kust.get("resources", []):
        p = os.path.join(path, r)
        if os.path.isdir(p):
            return None
        with open(p) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    return docs


def check_server(name, docs):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sts = by_kind["StatefulSet"][0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    where = f"{name}: StatefulSet {sts['metadata']['name']}"
    if not pod.get("hostNetwork") or pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
        fail(where, "needs hostNetwork: true with dnsPolicy: ClusterFirstWithHostNet")
    res = c.get("resources", {})
    if res.get("requests") != res.get("limits"):
        fail(where, "requests != limits: not Guaranteed QoS")
    cpu = str(res.get("limits", {}).get("cpu", ""))
    if not re.fullmatch(r"[1-9][0-9]*", cpu):
        fail(where, f"cpu {cpu!r} is not a whole number of CPUs (static CPU manager)")
    env = {e["name"]: e for e in c.get("env", [])}
    idx = env.get("QSIG_SHARD_INDEX", {}).get("valueFrom", {}).get("fieldRef", {})
    if idx.get("fieldPath") != "metadata.labels['apps.kubernetes.io/pod-index']":
        fail(where, "QSIG_SHARD_INDEX must come from the pod-index label (the ordinal)")
    if "feed.shard.index=$(QSIG_SHARD_INDEX)" not in c.get("args", []):
        fail(where, "args must set feed.shard.index=$(QSIG_SHARD_INDEX)")
    ann = spec["template"]["metadata"].get("annotations", {})
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(
            ports.get("metrics")):
        fail(where, "Prometheus scrape annotations must name the metrics port")
    svc = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == spec["serviceName"]]
    if not svc or svc[0]["spec"].get("clusterIP") != "None":
        fail(where, f"serviceName {spec['serviceName']} is not a headless Service here")
    labels = spec["template"]["metadata"]["labels"]
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            fail(where, "the PodDisruptionBudget does not select the pods")
    # The server config: one shard per replica, addresses = the pods' DNS names.
    cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
    cm = [m for m in by_kind.get("ConfigMap", []) if m["metadata"]["name"] == cm_name]
    if not cm and shutil.which("kubectl"):
        return fail(where, f"ConfigMap {cm_name} not rendered")
    cfg = yaml.safe_load(cm[0]["data"]["qsig.yaml"]) if cm else yaml.safe_load(
        open(os.path.join(K8S, "base", "qsig.yaml")))
    shard = cfg.get("feed", {}).get("shard", {"count": 1})
    count = shard.get("count", 1)
    if count != spec["replicas"]:
        fail(where, f"replicas {spec['replicas']} != feed.shard.count {count}")
    addrs = shard.get("addresses", [])
    if count > 1:
        want = [f"{sts['metadata']['name']}-{i}.{spec['serviceName']}:{ports['grpc']}"
                for i in range(count)]
        if addrs != want:
            fail(where, f"feed.shard.addresses {addrs} != {want}")
    grpc_port = int(cfg.get("grpc", {}).get("listen", ":50051").rsplit(":", 1)[1])
    metrics_port = int(cfg.get("metrics", {}).get("listen", ":9464").rsplit(":", 1)[1])
    if grpc_port != ports["grpc"] or metrics_port != ports["metrics"]:
        fail(where, "config ports differ from the container ports")
    admin = cfg.get("admin", {})
    host = admin.get("listen", "127.0.0.1:50052").rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]") and not (
            admin.get("token_file") or admin.get("allowed_identities")):
        fail(where, "AdminService beyond loopback without credentials")


def main():
    rendered = 0
    for name in ["base", "overlays/sim-demo", "overlays/multicast-prod", "jobs"]:
        docs = render(os.path.join(K8S, name))
        if docs is None:
            print(f"k8s: {name}: SKIPPED (an overlay needs kubectl kustomize, not installed)")
            continue
        rendered += 1
        for i, d in enumerate(docs):
            key = (d.get("apiVersion"), d.get("kind"))
            if key not in KINDS:
                fail(f"{name}[{i}]", f"unexpected object {key}")
                continue
            check_object(d, KINDS[key], f"{name}: {d['kind']} {d['metadata']['name']}")
        if name == "jobs":
            job = next(d for d in docs if d["kind"] == "Job")
            with open(os.path.join(K8S, "jobs", "days.txt")) as f:
                days = [l for l in f.read().split() if l]
            if job["spec"].get("completionMode") != "Indexed":
                fail("jobs", "the per-day Job must be Indexed")
            if job["spec"].get("completions") != len(days):
                fail("jobs", f"completions {job['spec'].get('completions')} != {len(days)} days")
        else:
            check_server(name, docs)
        print(f"k8s: {name}: {len(docs)} objects checked")
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"k8s: {rendered} kustomizations valid")


main()
