"""The production deployment files (``deploy/``), checked statically against the code they deploy.

No container runtime or cluster exists on the build machines, so: every YAML parses; Compose's
services, images, ports, volumes, networks, secrets and environment agree with the settings the
code reads (``Settings``, the client's variables, the hub configs' ``SANDBOX_*`` variables) and
with each other; the gateway's Helm chart renders with Helm's own Go SDK (``helm-python-sdk``,
pinned in the dev extra) and lints clean; the Zero to JupyterHub values name the chart's Service,
port, labels and token secret. Renaming a setting in the code without ``deploy/`` fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from traitlets.config import Config

from sandbox.api.app import create_app
from sandbox.client.client import URL_VARIABLE
from sandbox.settings import SECRETS_DIR_VARIABLE, Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"
CHART = DEPLOY / "kubernetes" / "sandbox-gateway"
HUB_VALUES = DEPLOY / "kubernetes" / "jupyterhub-values.yaml"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
SETTINGS_VARIABLES = {f"SANDBOX_{name.upper()}" for name in Settings.model_fields}
SECRET_FILES = {f"sandbox_{name}" for name in Settings.model_fields}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dockerfile_targets() -> set[str]:
    return set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.M))


def variables_read_by(path: Path) -> set[str]:
    """The ``SANDBOX_*`` environment variables a hub config file reads."""
    text = path.read_text(encoding="utf-8")
    return set(re.findall(r"""(?:E|os\.environ\.get|os\.environ)[(\[]"(SANDBOX_[A-Z_]+)\"""", text))


def assert_gateway_image(image: str) -> None:
    name, tag = image.rsplit(":", 1)
    assert tag == VERSION, image
    assert name.removeprefix("sandbox-") in dockerfile_targets(), image


# -- every YAML file ---------------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = [p for p in DEPLOY.rglob("*.y*ml") if "templates" not in p.parts]
    assert len(files) >= 12
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        assert documents and all(d is not None for d in documents), path


def test_images_are_built_by_the_dockerfile_at_the_package_version() -> None:
    assert dockerfile_targets() == {"source", "gateway", "hub", "singleuser"}
    compose = load(COMPOSE / "compose.yaml")
    images = {service["image"] for service in compose["services"].values()}
    sandbox_images = {image for image in images if image.startswith("sandbox-")}
    assert sandbox_images == {f"sandbox-{t}:{VERSION}" for t in ("gateway", "hub", "singleuser")}
    for service in compose["services"].values():
        if "build" in service:
            assert service["image"] == f"sandbox-{service['build']['target']}:{VERSION}"
            dockerfile = COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]
            assert dockerfile.resolve() == DOCKERFILE
    assert load(CHART / "Chart.yaml")["appVersion"] == VERSION
    values = load(CHART / "values.yaml")
    assert_gateway_image(f"{values['image']['repository']}:{values['image']['tag']}")
    singleuser = load(HUB_VALUES)["singleuser"]["image"]
    assert f"{singleuser['name']}:{singleuser['tag']}" == f"sandbox-singleuser:{VERSION}"


# -- Compose ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load(COMPOSE / "compose.yaml")
    return document


def gateway_like(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the sandbox package (gateway image)."""
    return {n: s for n, s in compose["services"].items() if s["image"].startswith("sandbox-gateway:")}


def test_compose_services_and_replicas(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "gateway", "hub", "registrar", "singleuser"}
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["sandbox", "db", "upgrade"]


def test_compose_settings_are_settings_the_code_reads(compose: dict[str, Any]) -> None:
    for name, service in gateway_like(compose).items():
        environment = service["environment"]
        unknown = set(environment) - SETTINGS_VARIABLES - {SECRETS_DIR_VARIABLE}
        assert unknown == set(), (name, unknown)
        settings = Settings(
            **{
                k.removeprefix("SANDBOX_").lower(): v
                for k, v in environment.items()
                if k in SETTINGS_VARIABLES
            }
        )
        assert settings.auth_mode == "jupyterhub"
        assert set(service["secrets"]) <= SECRET_FILES, name
        assert environment[SECRETS_DIR_VARIABLE] == "/run/secrets"  # where Compose mounts secrets
    gateway_secrets = set(compose["services"]["gateway"]["secrets"])
    assert gateway_secrets == {"sandbox_db_url", "sandbox_hub_api_token"}
    hub = compose["services"]["hub"]["environment"]
    read = variables_read_by(DEPLOY / "local" / "jupyterhub_config.py") | variables_read_by(
        COMPOSE / "jupyterhub_config.py"
    )
    assert set(hub) <= read, set(hub) - read


def test_compose_secrets_all_declared_all_used(compose: dict[str, Any]) -> None:
    used = {name for service in compose["services"].values() for name in service.get("secrets", [])}
    assert used == set(compose["secrets"])
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "!README.md" in (COMPOSE / "secrets" / ".gitignore").read_text(encoding="utf-8")
    readme = (COMPOSE / "secrets" / "README.md").read_text(encoding="utf-8")
    assert all(f"> {name}" in readme for name in compose["secrets"])  # each one has its recipe


def test_compose_data_only_in_the_gateway_and_read_only(compose: dict[str, Any]) -> None:
    home = Settings(home=compose["services"]["gateway"]["environment"]["SANDBOX_HOME"])
    mounts: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            mounts.setdefault(source, []).append(f"{name}:{rest}")
    assert mounts["datasets"] == [
        f"gateway:{home.datasets_dir}:ro",
        f"registrar:{home.datasets_dir}",
    ]
    assert mounts["state"] == ["postgres:/var/lib/postgresql/data"]
    assert "volumes" not in compose["services"]["singleuser"]


def test_compose_networks_keep_users_from_the_state_store(compose: dict[str, Any]) -> None:
    networks = compose["networks"]
    services = compose["services"]
    assert networks["users"]["internal"] is True and networks["state"]["internal"] is True
    on = {name: set(service.get("networks", [])) for name, service in services.items()}
    assert on["postgres"] == on["redis"] == {"state"}
    assert on["singleuser"] == {"users"}
    assert on["gateway"] == {"users", "state"}
    assert "state" not in on["hub"]
    assert services["hub"]["environment"]["SANDBOX_COMPOSE_USERS_NETWORK"] == networks["users"]["name"]
    assert (
        services["hub"]["environment"]["SANDBOX_COMPOSE_SINGLEUSER_IMAGE"] == services["singleuser"]["image"]
    )


def test_compose_ports_and_service_names_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["gateway"]["command"]
    port = int(command[command.index("--port") + 1])
    gateway_url = urlsplit(services["hub"]["environment"]["SANDBOX_COMPOSE_GATEWAY_URL"])
    assert (gateway_url.hostname, gateway_url.port) == ("gateway", port)
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])
    redis = urlsplit(services["gateway"]["environment"]["SANDBOX_RATE_LIMIT_REDIS_URL"])
    assert redis.hostname in services and redis.port == 6379
    hub_api = urlsplit(services["gateway"]["environment"]["SANDBOX_HUB_API_URL"])
    assert hub_api.hostname in services and hub_api.hostname == "hub"
    assert services["hub"]["ports"] == ["8000:8000"]
    assert "/healthz" in routes()


def routes() -> set[str]:
    """The gateway's HTTP paths (its OpenAPI document)."""
    return set(create_app(Settings(home="/nonexistent")).openapi()["paths"])


@pytest.fixture(scope="module")
def compose_hub(compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The hub's effective configuration: the Compose config over the local one, executed as
    JupyterHub would, with the Compose environment and stand-in secret files."""
    secrets = tmp_path_factory.mktemp("secrets")
    for name in compose["secrets"]:
        (secrets / name).write_text("00" * 32 + "\n", encoding="utf-8")
    state = tmp_path_factory.mktemp("hub-state")
    environment = {
        **compose["services"]["hub"]["environment"],
        "SANDBOX_LOCAL_STATE": str(state),
        "SANDBOX_LOCAL_DIRECTORY": str(COMPOSE / "directory.json"),
        "SANDBOX_COMPOSE_SECRETS_DIR": str(secrets),
    }
    config = Config()

    def load_subconfig(_path: str) -> None:
        run(DEPLOY / "local" / "jupyterhub_config.py")

    def run(path: Path) -> None:
        namespace = {"get_config": lambda: config, "load_subconfig": load_subconfig, "__file__": str(path)}
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)

    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        run(COMPOSE / "jupyterhub_config.py")
    return config


def test_compose_hub_serves_the_gateway_under_its_service_name(
    compose: dict[str, Any], compose_hub: Config
) -> None:
    gateway = compose["services"]["gateway"]["environment"]
    (service,) = compose_hub.JupyterHub.services
    assert service["name"] == gateway["SANDBOX_HUB_SERVICE_NAME"]
    assert service["url"] == compose["services"]["hub"]["environment"]["SANDBOX_COMPOSE_GATEWAY_URL"]
    assert gateway["SANDBOX_SERVICE_PREFIX"] == f"/services/{service['name']}/"
    assert "command" not in service  # an external service: Compose runs the replicas
    roles = {role["name"]: role for role in compose_hub.JupyterHub.load_roles}
    assert roles["sandbox-gateway"]["services"] == [service["name"]]
    assert f"access:services!service={service['name']}" in roles["sandbox-analyst"]["scopes"]
    assert urlsplit(compose_hub.JupyterHub.hub_bind_url).port == urlsplit(gateway["SANDBOX_HUB_API_URL"]).port


def test_compose_hub_spawns_users_on_the_internal_network_only(
    compose: dict[str, Any], compose_hub: Config
) -> None:
    spawner = compose_hub.DockerSpawner
    assert compose_hub.JupyterHub.spawner_class == "docker"
    assert spawner.network_name == compose["networks"]["users"]["name"]
    assert spawner.image == compose["services"]["singleuser"]["image"]
    assert spawner.remove is True
    environment = compose_hub.Spawner.environment
    assert set(environment) == {URL_VARIABLE}
    url = urlsplit(environment[URL_VARIABLE])
    assert url.hostname == "hub" and url.path == f"/services/{compose_hub.JupyterHub.services[0]['name']}/"
    assert compose_hub.Spawner.args == []


# -- Kubernetes: the gateway chart and the Zero to JupyterHub values ---------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) renders the chart")
    manifests = helm.Chart.load(str(CHART)).render(name="sandbox", namespace="sandbox", is_install=True)
    documents = [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]
    assert documents
    return documents


def of_kind(rendered: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered if d["kind"] == kind]


def test_chart_lints_clean() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (dev extra) lints the chart")
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_gateway_deployment(rendered: list[dict[str, Any]]) -> None:
    (deployment,) = of_kind(rendered, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert_gateway_image(container["image"])
    environment = {e["name"]: e["value"] for e in container["env"]}
    assert set(environment) - SETTINGS_VARIABLES == {SECRETS_DIR_VARIABLE}
    Settings(
        **{k.removeprefix("SANDBOX_").lower(): v for k, v in environment.items() if k in SETTINGS_VARIABLES}
    )
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    home = Settings(home=environment["SANDBOX_HOME"])
    assert mounts["datasets"] == {"name": "datasets", "mountPath": str(home.datasets_dir), "readOnly": True}
    assert volumes["datasets"]["persistentVolumeClaim"]["readOnly"] is True
    assert mounts["secrets"]["mountPath"] == environment[SECRETS_DIR_VARIABLE]
    files = {i["path"] for s in volumes["secrets"]["projected"]["sources"] for i in s["secret"]["items"]}
    assert files == {"sandbox_db_url", "sandbox_hub_api_token"} and files <= SECRET_FILES
    port = int(container["command"][container["command"].index("--port") + 1])
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"]["path"] in routes()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["workingDir"].startswith(str(home.home_dir))


def test_chart_migrations_run_before_the_gateway(rendered: list[dict[str, Any]]) -> None:
    (job,) = of_kind(rendered, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sandbox", "db", "upgrade"]
    assert {e["name"] for e in container["env"]} - SETTINGS_VARIABLES == {SECRETS_DIR_VARIABLE}


def test_chart_network_policies(rendered: list[dict[str, Any]]) -> None:
    (deployment,) = of_kind(rendered, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    values = load(CHART / "values.yaml")
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(rendered, "NetworkPolicy")}
    gateway = policies["sandbox-gateway"]
    assert gateway["podSelector"]["matchLabels"].items() <= labels.items()
    sources = [peer["podSelector"]["matchLabels"] for peer in gateway["ingress"][0]["from"]]
    assert sources == [{"component": "singleuser-server"}, {"component": "proxy"}]
    egress_ports = {port["port"] for rule in gateway["egress"] for port in rule["ports"]}
    assert egress_ports == {8081, values["postgresql"]["port"], values["redis"]["port"], 53}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    redis = urlsplit({e["name"]: e["value"] for e in container["env"]}["SANDBOX_RATE_LIMIT_REDIS_URL"])
    assert redis.port == values["redis"]["port"]
    state = policies["sandbox-gateway-state-store"]
    assert state["podSelector"]["matchLabels"] == values["postgresql"]["podSelector"]
    (rule,) = state["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= labels.items()
    assert labels["hub.jupyter.org/network-access-hub"] == "true"  # z2jh's hub admits the gateway


def test_jupyterhub_values_point_at_the_chart(rendered: list[dict[str, Any]]) -> None:
    values = load(HUB_VALUES)
    chart = load(CHART / "values.yaml")
    (service,) = of_kind(rendered, "Service")
    (deployment,) = of_kind(rendered, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    port = service["spec"]["ports"][0]["port"]
    name = chart["jupyterhub"]["serviceName"]
    assert set(values["hub"]["services"]) == {name}
    url = urlsplit(values["hub"]["services"][name]["url"])
    assert (url.hostname, url.port) == (service["metadata"]["name"], port)
    assert chart["jupyterhub"]["apiTokenSecret"] == {"name": "hub", "key": f"hub.services.{name}.apiToken"}
    roles = values["hub"]["loadRoles"]
    assert roles["sandbox-gateway"]["services"] == [name]
    assert f"access:services!service={name}" in roles["sandbox-analyst"]["scopes"]
    singleuser = values["singleuser"]
    assert set(singleuser["extraEnv"]) == {URL_VARIABLE}
    gateway_url = urlsplit(singleuser["extraEnv"][URL_VARIABLE])
    assert (gateway_url.hostname, gateway_url.port) == (service["metadata"]["name"], port)
    policy = singleuser["networkPolicy"]
    assert policy["enabled"] is True
    assert policy["egressAllowRules"]["privateIPs"] is False
    assert policy["egressAllowRules"]["nonPrivateIPs"] is False
    assert policy["egressAllowRules"]["cloudMetadataServer"] is False
    (rule,) = policy["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert rule["ports"] == [{"port": port}]
    (proxy_rule,) = values["proxy"]["chp"]["networkPolicy"]["egress"]
    assert proxy_rule["to"][0]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_local_and_kubernetes_hubs_grant_the_gateway_the_same_scopes(compose_hub: Config) -> None:
    roles = {role["name"]: role for role in compose_hub.JupyterHub.load_roles}
    values = load(HUB_VALUES)["hub"]["loadRoles"]
    assert values["sandbox-gateway"]["scopes"] == roles["sandbox-gateway"]["scopes"]
