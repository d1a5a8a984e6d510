"""Deployable: the services run without the training stack; images, compose and Kubernetes manifests hold together."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TRAINING_STACK = {"lightgbm", "onnxmltools", "skl2onnx", "sklearn", "scipy", "training"}
PORTS = {"scoring": 50051, "recommendation": 50052, "segmentation": 50053}

SERVE_ALL = r"""
import json, sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import services.recommendation.__main__ as recommendation
import services.scoring.__main__ as scoring
import services.segmentation.__main__ as segmentation
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import common_pb2, recommendation_pb2 as rpb, recommendation_pb2_grpc, scoring_pb2, scoring_pb2_grpc
from tenure.v1 import segmentation_pb2 as spb, segmentation_pb2_grpc

repo, state = Path(sys.argv[1]), Path(sys.argv[2])
customer = str(FeatureSnapshot.load_latest(repo).customer_ids[0])
answers = {}
for name, module in [("scoring", scoring), ("recommendation", recommendation), ("segmentation", segmentation)]:
    service = module.make_service(ServiceSettings(models_dir=repo, state_dir=state / name), "127.0.0.1:0")
    service.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    for status in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120):
        if status.status == health_pb2.HealthCheckResponse.SERVING:
            break
    if name == "scoring":
        reply = scoring_pb2_grpc.ScoringServiceStub(channel).Score(
            scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=customer)]), timeout=60)
        answers[name] = len(reply.results)
    elif name == "recommendation":
        reply = recommendation_pb2_grpc.RecommendationServiceStub(channel).Recommend(
            rpb.RecommendRequest(customer_id=customer, k=3), timeout=60)
        answers[name] = len(reply.items)
    else:
        reply = segmentation_pb2_grpc.SegmentationServiceStub(channel).GetSegments(
            spb.GetSegmentsRequest(customer_ids=[customer]), timeout=60)
        answers[name] = len(reply.results)
    channel.close()
    service.stop(0.5)
print(json.dumps({"answers": answers, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_the_services_serve_without_loading_the_training_stack(trained_repo: Path, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", SERVE_ALL, str(trained_repo), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["answers"] == {"scoring": 1, "recommendation": 3, "segmentation": 1}
    assert "onnxruntime" in out["modules"] and "grpc" in out["modules"]
    assert not TRAINING_STACK & set(out["modules"]), "a served process loaded " + str(TRAINING_STACK & set(out["modules"]))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in _documents(K8S / name)]


def test_the_kustomization_lists_every_manifest_and_each_validates() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    for doc in _resources():
        kubernetes_validate.validate(doc, "1.37", strict=True)  # raises ValidationError, naming the field
    kinds = sorted(d["kind"] for d in _resources())
    # the three services (+ Redis: a Deployment, a Service; + a headless Service each), an autoscaler each
    assert kinds.count("Deployment") == 4 and kinds.count("Service") == 7 and kinds.count("HorizontalPodAutoscaler") == 3
    assert kinds.count("PodDisruptionBudget") == 3 and {"CronJob", "ConfigMap", "Secret", "Namespace"} <= set(kinds)
    assert {i["name"] for i in kustomization["images"]} == {"tenure-serve", "tenure-train"}


def test_every_deployment_has_grpc_probes_metrics_and_its_service_autoscaler_and_budget() -> None:
    docs = _resources()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    pvcs = {n: d["spec"]["accessModes"] for n, d in by_kind["PersistentVolumeClaim"].items()}
    assert pvcs["tenure-models"] == ["ReadWriteMany"]
    for service, port in PORTS.items():
        name = f"tenure-{service}"
        pod = by_kind["Deployment"][name]["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "tenure-serve" and container["args"][:2] == ["serve", service]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": port, "metrics": 9090}
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
        grpc_name = f"tenure.v1.{service.capitalize()}Service"
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": grpc_name}
        assert container["livenessProbe"]["grpc"] == container["startupProbe"]["grpc"] == {"port": port, "service": ""}
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
        assert "tenure-models" in claims and claims <= set(pvcs)
        selector = by_kind["Deployment"][name]["spec"]["selector"]["matchLabels"]
        assert by_kind["Service"][name]["spec"]["selector"] == selector
        assert by_kind["PodDisruptionBudget"][name]["spec"]["selector"]["matchLabels"] == selector
        assert by_kind["HorizontalPodAutoscaler"][name]["spec"]["scaleTargetRef"]["name"] == name
        assert by_kind["Service"][name]["spec"]["ports"][0]["port"] == port
    settings = by_kind["ConfigMap"]["tenure-settings"]["data"]
    assert settings["TENURE_METRICS_PORT"] == "9090" and settings["TENURE_MODELS_DIR"] == "/models"
    job = by_kind["CronJob"]["tenure-train"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["image"] == "tenure-train" and job["containers"][0]["args"][0] == "train"


def test_replicas_share_one_redis_and_clients_can_balance_over_them_through_headless_services() -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in _resources():
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    url = by_kind["ConfigMap"]["tenure-settings"]["data"]["TENURE_ONLINE_STORE"]
    match = re.fullmatch(r"redis://([a-z0-9-]+):(\d+)", url)
    assert match, url
    redis_service = by_kind["Service"][match.group(1)]
    redis = by_kind["Deployment"][match.group(1)]
    assert redis_service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    (port,) = redis_service["spec"]["ports"]
    assert port["port"] == int(match.group(2)) and port["targetPort"] in {p["name"] for p in container["ports"]}
    assert redis["spec"]["replicas"] == 1 and match.group(1) not in by_kind["HorizontalPodAutoscaler"]
    policy = by_kind["NetworkPolicy"][match.group(1)]["spec"]
    (allowed,) = policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    components = set()
    for service, grpc_port in PORTS.items():
        name = f"tenure-{service}"
        deployment = by_kind["Deployment"][name]
        assert deployment["spec"]["replicas"] > 1 and by_kind["HorizontalPodAutoscaler"][name]["spec"]["minReplicas"] > 1
        pod = deployment["spec"]["template"]
        components.add(pod["metadata"]["labels"]["app.kubernetes.io/component"])
        (c,) = pod["spec"]["containers"]
        assert {"configMapRef": {"name": "tenure-settings"}} in c["envFrom"]
        assert "TENURE_ONLINE_STORE" not in {e["name"] for e in c.get("env", [])}  # the ConfigMap's, not overridden
        headless = by_kind["Service"][f"{name}-headless"]["spec"]
        assert headless["clusterIP"] == "None" and headless["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert [(p["port"], p["targetPort"]) for p in headless["ports"]] == [(grpc_port, "grpc")]
    assert allowed["key"] == "app.kubernetes.io/component" and set(allowed["values"]) == components


def test_compose_services_share_the_redis_online_store() -> None:
    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"] and "ports" not in services["redis"]
    for name in PORTS:
        assert services[name]["environment"]["TENURE_ONLINE_STORE"] == "redis://redis:6379"
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line.strip(), re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = ""
        elif current and line.strip() and not line.lstrip().startswith("#"):
            stages[current] += line.strip() + "\n"
    return stages


def test_the_dockerfile_builds_a_slim_serving_image_and_a_training_image() -> None:
    stages = _stages((ROOT / "docker" / "Dockerfile").read_text())
    assert list(stages)[-1] == "serve"  # a plain `docker build` gives the serving image
    assert {"builder", "serve", "train"} <= set(stages)
    serve, train = stages["serve"], stages["train"]
    assert re.findall(r"tenure\[([^\]]*)\]", serve) == ["serve"]  # no LightGBM, converters, scikit-learn, SciPy
    assert re.search(r"^HEALTHCHECK .*tenure health 127\.0\.0\.1:\$\{PORT\}", serve, re.MULTILINE)
    assert re.findall(r"tenure\[([^\]]*)\]", train) == ["serve,train"] and "libgomp1" in train
    for stage in (serve, train):
        assert re.search(r"^USER (?!root)\S+", stage, re.MULTILINE)
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*" and {"!tenure/", "!services/", "!training/", "!pyproject.toml"} <= set(ignored)


def test_compose_trains_with_the_train_image_and_serves_with_the_serve_image() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["train"]["build"]["target"] == "train" and services["train"]["image"] == "tenure:train"
    for name, port in PORTS.items():
        assert services[name]["build"]["target"] == "serve" and services[name]["image"] == "tenure:serve"
        assert services[name]["command"] == ["serve", name, "--port", str(port)]
        assert services[name]["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"


def test_the_license_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "Apache-2.0"
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10_000


@pytest.mark.parametrize("extra", ["serve", "train"])
def test_the_extras_split_serving_from_training(extra: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in extras[extra]}
    stack = {"lightgbm", "onnxmltools", "skl2onnx", "scikit-learn", "scipy"}
    assert (stack <= names) if extra == "train" else not (stack & names)
