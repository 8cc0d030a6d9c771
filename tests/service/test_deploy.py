"""deploy/: the compose file, the Prometheus scrape config, the Grafana provisioning and
dashboard are read (YAML, JSON) and checked against each other, against the Dockerfile and
against the CLI and the live service: the gateway's command is one ``tunegate serve``
accepts, ports agree everywhere, every file a volume mounts exists, and every metric the
dashboard plots is one the service exposes. (No Docker engine runs on this machine, so
nothing is built or started here.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Factory

yaml = pytest.importorskip("yaml", reason="pyyaml is in the test extra")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_has_the_standalone_services() -> None:
    services = _compose()["services"]
    assert set(services) == {"gateway", "redis", "rabbitmq", "prometheus", "grafana"}
    gw = services["gateway"]
    assert gw["environment"]["TUNEGATE_REDIS_URL"].startswith("redis://redis:6379")
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    # No secret is written in the file: each comes from the environment.
    for name in ("SPOTIFY_CLIENT_SECRET", "LASTFM_API_KEY", "TUNEGATE_ADMIN_TOKEN"):
        assert gw["environment"][name] == "${" + name + ":-}"


def test_the_gateway_command_is_one_the_cli_accepts_and_ports_agree() -> None:
    services = _compose()["services"]
    gw = services["gateway"]
    command = gw["command"]
    assert command[0] == "serve"
    port = _option(command, "--port")
    assert _option(command, "--host") == "0.0.0.0"
    assert gw["ports"] == [f"{port}:{port}"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(gw["healthcheck"]["test"])
    out = subprocess.run(
        [sys.executable, "-m", "tunegate", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for flag in (c for c in command if c.startswith("--")):
        assert flag in out.stdout, flag
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert cmd == command
    assert re.search(r'^ENTRYPOINT \["tunegate"\]$', dockerfile, re.M)
    assert (DEPLOY.parent / gw["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_prometheus_scrapes_the_gateway() -> None:
    services = _compose()["services"]
    port = _option(services["gateway"]["command"], "--port")
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"gateway:{port}"]
    assert "9090:9090" in services["prometheus"]["ports"]


def test_every_mounted_file_exists_and_grafana_is_provisioned() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (DEPLOY / source).exists(), (name, source)
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090"
    boards = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tunegate.yml").read_text())
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert boards["providers"][0]["options"]["path"] in mounted


def _dashboard() -> dict[str, Any]:
    data = json.loads((DEPLOY / "grafana/dashboards/tunegate.json").read_text())
    assert isinstance(data, dict)
    return data


def test_dashboard_plots_only_metrics_the_service_exposes(
    service: Factory, track: dict[str, str]
) -> None:
    board = _dashboard()
    uid = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]["uid"]
    exprs = []
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == uid
        exprs += [t["expr"] for t in panel["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b([a-z_]+)(?=[\[{\s)]|$)", e)}
    names -= {"sum", "by", "rate", "histogram_quantile", "le", "provider", "status", "result"}
    names -= {"route", "reason"}
    assert len(names) >= 8
    with service() as c:
        c.get(f"/v1/spotify/tracks/{track['id']}")
        c.get(f"/v1/spotify/tracks/{track['id']}")
        exposed = c.get("/metrics").text
    for name in sorted(names):
        assert re.search(rf"^(# TYPE )?{name}\b", exposed, re.M), name
