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
    secrets = ("SPOTIFY_CLIENT_SECRET", "LASTFM_API_KEY", "TUNEGATE_ADMIN_TOKEN")
    for name in (*secrets, "TUNEGATE_TOKEN_KEY", "TUNEGATE_API_KEYS"):
        assert gw["environment"][name] == "${" + name + ":-}"
    # Every variable given to the gateway is one the library or the service reads.
    source = "\n".join(p.read_text() for p in (DEPLOY.parent / "src/tunegate").rglob("*.py"))
    for name in gw["environment"]:
        assert f'"{name}"' in source, name


def test_rabbitmq_is_there_for_the_workers() -> None:
    data = _compose()
    services = data["services"]
    mq = services["rabbitmq"]
    image, _, tag = mq["image"].partition(":")
    assert image == "rabbitmq"
    assert tag.split("-")[0].replace(".", "").isdigit()  # a pinned version, not latest
    assert "management" in tag
    assert {"5672:5672", "15672:15672"} <= set(mq["ports"])  # AMQP, management UI
    assert mq["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    env = mq["environment"]
    # The password has no default: compose refuses to start without one.
    assert env["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_DEFAULT_PASS:?")
    assert env["RABBITMQ_DEFAULT_USER"].startswith("${RABBITMQ_DEFAULT_USER:-")
    plugins = (DEPLOY / "rabbitmq/enabled_plugins").read_text().strip()
    assert re.fullmatch(r"\[[a-z_,\s]+\]\.", plugins), plugins  # an Erlang list term
    enabled = {p.strip() for p in plugins[1:-2].split(",")}
    assert enabled == {"rabbitmq_management", "rabbitmq_prometheus"}
    mounts = dict(v.split(":")[:2] for v in mq["volumes"])
    assert mounts["./rabbitmq/enabled_plugins"] == "/etc/rabbitmq/enabled_plugins"
    assert mounts["rabbitmq-data"] == "/var/lib/rabbitmq"
    assert "rabbitmq-data" in data["volumes"]
    assert mq["hostname"] == "rabbitmq"  # the data directory is named after the node
    # The gateway serves without the broker (workers join later): no dependency on it.
    assert "rabbitmq" not in services["gateway"]["depends_on"]


def test_the_stop_grace_period_outlasts_the_drain() -> None:
    from tunegate.service import ServiceOptions

    gw = _compose()["services"]["gateway"]
    drain = ServiceOptions.from_env({"TUNEGATE_DRAIN": gw["environment"]["TUNEGATE_DRAIN"]}).drain
    grace = re.fullmatch(r"(\d+)s", gw["stop_grace_period"])
    assert grace is not None
    assert int(grace.group(1)) > drain  # docker's SIGKILL comes after the drain, not during


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
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert set(jobs) == {"tunegate", "rabbitmq"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        for target in job["static_configs"][0]["targets"]:
            assert target.split(":")[0] in services  # a service of this compose file
    assert jobs["tunegate"]["static_configs"][0]["targets"] == [f"gateway:{port}"]
    # rabbitmq_prometheus's port; it needs no host port, Prometheus is on the same network.
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    assert "9090:9090" in services["prometheus"]["ports"]
    assert {"gateway", "rabbitmq"} <= set(services["prometheus"]["depends_on"])


def test_every_mounted_file_exists_and_grafana_is_provisioned() -> None:
    data = _compose()
    services = data["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):  # a file or directory of deploy/
                assert (DEPLOY / source).exists(), (name, source)
            else:  # a named volume: declared at the top level
                assert source in data.get("volumes", {}), (name, source)
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
