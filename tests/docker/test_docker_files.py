"""The container deployment in ``docker/``, checked without a Docker engine: the
Dockerfile against hadolint, compose.yaml against the Compose specification and
against what several nodes need, nginx.conf by nginx itself."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
NODES = ("node-a", "node-b")


def tool(name: str) -> str:
    """An executable of the test extras: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} comes with the test extras: pip install -e '.[test]'"
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((DOCKER / "compose.yaml").read_text("utf-8"))
    assert isinstance(document, dict)
    return document


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, written as a mapping or as a list of KEY=value."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): str(value) for key, value in env.items()}


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "docker/Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    # hadolint fails on errors only by default; any finding printed counts here.
    assert result.stdout.strip() == "", result.stdout


def test_the_image_copies_every_package_the_project_installs() -> None:
    # pip install . fails when a package named in pyproject.toml is not in the context.
    with (ROOT / "pyproject.toml").open("rb") as file:
        packages = tomllib.load(file)["tool"]["setuptools"]["packages"]
    copied = set(re.findall(r"^COPY (\S+) \./", (DOCKER / "Dockerfile").read_text(), re.M))
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for package in {name.split(".")[0] for name in packages}:
        assert package in copied, f"docker/Dockerfile does not copy {package}/"
        assert package not in ignored, f".dockerignore leaves {package}/ out of the context"


def test_compose_file_follows_the_compose_specification() -> None:
    result = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker/compose.yaml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nodes_share_redis_and_keep_their_own_identity(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [environment(services[name]) for name in NODES]
    urls = {env["VISIO_REDIS__URL"] for env in envs}
    assert len(urls) == 1, urls
    assert urls.pop().startswith("redis://redis:")
    node_ids = [env["VISIO_REDIS__NODE_ID"] for env in envs]
    assert len(set(node_ids)) == len(node_ids), node_ids
    # Tokens minted on one node must verify on the other.
    secrets = {env["VISIO_AUTH__HS256_SECRET"] for env in envs}
    assert secrets == {"${VISIO_AUTH_SECRET:?set VISIO_AUTH_SECRET}"}
    for name in NODES:
        service = services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert (DOCKER / service["build"]["context"] / "pyproject.toml").exists()
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "healthcheck" in service
    # One storage.data_dir per process (docs/operations.md).
    volumes = [tuple(services[name]["volumes"]) for name in NODES]
    assert len(set(volumes)) == len(volumes), volumes


def test_redis_persists_its_data(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    words = command.split() if isinstance(command, str) else [str(word) for word in command]
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--appendfsync") + 1] == "everysec"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_the_balancer_publishes_a_port_in_front_of_every_node(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert lb["ports"], "the balancer must publish a port"
    assert set(lb["depends_on"]) == set(NODES)
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    conf = (DOCKER / "nginx.conf").read_text("utf-8")
    for name in NODES:
        assert re.search(rf"^\s*server {name}:8080\b", conf, re.MULTILINE), name


def test_nginx_passes_websocket_upgrades_on_ws() -> None:
    conf = (DOCKER / "nginx.conf").read_text("utf-8")
    match = re.search(r"location = /ws \{(.*?)\}", conf, re.DOTALL)
    assert match, "no location for /ws"
    ws = match.group(1)
    assert re.search(r"proxy_http_version 1\.1;", ws)
    assert re.search(r"proxy_set_header Upgrade \$http_upgrade;", ws)
    assert re.search(r'proxy_set_header Connection "upgrade";', ws)
    # A socket that waits between calls must outlive nginx's 60-second default.
    timeout = re.search(r"proxy_read_timeout (\d+)s;", ws)
    assert timeout and int(timeout.group(1)) >= 3600


def test_nginx_accepts_its_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert nginx, "nginx is installed by scripts/test.sh (Debian package nginx-light)"
    conf = (DOCKER / "nginx.conf").read_text("utf-8")
    # The node names exist on the compose network only. nginx -t binds the listening
    # socket and opens its pid and temporary paths: all must work for whoever runs
    # the tests.
    conf = re.sub(r"\bnode-[a-z]:8080\b", "127.0.0.1:8080", conf)
    conf = re.sub(r"\blisten 80\b", f"listen 127.0.0.1:{free_tcp_port()}", conf)
    conf = re.sub(r"^pid .*;$", f"pid {tmp_path / 'nginx.pid'};", conf, flags=re.MULTILINE)
    built = run(nginx, "-V").stderr
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp_path / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        if kind == "client_body" or f"--without-http_{kind}_module" not in built
    )
    conf = conf.replace("http {\n", "http {\n" + temp_paths, 1)
    copy = tmp_path / "nginx.conf"
    copy.write_text(conf, "utf-8")
    result = run(nginx, "-t", "-q", "-e", "stderr", "-p", f"{tmp_path}/", "-c", str(copy))
    assert result.returncode == 0, result.stderr
    # -q leaves warnings only: none are expected.
    assert result.stderr.strip() == "", result.stderr
