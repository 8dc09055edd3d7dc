"""Checks the deployment files in deploy/ without a cluster or a Docker daemon.

Usage: python check_deploy.py <repo root> <file to write the ConfigMap's mistralrs.toml to>

- every Kubernetes manifest against the Kubernetes 1.37 schemas (kubernetes-validate,
  strict: unknown fields fail); the ServiceMonitor and the Kustomization have no
  schema there and get the cross-checks below only;
- docker-compose.yml against the Compose specification's schema (check-jsonschema's
  vendored copy);
- a broken copy of each fails, so neither check passes vacuously;
- the files agree with each other: selectors, port names, the ConfigMap and Secret
  the Deployment mounts, the HPA's target, the grace period against
  shutdown_timeout_secs, the replicas nginx and Prometheus name.
Exits non-zero with a message on the first problem.
"""
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

VERSION = "1.37.0"


def k8s_errors(doc):
    try:
        kubernetes_validate.validate(doc, VERSION, strict=True)
        return None
    except kubernetes_validate.ValidationError as e:
        return str(e)


def compose_errors(path):
    checker = pathlib.Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(path)],
                         capture_output=True, text=True)
    return None if out.returncode == 0 else out.stdout + out.stderr


def main(root, toml_out):
    deploy = pathlib.Path(root) / "deploy"
    k8s = deploy / "k8s"
    docs = {}
    for path in sorted(k8s.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"] if "metadata" in doc else path.name)] = doc
            if doc["kind"] in ("ServiceMonitor", "Kustomization"):
                continue
            error = k8s_errors(doc)
            assert error is None, f"{path.name}: {error}"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    files = sorted(p.name for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files, (kustomization["resources"], files)

    deployment = docs[("Deployment", "mistralrs")]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "three"
    assert k8s_errors(broken) is not None, "a broken Deployment passed the schema"

    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    service = docs[("Service", "mistralrs")]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    monitor = docs[("ServiceMonitor", "mistralrs")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    hpa = docs[("HorizontalPodAutoscaler", "mistralrs")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "cpu" in container["resources"]["requests"], "the HPA on CPU needs a CPU request"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    configmap = docs[("ConfigMap", volumes["config"]["configMap"]["name"])]
    secret = docs[("Secret", container["envFrom"][0]["secretRef"]["name"])]
    assert "MISTRALRS_MCP_API_KEYS" in secret["stringData"]
    settings = tomllib.loads(configmap["data"]["mistralrs.toml"])
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings["shutdown_timeout_secs"] + pause, (grace, settings["shutdown_timeout_secs"], pause)
    redis_host = re.match(r"redis://([^:/]+)", settings["http_mcp"]["rate_limit"]["redis_url"]).group(1)
    assert ("Service", redis_host) in docs, f"no Service {redis_host} for redis_url"
    pathlib.Path(toml_out).write_text(configmap["data"]["mistralrs.toml"])

    compose_path = deploy / "docker-compose.yml"
    error = compose_errors(compose_path)
    assert error is None, error
    with tempfile.TemporaryDirectory() as tmp:
        broken_compose = pathlib.Path(tmp) / "docker-compose.yml"
        broken_compose.write_text(compose_path.read_text() + "\nservics: {}\n")
        assert compose_errors(broken_compose) is not None, "a broken compose file passed"
    compose = yaml.safe_load(compose_path.read_text())
    replicas = sorted(name for name in compose["services"] if name.startswith("replica-"))
    assert len(replicas) == 3, replicas
    for name in replicas:
        env = compose["services"][name]["environment"]
        assert env["MISTRALRS_REPLICA_ID"] == name, name
    nginx = (deploy / "nginx" / "nginx.conf").read_text()
    for name in replicas:
        assert f'"~^{name}\\." ' in nginx, f"nginx routes no sessions to {name}"
        assert f"server {name}:4322;" in nginx and f"server {name}:1234;" in nginx, name
    prometheus = yaml.safe_load((deploy / "prometheus" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == [f"{name}:1234" for name in replicas], targets
    assert prometheus["scrape_configs"][0]["job_name"] == "mistralrs", "the dashboard's `up{job}`"
    print("deploy files ok:", len(docs), "Kubernetes objects, compose with", len(compose["services"]), "services")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
