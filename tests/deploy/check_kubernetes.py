"""Checks deploy/: renders the Helm chart with Helm's own Go SDK (the
helm-python-sdk wheel, offline), lints it, and validates every manifest
against the Kubernetes API schemas (kubernetes-validate, offline, strict).

    check_kubernetes.py DEPLOY_DIR [--write]

--write regenerates deploy/kubernetes/tracer-agent.yaml (the plain
manifest: a Namespace, then the chart rendered with its defaults).
Prints one line per problem and exits 1 if there is any.
"""

import pathlib
import subprocess
import sys
import tempfile

import helm_python
import yaml

RELEASE = "tracer-agent"
NAMESPACE = "tracer-agent"
KUBERNETES_VERSION = "1.33.0"

NAMESPACE_DOC = f"""# The plain manifest: `kubectl apply -f` this file. It is the Helm chart
# (deploy/helm/tracer-agent) rendered with its defaults; regenerate it with
# `python3 tests/deploy/check_kubernetes.py deploy --write`.
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
"""

# Values that turn on every optional part of the chart.
EVERYTHING = {
    "otlp": {
        "endpoint": "https://otel-collector.observability:4318",
        "protocol": "http/protobuf",
        "tlsSecret": "otlp-tls",
        "clientCertificate": True,
        "headersSecret": "otlp-headers",
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "viewer": {"port": 9465, "tokenSecret": "viewer-token"},
    "owners": '[[team]]\nname = "payments"\nservices = ["checkout*"]\n',
    "extraArgs": ["--inject-traceparent", "off"],
}

# Kinds whose schemas are not Kubernetes' own (CRDs of operators).
CUSTOM_KINDS = {"ServiceMonitor"}


def render(chart, values):
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return "".join(
        text.strip() + "\n---\n"
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml") and text.strip()
    )


def validate(text, label, problems):
    """kubernetes-validate --strict on each document of `text`."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for n, doc in enumerate(d for d in yaml.safe_load_all(text) if d):
            if doc.get("kind") in CUSTOM_KINDS:
                check_service_monitor(doc, label, problems)
                continue
            path = pathlib.Path(tmp) / f"{n}-{doc['kind']}.yaml"
            path.write_text(yaml.safe_dump(doc))
            files.append(str(path))
        result = subprocess.run(
            [
                str(pathlib.Path(sys.executable).parent / "kubernetes-validate"),
                "--strict",
                "--no-warn",
                "-k",
                KUBERNETES_VERSION,
                *files,
            ],
            capture_output=True,
            text=True,
        )
        for line in (result.stdout + result.stderr).splitlines():
            if line.startswith("ERROR") or "error" in line.lower():
                problems.append(f"{label}: {line}")
        if result.returncode != 0 and not problems:
            problems.append(f"{label}: kubernetes-validate exited {result.returncode}")


def check_service_monitor(doc, label, problems):
    """The fields the Prometheus Operator's CRD requires, by hand."""
    spec = doc.get("spec", {})
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{label}: ServiceMonitor apiVersion {doc.get('apiVersion')}")
    if not spec.get("selector", {}).get("matchLabels"):
        problems.append(f"{label}: ServiceMonitor selects nothing")
    if not all(e.get("port") for e in spec.get("endpoints", [])):
        problems.append(f"{label}: ServiceMonitor endpoint without a port")


def main():
    deploy = pathlib.Path(sys.argv[1])
    chart_dir = deploy / "helm" / "tracer-agent"
    plain = deploy / "kubernetes" / "tracer-agent.yaml"
    problems = []

    report = helm_python.lint(str(chart_dir), strict=True)
    for message in report["messages"]:
        if message["severity"] >= 2:
            problems.append(f"helm lint: {message['path']}: {message['error']}")
    problems += [f"helm lint: {e}" for e in report["errors"]]

    chart = helm_python.Chart.load(str(chart_dir))
    defaults = NAMESPACE_DOC + "---\n" + render(chart, None)
    if "--write" in sys.argv:
        plain.parent.mkdir(parents=True, exist_ok=True)
        plain.write_text(defaults)
    elif plain.read_text() != defaults:
        problems.append(
            f"{plain} is not the chart rendered with its defaults: run "
            "`python3 tests/deploy/check_kubernetes.py deploy --write`"
        )
    validate(plain.read_text(), str(plain), problems)
    everything = render(chart, EVERYTHING)
    validate(everything, "chart with every option", problems)
    kinds = {d["kind"] for d in yaml.safe_load_all(everything) if d}
    for kind in [
        "DaemonSet",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
        "ServiceMonitor",
    ]:
        if kind not in kinds:
            problems.append(f"chart with every option: no {kind}")

    # A viewer on the node's address without a token is refused.
    try:
        render(chart, {"viewer": {"port": 9465}})
        problems.append("chart: viewer.port without viewer.tokenSecret rendered")
    except helm_python.HelmError as e:
        if "needs a token" not in str(e):
            problems.append(f"chart: viewer without token: unexpected error {e}")

    for problem in problems:
        print(problem)
    print(f"{len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
