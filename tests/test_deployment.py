"""The deployment files say what the code does: docker-compose.yaml, deploy/Caddyfile
and the Kubernetes example in docs/deployment.md use real flags, real config keys
and real endpoints, and their timeouts leave room for a drain (no Docker engine
here: this is what can be checked without one)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from proxy import health
from proxy.app import DRAIN_FLUSH_S, create_app
from proxy.cli import _add_serve
from proxy.config import Settings, load_settings
from proxy.serving import workers_problem

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
CADDYFILE = (ROOT / "deploy" / "Caddyfile").read_text()
K8S = [
    doc
    for block in re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "deployment.md").read_text(), re.S)
    for doc in yaml.safe_load_all(block)
    if doc
]


def serve_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    _add_serve(parser)
    return parser.parse_args(argv)


def config_key(name: str) -> None:
    """``MEMPROXY_A__B`` names a real settings field ``a.b`` (or fails)."""
    assert name.startswith("MEMPROXY_"), name
    model: type[BaseModel] = Settings
    parts = name.removeprefix("MEMPROXY_").lower().split("__")
    for i, part in enumerate(parts):
        assert part in model.model_fields, f"{name}: no setting {'.'.join(parts[: i + 1])}"
        annotation = model.model_fields[part].annotation
        if i < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
            model = annotation


def routes() -> set[str]:
    """The probe endpoints the app serves (proxy/health.py's router, included by create_app)."""
    create_app(Settings())
    return {getattr(r, "path", "") for r in health.router.routes}


def memproxy_services() -> dict[str, Any]:
    return {name: s for name, s in COMPOSE["services"].items() if name.startswith("memproxy")}


def test_compose_runs_two_replicas_on_one_chroma_server_behind_caddy() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"chroma", "memproxy-a", "memproxy-b", "proxy"}
    replicas = memproxy_services()
    data_volumes = set()
    for name, service in replicas.items():
        assert service["build"] == "." and (ROOT / "Dockerfile").is_file()
        args = serve_args(service["command"])
        env = service["environment"]
        for key in env:
            config_key(key)
        assert env["MEMPROXY_MEMORY__CHROMA_URL"] == "http://chroma:8000"  # the service below, on its port
        assert workers_problem(args.workers, env["MEMPROXY_MEMORY__CHROMA_URL"]) is None
        assert args.workers > 1
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > args.drain_timeout + DRAIN_FLUSH_S, f"{name}: the drain may be cut short"
        data = [v for v in service["volumes"] if v.endswith(":/data")]
        assert len(data) == 1, f"{name}: its journal needs a volume of its own"
        data_volumes.add(data[0])
        assert service["depends_on"] == ["chroma"]
    assert len(data_volumes) == len(replicas) == 2
    assert "/data" in " ".join(services["chroma"]["volumes"])
    for volume in data_volumes:
        assert volume.split(":")[0] in COMPOSE["volumes"]


def test_the_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = memproxy_services()["memproxy-a"]["environment"]
    monkeypatch.setenv("MEMPROXY_HOST", "0.0.0.0")  # the Dockerfile's
    for key, value in env.items():
        monkeypatch.setenv(key, re.sub(r"\$\{[^}]*\}", "http://llm:8080/v1", str(value)))
    settings = load_settings()
    assert settings.memory.chroma_url == "http://chroma:8000"
    assert settings.resolved_auth_mode() == "keys"  # on 0.0.0.0 the safe default needs keys: set
    assert settings.auth.keys_file == "/keys/keys.sqlite3"
    assert re.search(r"mkdir /data /keys && chown memproxy /data /keys", (ROOT / "Dockerfile").read_text())


def test_caddy_routes_to_both_replicas_by_readiness_and_streams() -> None:
    published = COMPOSE["services"]["proxy"]["ports"][0].split(":")[-1]
    assert f":{published} {{" in CADDYFILE
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in COMPOSE["services"]["proxy"]["volumes"]
    assert "reverse_proxy memproxy-a:8000 memproxy-b:8000 {" in CADDYFILE
    health = re.search(r"health_uri (\S+)", CADDYFILE)
    assert health and health.group(1) == "/readyz" and "/readyz" in routes()
    assert "flush_interval -1" in CADDYFILE


def test_the_kubernetes_example_uses_real_probes_flags_and_keys() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in K8S}
    assert kinds == {("Service", "chroma"), ("StatefulSet", "chroma"), ("Service", "memproxy"), ("StatefulSet", "memproxy")}
    memproxy = next(d for d in K8S if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "memproxy")
    pod = memproxy["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = serve_args(container["args"])
    env = {e["name"]: e["value"] for e in container["env"]}
    for key in env:
        config_key(key)
    assert workers_problem(args.workers, env["MEMPROXY_MEMORY__CHROMA_URL"]) is None
    chroma_port = next(d for d in K8S if d["kind"] == "Service" and d["metadata"]["name"] == "chroma")["spec"]["ports"][0]["port"]
    assert env["MEMPROXY_MEMORY__CHROMA_URL"] == f"http://chroma:{chroma_port}"
    paths = routes()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe")} <= paths
    assert pod["terminationGracePeriodSeconds"] > args.drain_timeout + DRAIN_FLUSH_S
    [claim] = memproxy["spec"]["volumeClaimTemplates"]  # a journal volume per replica
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
