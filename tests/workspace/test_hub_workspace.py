"""End to end with a real JupyterHub (``deploy/local/jupyterhub_config.py``) started by the test.

An analyst logs in, their server is spawned and the quickstart notebook runs inside it with the
analyst's own hub token; a user outside the analyst groups is refused; a revoked policy stops the
next query. Run as root, servers run as their own Unix users and the gateway as a separate service
user, and the analyst's kernel cannot read the gateway's files.
"""

from __future__ import annotations

import json
import pwd
import time
from pathlib import Path

import httpx
import psutil
import pytest
from workspace_support import NOTEBOOKS, PASSWORD, Hub, last_json_line, run_in_user_kernel

from sandbox.audit.checkpoints import PRIVATE_KEY_FILE
from sandbox.client import Client
from sandbox.client import errors as e
from sandbox.settings import SETTINGS_FILE, Settings

pytestmark = [pytest.mark.hub, pytest.mark.slow]

QUICKSTART = "01_analyst_quickstart.ipynb"


@pytest.fixture(scope="module")
def analyst_server(hub: Hub) -> str:
    """The analyst logs in with the shared password and their server is spawned; a token to drive it."""
    with httpx.Client(base_url=hub.process.public_url, timeout=60) as browser:
        browser.get("/hub/login")
        response = browser.post(
            "/hub/login",
            data={"username": hub.analyst, "password": PASSWORD, "_xsrf": browser.cookies.get("_xsrf", "")},
        )
        assert response.status_code == 302, response.text[:500]
        browser.get("/hub/spawn", follow_redirects=False)
    deadline = time.monotonic() + 120
    while not (hub.admin.get(f"/users/{hub.analyst}").json().get("servers", {}).get("") or {}).get("ready"):
        assert time.monotonic() < deadline, hub.process.log_tail()
        time.sleep(0.2)
    hub.process.track()
    return hub.token(hub.analyst, [f"access:servers!user={hub.analyst}"])


def test_a_wrong_password_is_refused(hub: Hub) -> None:
    with httpx.Client(base_url=hub.process.public_url, timeout=60) as browser:
        browser.get("/hub/login")
        response = browser.post(
            "/hub/login",
            data={
                "username": hub.analyst,
                "password": "wrong-password",
                "_xsrf": browser.cookies.get("_xsrf", ""),
            },
        )
    assert response.status_code == 403


def test_hub_groups_agree_with_the_gateway_registry(hub: Hub) -> None:
    groups = {g["name"]: set(g["users"]) for g in hub.admin.get("/groups").json()}
    assert groups["analysts-acme"] == {"alice", "bob", hub.analyst}
    assert groups["operators"] == {"oscar"}
    assert hub.client(hub.analyst).me() == {"name": hub.analyst, "roles": ["analyst"], "organisation": "acme"}
    assert hub.client("census").me()["roles"] == ["owner"]


def test_quickstart_runs_inside_the_analysts_server(hub: Hub, analyst_server: str) -> None:
    base = f"{hub.process.public_url}/user/{hub.analyst}/api/contents"
    content = json.loads((NOTEBOOKS / QUICKSTART).read_text(encoding="utf-8"))
    headers = {"Authorization": f"token {analyst_server}"}
    upload = httpx.put(
        f"{base}/{QUICKSTART}",
        headers=headers,
        json={"type": "notebook", "format": "json", "content": content},
    )
    assert upload.status_code in (200, 201), upload.text
    code = f"""
import json, os, nbclient, nbformat
nb = nbformat.read({QUICKSTART!r}, as_version=4)
nbclient.NotebookClient(nb, timeout=180, kernel_name="python3").execute()
nbformat.write(nb, "quickstart.out.ipynb")
text = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
print(json.dumps({{"user": os.environ["JUPYTERHUB_USER"], "uses_hub_token": "SANDBOX_TOKEN" not in os.environ,
                  "intervals": "±" in text, "meter": "隐私预算 budget residents" in text}}))
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code, timeout=300)
    assert out["error"] is None, out
    assert last_json_line(out["stdout"]) == {
        "user": hub.analyst,
        "uses_hub_token": True,
        "intervals": True,
        "meter": True,
    }

    analyst = hub.client(hub.analyst)
    budget = analyst.budget().set_index("dataset").loc["residents"]
    assert budget["epsilon_spent"] == pytest.approx(0.75)  # 0.5 by district + 0.25 by insurance; replays free
    history = analyst.history()
    assert set(history["principal"]) == {hub.analyst}
    assert {"answered", "replayed", "rejected"} <= set(history["status"])
    events = hub.client("oscar").audit(actor=hub.analyst)
    assert {"access.requested", "query.answered", "query.replayed", "query.rejected"} <= set(events["type"])
    assert hub.client("oscar").verify_audit()["ok"] is True


def test_a_user_outside_the_analyst_groups_is_refused(hub: Hub) -> None:
    outsider = Client(hub.process.gateway_url, hub.token(hub.outsider))
    with pytest.raises(e.PermissionDenied) as caught:
        outsider.me()
    assert caught.value.code == "auth.hub_scope_missing"
    with pytest.raises(e.AuthenticationError):
        Client(hub.process.gateway_url, "not-a-hub-token").me()


def _process(hub: Hub, *words: str) -> psutil.Process:
    """The hub's descendant whose command line holds every word."""
    hub.process.track()
    return next(p for p in hub.process.tracked.values() if all(w in " ".join(p.cmdline()) for w in words))


def _environ(process: psutil.Process) -> dict[str, str]:
    return dict(process.environ())


def test_the_analysts_kernel_reaches_no_secret(hub: Hub, analyst_server: str) -> None:
    """Every secret of the gateway and the hub is out of the analyst's reach: the data, the state
    database, the checkpoint signing key, settings.env, the hub's cookie secret, database and proxy
    token, the gateway's service token; neither as files, nor in any process's environment or
    command line the analyst can read. The analyst's own query still works."""
    if hub.gateway_user is None:
        pytest.skip("isolation needs root and system mode: servers and the gateway as their own Unix users")
    gateway = _process(hub, "sandbox.cli serve")
    proxy = _process(hub, "configurable-http-proxy")
    hub_process = psutil.Process(hub.process.process.pid) if hub.process.process else None
    assert hub_process is not None
    state = Path(hub.process.environment["SANDBOX_LOCAL_STATE"])
    settings = Settings(home=hub.home)
    files = [
        hub.home / "state.db",
        *sorted(hub.home.glob("datasets/**/*.duckdb")),
        hub.home / "sources" / "synthetic" / "residents.parquet",
        hub.home / "import" / "pums.yaml",
        hub.home / SETTINGS_FILE,
        settings.keys_dir / PRIVATE_KEY_FILE,
        state / "jupyterhub_cookie_secret",
        state / "jupyterhub.sqlite",
        *(Path(f"/proc/{p.pid}/environ") for p in (gateway, proxy, hub_process)),
    ]
    assert all(path.exists() for path in files), [str(p) for p in files if not p.exists()]
    secrets_by_name = {
        "cookie secret": (state / "jupyterhub_cookie_secret").read_text().strip(),
        "proxy token": _environ(proxy)["CONFIGPROXY_AUTH_TOKEN"],
        "gateway service token": _environ(gateway)["JUPYTERHUB_API_TOKEN"],
        "provisioner token": hub.process.environment["SANDBOX_LOCAL_PROVISIONER_TOKEN"],
        "signing key": (settings.keys_dir / PRIVATE_KEY_FILE).read_text().splitlines()[1],
    }
    assert all(len(value) >= 16 for value in secrets_by_name.values())
    code = f"""
import glob, json, os
from sandbox.client import Client
files = {{}}
for path in {[str(p) for p in files]!r}:
    try:
        open(path, "rb").read(1)
        files[path] = "readable"
    except PermissionError:
        files[path] = "denied"
secrets = {secrets_by_name!r}
seen = {{}}
for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ"):
    try:
        text = open(path, "rb").read().decode(errors="replace")
    except OSError:
        continue
    for name, value in secrets.items():
        if value in text:
            seen.setdefault(name, []).append(path)
own = "\\n".join(f"{{k}}={{v}}" for k, v in os.environ.items())
in_own_environment = [name for name, value in secrets.items() if value in own]
answer = Client().query("SELECT COUNT(*) AS n FROM residents", dataset="residents", epsilon=0.1)
print(json.dumps({{"uid": os.getuid(), "files": files, "seen": seen, "own": in_own_environment,
                  "answer": int(answer["n"][0])}}))
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code)
    assert out["error"] is None, out
    result = last_json_line(out["stdout"])
    assert result["uid"] == pwd.getpwnam(hub.analyst).pw_uid
    assert set(result["files"].values()) == {"denied"}, result["files"]
    assert result["seen"] == {}, result["seen"]
    assert result["own"] == []
    assert abs(result["answer"] - 2_000) < 100


PROBES = [
    "/",
    "/hub/api/users",
    "/api/routes",
    "/api/v1/datasets",
    "/api/v1/audit",
    "/metrics",
    "/api/contents",
]


def test_from_the_analysts_server_only_the_public_port_answers_without_a_token(
    hub: Hub, analyst_server: str
) -> None:
    """From inside the analyst's server, every TCP port of the hub's processes (hub API, proxy API,
    single-user servers, kernels) answers nothing without a token, and the gateway's own port no
    data or state; only the hub's public port (its login page) answers."""
    if hub.gateway_user is None:
        pytest.skip("isolation needs root and system mode: servers and the gateway as their own Unix users")
    code = f"""
import http.client, json
from concurrent.futures import ThreadPoolExecutor
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":  # LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
def probe(target):
    port, path = target
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        connection.request("GET", path)
        return connection.getresponse().status
    except Exception as error:
        return type(error).__name__
targets = [(port, path) for port in sorted(ports) for path in {PROBES!r}]
answers = {{}}
with ThreadPoolExecutor(64) as pool:  # foreign servers that never answer cost one timeout in all
    for (port, path), status in zip(targets, pool.map(probe, targets)):
        answers.setdefault(str(port), {{}})[path] = status
print(json.dumps(answers))
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code)
    assert out["error"] is None, out
    answers: dict[str, dict[str, int | str]] = last_json_line(out["stdout"])
    hub.process.track()
    ours = {
        connection.laddr.port
        for process in [*hub.process.tracked.values(), psutil.Process(hub.process.process.pid)]
        if process.is_running()
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN
    }
    public, gateway = hub.process.ports.public, hub.process.ports.gateway
    assert {public, gateway, hub.process.ports.hub, hub.process.ports.proxy_api} <= ours
    assert ours <= {int(port) for port in answers}
    for port in ours - {public, gateway}:
        granted = {path: s for path, s in answers[str(port)].items() if isinstance(s, int) and s < 300}
        assert granted == {}, (port, answers[str(port)])
    for path in ("/api/v1/datasets", "/api/v1/audit", "/metrics"):  # the gateway: nothing but public pages
        assert answers[str(gateway)][path] == 401, answers[str(gateway)]
    assert answers[str(public)]["/"] == 302  # the hub's login


def test_a_revoked_policy_stops_the_next_query(hub: Hub, analyst_server: str) -> None:
    civil = hub.client("civil")
    policies = civil.policies()
    active = policies[(policies["organisation"] == "acme") & (policies["status"] == "active")]
    civil.revoke_policy(active["id"].iloc[0], reason="study ended")
    code = """
from sandbox.client import Client
from sandbox.client.errors import PolicyDenied
try:
    Client().query("SELECT COUNT(*) AS n FROM residents WHERE age > 40", dataset="residents", epsilon=0.1)
    print("ANSWERED")
except PolicyDenied as denied:
    print(denied.code)
"""
    out = run_in_user_kernel(hub.process.public_url, hub.analyst, analyst_server, code)
    assert out["error"] is None, out
    assert out["stdout"].strip().startswith("policy."), out
