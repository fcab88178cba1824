"""The deployment artefacts agree with the binaries and with each other.

No Kubernetes API server or Docker engine runs here, so these are the mistakes that would
otherwise only show on a real cluster: an environment variable the binary does not know, a
value it refuses, a port the Service forwards to where nothing listens, a selector that matches
no pod, a master that discovers no workers, a worker looking for a Service that does not exist,
missing RBAC, a grace period shorter than the drain, an image without a library the binary needs.

The manifests (deploy/k8s, parsed with PyYAML), the nginx config (deploy/nginx/dais.conf), the
Prometheus config (deploy/prometheus/prometheus.yml) and the Dockerfile are read as text; the
binary's own --help lists the options; and the master and a worker are started with exactly the
environment the manifests give them (ports, paths and pod fields mapped onto this machine), so
the values are checked by the same parser that will read them in the pod.
"""

import base64
import glob
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import DAIS_BIN, REPO, STORIES, free_port, reference_text, wait_for

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (Debian: python3-yaml)")

K8S = os.path.join(REPO, "deploy", "k8s")
NGINX_CONF = os.path.join(REPO, "deploy", "nginx", "dais.conf")
PROMETHEUS = os.path.join(REPO, "deploy", "prometheus", "prometheus.yml")
DOCKERFILE = os.path.join(REPO, "deploy", "docker", "Dockerfile")
# Helpers that are documented but deliberately not part of the kustomization.
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "model-loader.yaml"}
# Ports the pods declare that no option of the binary sets yet, with the reason.
RESERVED_PORTS = {("dais-master", 8890): "model shards (DESIGN.md: workers pull from 8890)"}


# ---- loading ---------------------------------------------------------------------------------

def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization(path=K8S):
    docs = load_yaml(os.path.join(path, "kustomization.yaml"))
    assert len(docs) == 1 and docs[0]["kind"] == "Kustomization"
    return docs[0]


def objects():
    """Every object the base kustomization applies, in order."""
    out = []
    for res in kustomization()["resources"]:
        out.extend(load_yaml(os.path.join(K8S, res)))
    return out


def find(kind, name):
    hits = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def of_kind(kind):
    return [o for o in objects() if o["kind"] == kind]


def namespace():
    return kustomization()["namespace"]


def pod_spec(deploy_name):
    return find("Deployment", deploy_name)["spec"]["template"]["spec"]


def container(deploy_name):
    cs = pod_spec(deploy_name)["containers"]
    assert len(cs) == 1, f"{deploy_name}: one container expected"
    return cs[0]


def env_of(deploy_name):
    return {e["name"]: e for e in container(deploy_name).get("env", [])}


def literal_env(deploy_name):
    return {k: str(e["value"]) for k, e in env_of(deploy_name).items() if "value" in e}


def role(deploy_name):
    args = container(deploy_name).get("args") or container(deploy_name).get("command")
    return args[0]


# ---- the binaries' options -------------------------------------------------------------------

_help_cache = {}


def options(cmd):
    """{env: {"flag", "default", "help"}} parsed from `dais CMD --help` (both layouts: the
    master's "[default]" + "env X" line, the worker's "$X, default D" line)."""
    if cmd in _help_cache:
        return _help_cache[cmd]
    if not os.path.exists(DAIS_BIN):
        pytest.fail(f"dais binary not found at {DAIS_BIN} (set DAIS_BIN)")
    r = subprocess.run([DAIS_BIN, cmd, "--help"], capture_output=True, text=True, timeout=30)
    text = r.stdout + r.stderr
    opts, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^\s{2}(--[a-z0-9-]+)(?:,\s*-\w)?(?:\s+[A-Z][A-Z0-9_:\[\]@.]*)?\s{2,}(.*)$",
                     line)
        if m:
            cur = {"flag": m.group(1), "help": m.group(2), "default": None}
            d = re.search(r"\[([^\]]*)\]\s*$", m.group(2))
            if d:
                cur["default"] = d.group(1)
            continue
        m = re.match(r"^\s+(?:env\s+|\$)(DAIS_[A-Z0-9_]+)(?:,\s*default\s+(.*))?\s*$", line)
        if m and cur is not None:
            if m.group(2) is not None:
                cur["default"] = m.group(2).strip()
            opts[m.group(1)] = cur
            cur = None
    assert len(opts) >= 10, f"could not parse `dais {cmd} --help`:\n{text}"
    _help_cache[cmd] = opts
    return opts


def effective(cmd, env, name):
    """The value a binary uses for variable `name`: the manifest's, else its default."""
    if name in env:
        return env[name]
    return options(cmd)[name]["default"]


# ---- value parsing ---------------------------------------------------------------------------

def duration_s(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|min|h)?", text.strip())
    assert m, f"not a duration: {text!r}"
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, None: 1, "m": 60, "min": 60,
                                "h": 3600}[m.group(2)]


def size_bytes(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(B|[kKmMgG]|KiB|MiB|GiB)?", text.strip())
    assert m, f"not a size: {text!r}"
    unit = (m.group(2) or "B")[0].lower()
    return float(m.group(1)) * {"b": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[unit]


def cpu_cores(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def selector_matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(text, labels):
    """Kubernetes label-selector syntax (what the master sends as ?labelSelector=)."""
    for term in re.split(r",(?![^(]*\))", text):
        term = term.strip()
        if not term:
            continue
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            values = {v.strip() for v in m.group(3).split(",")}
            has = labels.get(m.group(1)) in values
            if has != (m.group(2) == "in"):
                return False
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", term)
        if m:
            eq = labels.get(m.group(1)) == m.group(3)
            if eq != (m.group(2) != "!="):
                return False
            continue
        m = re.fullmatch(r"(!?)([\w./-]+)", term)
        assert m, f"cannot parse selector term {term!r}"
        if (m.group(2) in labels) == (m.group(1) == "!"):
            return False
    return True


def container_port(deploy_name, ref):
    """The containerPort entry a Service targetPort or probe port (name or number) means."""
    for p in container(deploy_name).get("ports", []):
        if ref == p.get("name") or ref == p["containerPort"]:
            return p
    return None


def service_pods(svc):
    """Names of the Deployments whose pods a Service selects."""
    sel = svc["spec"].get("selector") or {}
    return [d["metadata"]["name"] for d in of_kind("Deployment")
            if sel and selector_matches(sel, d["spec"]["template"]["metadata"]["labels"])]


# ---- manifests as a whole --------------------------------------------------------------------

def test_every_manifest_parses_and_the_kustomization_lists_them():
    files = sorted(glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True))
    assert files
    for f in files:
        for d in load_yaml(f):
            assert d.get("apiVersion") and d.get("kind"), f
            if d["kind"] != "Kustomization":
                assert d["metadata"].get("name"), f
    listed = set(kustomization()["resources"])
    top = {os.path.basename(f) for f in glob.glob(os.path.join(K8S, "*.yaml"))}
    assert listed <= top, listed - top
    assert top - listed == NOT_IN_KUSTOMIZATION, top - listed
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects()]
    assert len(keys) == len(set(keys)), keys
    ns = namespace()
    assert find("Namespace", ns)
    for o in objects():
        assert o["metadata"].get("namespace", ns) == ns, o["metadata"]
    # the image every container names is the one the kustomization retags
    images = {i["name"] for i in kustomization().get("images", [])}
    for d in of_kind("Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c["image"].split(":")[0] in images, c["image"]
            assert role(d["metadata"]["name"]) in ("master", "worker")


def test_env_names_are_options_of_the_binaries():
    for deploy, cmd in (("dais-master", "master"), ("dais-worker", "worker")):
        assert role(deploy) == cmd
        known = options(cmd)
        unknown = set(env_of(deploy)) - set(known)
        assert not unknown, f"{deploy}: `dais {cmd}` has no variable {sorted(unknown)}"


def test_selectors_match_their_pods():
    deployments = of_kind("Deployment")
    for d in deployments:
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(sel, labels), d["metadata"]["name"]
        for other in deployments:
            if other is not d:  # two Deployments must not fight over each other's pods
                assert not selector_matches(sel, other["spec"]["template"]["metadata"]["labels"])
        for tsc in d["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            assert selector_matches(tsc["labelSelector"]["matchLabels"], labels)
    for pdb in of_kind("PodDisruptionBudget"):
        matched = [d["metadata"]["name"] for d in deployments
                   if selector_matches(pdb["spec"]["selector"]["matchLabels"],
                                       d["spec"]["template"]["metadata"]["labels"])]
        assert matched == ["dais-worker"], matched


def test_services_select_pods_and_forward_to_declared_ports():
    for svc in of_kind("Service"):
        name = svc["metadata"]["name"]
        pods = service_pods(svc)
        assert len(pods) == 1, f"Service {name} selects {pods}"
        for p in svc["spec"]["ports"]:
            cp = container_port(pods[0], p.get("targetPort", p["port"]))
            assert cp is not None, f"Service {name} port {p} has no container port in {pods[0]}"
            assert cp.get("protocol", "TCP") == p.get("protocol", "TCP"), (name, p, cp)
    master = find("Service", "dais-master")
    assert master["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert master["spec"].get("publishNotReadyAddresses") is True
    got = {(p["port"], p.get("protocol", "TCP")) for p in master["spec"]["ports"]}
    assert {(8888, "TCP"), (8889, "UDP"), (8890, "TCP"), (9090, "TCP")} <= got, got
    api = find("Service", "dais-api")
    assert service_pods(api) == ["dais-master"]
    assert [p["port"] for p in api["spec"]["ports"]] == [8080]
    workers = find("Service", "dais-workers")
    assert workers["spec"].get("clusterIP") == "None"
    assert service_pods(workers) == ["dais-worker"]


def port_env(cmd):
    """{variable: help} of the binary's *_PORT options it listens on (not the master's ports a
    worker connects to, such as the worker's DAIS_SYNC_PORT)."""
    return {k: v for k, v in options(cmd).items()
            if k.endswith("_PORT") and "the master's" not in v["help"]}


@pytest.mark.parametrize("deploy,cmd", [("dais-master", "master"), ("dais-worker", "worker")])
def test_container_ports_are_the_ports_the_binary_opens(deploy, cmd):
    env = literal_env(deploy)
    opened = {}  # port -> protocol, from the binary's options and the manifest's values
    for name, opt in port_env(cmd).items():
        value = effective(cmd, env, name)
        assert value is not None and value.isdigit(), f"{name}: no fixed port ({value!r})"
        proto = "UDP" if "UDP" in opt["help"] else "TCP"
        opened[int(value)] = proto
    declared = {p["containerPort"]: p.get("protocol", "TCP")
                for p in container(deploy).get("ports", [])}
    for port, proto in opened.items():
        assert declared.get(port) == proto, f"{deploy}: {port}/{proto} not declared ({declared})"
    for port, proto in declared.items():
        if port not in opened:
            assert (deploy, port) in RESERVED_PORTS, f"{deploy}: nothing listens on {port}"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        spec = container(deploy).get(probe)
        if spec is not None and "httpGet" in spec:
            cp = container_port(deploy, spec["httpGet"]["port"])
            assert cp is not None and cp.get("protocol", "TCP") == "TCP", (probe, spec)
    assert container(deploy).get("readinessProbe"), f"{deploy} has no readiness probe"


def test_master_probes_health_not_ready():
    # /ready is 503 while no worker is active: as readiness it would take the master out of
    # dais-api, and clients would get the Ingress' page instead of the master's 503 JSON.
    c = container("dais-master")
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container_port("dais-master", c["readinessProbe"]["httpGet"]["port"])["name"] == "http"
    w = container("dais-worker")
    assert container_port("dais-worker", w["readinessProbe"]["httpGet"]["port"])["containerPort"] \
        == int(effective("worker", literal_env("dais-worker"), "DAIS_METRICS_PORT"))


def test_discovery_selector_matches_the_worker_pods_only():
    worker_labels = find("Deployment", "dais-worker")["spec"]["template"]["metadata"]["labels"]
    master_labels = find("Deployment", "dais-master")["spec"]["template"]["metadata"]["labels"]
    selector_vars = [k for k in options("master") if "SELECTOR" in k]
    if selector_vars:
        # The master has a selector option: the manifest (or its default) must pick the workers.
        assert len(selector_vars) == 1, selector_vars
        selector = effective("master", literal_env("dais-master"), selector_vars[0])
        assert selector and not selector.startswith("("), \
            f"set {selector_vars[0]} in deploy/k8s/master.yaml"
    else:
        # Not configurable yet: the selector documented for discovery (src/master/k8s.h,
        # docs/reliability.md) and used by the Prometheus headless Service.
        with open(os.path.join(REPO, "src", "master", "k8s.h"), encoding="utf-8") as f:
            m = re.search(r'label_selector;\s*/\*\s*e\.g\.\s*"([^"]+)"', f.read())
        assert m, "src/master/k8s.h no longer documents the worker selector"
        selector = m.group(1)
    assert label_selector_matches(selector, worker_labels), (selector, worker_labels)
    assert not label_selector_matches(selector, master_labels), (selector, master_labels)
    headless = find("Service", "dais-workers")["spec"]["selector"]
    assert selector_matches(headless, worker_labels)


def resolve_service_port(service_host, port):
    """(Deployment, containerPort entry) that `service_host:port` reaches inside the cluster."""
    ns = namespace()
    parts = service_host.split(".")
    assert len(parts) == 1 or (parts[1] == ns and (len(parts) == 2 or parts[2] == "svc")), \
        f"{service_host} is not a Service in namespace {ns}"
    svc = find("Service", parts[0])
    for p in svc["spec"]["ports"]:
        if p["port"] == port:
            pods = service_pods(svc)
            return svc, pods[0], container_port(pods[0], p.get("targetPort", p["port"]))
    if svc["spec"].get("clusterIP") == "None":  # headless: DNS gives pod IPs, any pod port
        pods = service_pods(svc)
        return svc, pods[0], container_port(pods[0], port)
    pytest.fail(f"Service {parts[0]} has no port {port}")


def test_workers_find_the_master_through_its_service():
    value = effective("worker", literal_env("dais-worker"), "DAIS_MASTER")
    host, _, port = value.rpartition(":")
    svc, deploy, cp = resolve_service_port(host, int(port))
    assert deploy == "dais-master"
    assert cp is not None and cp.get("protocol", "TCP") == "TCP"
    assert cp["containerPort"] == int(effective("master", literal_env("dais-master"),
                                                "DAIS_CLUSTER_PORT"))
    # workers must be able to register before the master's readiness probe passes
    assert svc["spec"].get("publishNotReadyAddresses") is True


def test_prometheus_targets_are_the_services():
    with open(PROMETHEUS, encoding="utf-8") as f:
        prom = yaml.safe_load(f)
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    expect = {"dais-master": "dais-master", "dais-worker": "dais-worker"}
    for job, deploy in expect.items():
        sd = jobs[job]["dns_sd_configs"]
        for cfg in sd:
            for dns in cfg["names"]:
                svc, target, cp = resolve_service_port(dns.rstrip("."), cfg["port"])
                assert target == deploy, (job, dns, target)
                assert cp is not None and cp["containerPort"] == int(effective(
                    deploy.split("-")[1], literal_env(deploy), "DAIS_METRICS_PORT"))
                assert jobs[job].get("metrics_path", "/metrics") == "/metrics"


def test_rbac_lets_the_master_list_pods_in_its_namespace():
    ns = namespace()
    sa = pod_spec("dais-master").get("serviceAccountName")
    assert sa and find("ServiceAccount", sa).get("automountServiceAccountToken", True)
    assert pod_spec("dais-master").get("automountServiceAccountToken", True)
    granted = set()
    for rb in of_kind("RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa
                   and s.get("namespace", ns) == ns for s in rb["subjects"]):
            continue
        assert rb["roleRef"]["kind"] == "Role"  # namespaced, not cluster-wide
        for rule in find("Role", rb["roleRef"]["name"])["rules"]:
            if "" in rule["apiGroups"] and "pods" in rule["resources"]:
                granted |= set(rule["verbs"])
    assert {"get", "list"} <= granted, granted
    # nothing beyond reading
    assert granted <= {"get", "list", "watch"}, granted
    # workers never talk to the API: no token in their pods
    assert pod_spec("dais-worker").get("automountServiceAccountToken") is False


def secret_files(volume):
    """{file name: bytes} a secret volume shows in the pod."""
    sec = find("Secret", volume["secret"]["secretName"])
    data = {k: v.encode() for k, v in (sec.get("stringData") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()})
    items = volume["secret"].get("items")
    if items:
        return {i["path"]: data[i["key"]] for i in items}
    return data


@pytest.mark.parametrize("deploy", ["dais-master", "dais-worker"])
def test_token_file_is_a_readable_key_of_the_secret(deploy):
    env = literal_env(deploy)
    path = env.get("DAIS_CLUSTER_TOKEN_FILE")
    assert path, f"{deploy}: the token comes from a file"
    assert "DAIS_CLUSTER_TOKEN" not in env_of(deploy), "a token literal in a manifest"
    spec = pod_spec(deploy)
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in container(deploy)["volumeMounts"]:
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            vol = volumes[m["name"]]
            assert "secret" in vol, f"{path} is not on a secret volume"
            name = path[len(m["mountPath"].rstrip("/")) + 1:]
            assert name in secret_files(vol), f"secret has no key {name}"
            mode = vol["secret"].get("defaultMode", 0o644)
            sc = spec.get("securityContext", {})
            readable = mode & 0o004 or (mode & 0o040 and sc.get("fsGroup") is not None)
            assert readable, f"{deploy}: uid {sc.get('runAsUser')} cannot read {path} ({mode:o})"
            break
    else:
        pytest.fail(f"{deploy}: {path} is on no mounted volume")


def test_grace_periods_let_the_processes_finish():
    for deploy, var in (("dais-worker", "DAIS_DRAIN_TIMEOUT"),
                        ("dais-master", "DAIS_SHUTDOWN_GRACE")):
        cmd = deploy.split("-")[1]
        need = duration_s(effective(cmd, literal_env(deploy), var))
        pre = container(deploy).get("lifecycle", {}).get("preStop", {})
        cmdline = pre.get("exec", {}).get("command", [])
        if cmdline[:1] == ["sleep"]:
            need += float(cmdline[1])
        grace = pod_spec(deploy).get("terminationGracePeriodSeconds", 30)
        assert grace > need, f"{deploy}: grace {grace}s, needs more than {need}s ({var})"


def test_worker_threads_and_resources():
    c = container("dais-worker")
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    threads = env_of("dais-worker").get("DAIS_THREADS")
    if threads is not None and "valueFrom" in threads:
        ref = threads["valueFrom"]["resourceFieldRef"]
        assert ref["resource"] == "limits.cpu" and ref.get("containerName", c["name"]) == c["name"]
        assert "cpu" in c["resources"]["limits"]


def nginx_directive(text, name):
    m = re.search(rf"(?m)^\s*{name}\s+([^;]+);", text)
    assert m, f"deploy/nginx/dais.conf has no {name}"
    return m.group(1).strip()


def test_ingress_and_nginx_config_fit_the_master():
    ing = find("Ingress", "dais")
    assert ing["spec"]["ingressClassName"] == "nginx"
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    port = backend["port"].get("number")
    svc = find("Service", backend["name"])
    if port is None:
        port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == backend["port"]["name"])
    _, deploy, cp = resolve_service_port(backend["name"], port)
    master_env = literal_env("dais-master")
    assert deploy == "dais-master"
    assert cp["containerPort"] == int(effective("master", master_env, "DAIS_HTTP_PORT"))

    a = {k.split("/", 1)[1]: v for k, v in ing["metadata"]["annotations"].items()
         if k.startswith("nginx.ingress.kubernetes.io/")}
    timeout = duration_s(effective("master", master_env, "DAIS_REQUEST_TIMEOUT"))
    body = size_bytes(effective("master", master_env, "DAIS_BODY_LIMIT"))
    assert a["proxy-buffering"] == "off"
    assert float(a["proxy-read-timeout"]) >= timeout
    assert float(a["proxy-send-timeout"]) >= timeout
    assert size_bytes(a["proxy-body-size"]) >= body

    # deploy/nginx/dais.conf does what the Ingress does
    with open(NGINX_CONF, encoding="utf-8") as f:
        conf = f.read()
    assert nginx_directive(conf, "proxy_buffering") == "off"
    assert nginx_directive(conf, "gzip") == "off"
    assert nginx_directive(conf, "proxy_http_version") == a.get("proxy-http-version", "1.1")
    assert duration_s(nginx_directive(conf, "proxy_read_timeout")) == \
        float(a["proxy-read-timeout"])
    assert duration_s(nginx_directive(conf, "proxy_send_timeout")) == \
        float(a["proxy-send-timeout"])
    assert size_bytes(nginx_directive(conf, "client_max_body_size")) == \
        size_bytes(a["proxy-body-size"])
    assert nginx_directive(conf, "server").split()[0] == \
        f"127.0.0.1:{effective('master', {}, 'DAIS_HTTP_PORT')}"


def test_hostpath_overlay_patches_what_the_base_has():
    overlay = os.path.join(K8S, "overlays", "hostpath")
    k = kustomization(overlay)
    assert os.path.normpath(os.path.join(overlay, k["resources"][0])) == os.path.normpath(K8S)
    for patch in k["patches"]:
        for doc in load_yaml(os.path.join(overlay, patch["path"])):
            target = find(doc["kind"], doc["metadata"]["name"])
            if doc["kind"] == "Deployment":
                base_vols = {v["name"] for v in target["spec"]["template"]["spec"]["volumes"]}
                for v in doc["spec"]["template"]["spec"]["volumes"]:
                    assert v["name"] in base_vols
                    assert v["hostPath"]["path"].startswith("/")
                    assert "persistentVolumeClaim" in v and v["persistentVolumeClaim"] is None
            else:
                assert doc.get("$patch") == "delete"
                # nothing else may still use a deleted claim
                for d in of_kind("Deployment"):
                    for v in d["spec"]["template"]["spec"]["volumes"]:
                        pvc = v.get("persistentVolumeClaim")
                        if pvc and pvc["claimName"] == doc["metadata"]["name"]:
                            assert d["metadata"]["name"] == "dais-worker"


# ---- run the binaries with the manifests' environment -----------------------------------------

class PodRun:
    """One container's environment mapped onto this machine: volumes become directories,
    ports become free loopback ports, pod fields get local values."""

    def __init__(self, deploy, root, pod_ip="127.0.0.1"):
        self.deploy = deploy
        self.c = container(deploy)
        spec = pod_spec(deploy)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        self.mounts = []
        for m in self.c.get("volumeMounts", []):
            d = os.path.join(root, deploy, m["name"])
            os.makedirs(d, exist_ok=True)
            vol = volumes[m["name"]]
            if "secret" in vol:
                for fname, data in secret_files(vol).items():
                    with open(os.path.join(d, fname), "wb") as f:
                        f.write(data)
            self.mounts.append((m["mountPath"].rstrip("/"), d, vol))
        self.mounts.sort(key=lambda t: -len(t[0]))
        self.ports = {}  # manifest port -> local port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DAIS_")}
        self.env["DAIS_ADDR"] = "127.0.0.1"
        for e in self.c.get("env", []):
            self.env[e["name"]] = self.value(e, pod_ip)
        for name in list(self.env):
            if name.startswith("DAIS_") and name.endswith("_PORT"):
                old = int(self.env[name])
                self.ports[old] = free_port()
                self.env[name] = str(self.ports[old])
        self.proc = None

    def value(self, e, pod_ip):
        if "value" in e:
            v = str(e["value"])
            for mount, local, vol in self.mounts:
                if v == mount or v.startswith(mount + "/"):
                    v = local + v[len(mount):]
                    if v.endswith(".gguf") and "secret" not in vol:
                        os.symlink(os.path.abspath(STORIES), v)  # the model on its volume
                    break
            return v
        src = e["valueFrom"]
        if "fieldRef" in src:
            return {"metadata.name": f"{self.deploy}-5d8f7c9b4-x2x7q",
                    "metadata.namespace": namespace(),
                    "status.podIP": pod_ip}[src["fieldRef"]["fieldPath"]]
        if "resourceFieldRef" in src:
            ref = src["resourceFieldRef"]
            kind, res = ref["resource"].split(".")
            q = cpu_cores(self.c["resources"][kind][res])
            return str(math.ceil(q / cpu_cores(ref.get("divisor", "1"))))
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            return secret_files({"secret": {"secretName": ref["name"]}})[ref["key"]].decode()
        pytest.fail(f"unsupported valueFrom {src}")

    def start(self, logdir):
        args = [DAIS_BIN] + (self.c.get("args") or [])
        self.log_path = os.path.join(logdir, f"{self.deploy}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path, manifest_port):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[manifest_port], timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def probe_ok(self, probe):
        spec = self.c.get(probe)
        if spec is None or "httpGet" not in spec:
            return True
        cp = container_port(self.deploy, spec["httpGet"]["port"])["containerPort"]
        try:
            return self.get(spec["httpGet"]["path"], cp)[0] == 200
        except OSError:
            return False

    def alive(self):
        if self.proc.poll() is not None:
            pytest.fail(f"{self.deploy} exited with {self.proc.returncode}:\n{self.tail()}")
        return True

    def tail(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-3000:]

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


def test_master_and_worker_run_with_the_manifest_environment():
    """The pods' environment, given to the real binaries: both start, the worker finds the
    master through the mapped Service port and registers with the token from the Secret, the
    probes answer, and a request gets the reference answer."""
    if not os.path.exists(STORIES):
        pytest.fail(f"{STORIES} is missing (set DAIS_SHARED)")
    root = tempfile.mkdtemp(prefix="dais-deploy-")
    master = worker = None
    try:
        master = PodRun("dais-master", root)
        master.start(root)
        wait_for(lambda: master.alive() and all(master.probe_ok(p) for p in
                 ("startupProbe", "livenessProbe", "readinessProbe")), 10,
                 what="the master's probes")
        # The worker's DAIS_MASTER names the Service; inside the test it is the master's
        # mapped cluster port on loopback.
        host, _, sport = literal_env("dais-worker")["DAIS_MASTER"].rpartition(":")
        _, _, cp = resolve_service_port(host, int(sport))
        worker = PodRun("dais-worker", root)
        worker.env["DAIS_MASTER"] = f"127.0.0.1:{master.ports[cp['containerPort']]}"
        worker.start(root)
        wait_for(lambda: worker.alive() and all(worker.probe_ok(p) for p in
                 ("startupProbe", "livenessProbe", "readinessProbe")), 30,
                 what="the worker's probes")
        http_port = master.ports[int(literal_env("dais-master")["DAIS_HTTP_PORT"])]

        def registered():
            master.alive()
            worker.alive()
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            try:
                conn.request("GET", "/api/cluster")
                view = json.loads(conn.getresponse().read())
            finally:
                conn.close()
            return [w for w in view["workers"] if w["state"] == "active"]
        active = wait_for(registered, 30, what="the worker to register")
        assert active[0]["id"] == worker.env["DAIS_NODE_ID"]

        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        try:
            conn.request("POST", "/api/inference", body=json.dumps(
                {"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}))
            r = conn.getresponse()
            out = json.loads(r.read())
        finally:
            conn.close()
        assert r.status == 200, out
        assert out["text"] == reference_text(64)
        # DAIS_LOG_FORMAT=json in the manifests: every log line is a JSON object
        for run in (master, worker):
            if run.env.get("DAIS_LOG_FORMAT") == "json":
                with open(run.log_path, encoding="utf-8") as f:
                    for line in f.read().splitlines()[:5]:
                        json.loads(line)
    finally:
        codes = [p.stop() if p is not None else None for p in (worker, master)]
        shutil.rmtree(root, ignore_errors=True)
    # SIGTERM (what the kubelet sends) ends both cleanly
    assert codes == [0, 0], codes


# ---- the container image ---------------------------------------------------------------------

def dockerfile_stages():
    """[(stage name, [instruction lines])] with continuation lines joined, ARGs resolved."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    args, stages = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        inst, _, rest = line.partition(" ")
        inst = inst.upper()
        if inst == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
            continue
        if inst == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            parts = rest.split()
            stages.append((parts[2] if len(parts) > 2 else None, [f"FROM {parts[0]}"]))
            continue
        stages[-1][1].append(f"{inst} {rest}")
    return stages


def apt_packages(lines):
    pkgs = set()
    for line in lines:
        for m in re.finditer(r"apt-get install ([^&;]*)", line):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def owning_package(path):
    for p in {path, os.path.realpath(path)}:
        for candidate in {p, re.sub(r"^/usr", "", p), "/usr" + p}:
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout.split(":")[0].strip()
    pytest.fail(f"no Debian package owns {path}")


@pytest.fixture
def dpkg():
    if shutil.which("dpkg") is None or shutil.which("readelf") is None:
        pytest.skip("dpkg/readelf not available: the image check needs a Debian host")


def test_dockerfile_build_stage_has_every_build_dependency(dpkg):
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for _, lines in stages:
        assert re.match(r"FROM debian:(12|bookworm)", lines[0]), lines[0]
    build = apt_packages(stages[0][1])
    assert {"cmake", "pkg-config"} <= build and ("build-essential" in build or "gcc" in build)
    with open(os.path.join(REPO, "CMakeLists.txt"), encoding="utf-8") as f:
        cmake = f.read()
    for m in re.finditer(r"pkg_check_modules\(\w+ REQUIRED IMPORTED_TARGET ([^)]*)\)", cmake):
        for module in m.group(1).split():
            pcdir = subprocess.run(["pkg-config", "--variable=pcfiledir", module],
                                   capture_output=True, text=True).stdout.strip()
            assert pcdir, f"pkg-config does not know {module}"
            pkg = owning_package(os.path.join(pcdir, f"{module}.pc"))
            assert pkg in build, f"build stage lacks {pkg} (for {module})"


def test_dockerfile_runtime_stage_has_the_binarys_libraries(dpkg):
    stages = dockerfile_stages()
    runtime = stages[-1][1]
    pkgs = apt_packages(runtime)
    assert not [p for p in pkgs if p.endswith("-dev") or p in ("gcc", "build-essential",
                                                                "cmake")], pkgs
    needed = re.findall(r"NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", DAIS_BIN], capture_output=True,
                                       text=True).stdout)
    assert needed
    ldd = subprocess.run(["ldd", DAIS_BIN], capture_output=True, text=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    for soname in needed:
        if soname in where and not where[soname].startswith("not"):
            pkg = owning_package(where[soname])
        else:
            pytest.fail(f"ldd cannot resolve {soname}")
        if pkg == "libc6":  # in the base image
            continue
        if pkg.startswith(("libasan", "libubsan", "libtsan")):
            continue  # DAIS_BIN is a sanitizer build; the image is a release build
        assert pkg in pkgs, f"runtime stage lacks {pkg} (for {soname})"
    # the binary, a non-root numeric user that the pods run as, `dais` as the entrypoint
    assert any(re.match(r"COPY --from=\S+ \S+/dais /usr/(local/)?bin/dais", ln) for ln in runtime)
    user = [ln.split()[1] for ln in runtime if ln.startswith("USER ")]
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    uid = int(user[-1].split(":")[0])
    entry = [ln for ln in runtime if ln.startswith("ENTRYPOINT ")]
    assert entry and json.loads(entry[-1].split(" ", 1)[1]) == ["dais"]
    for d in of_kind("Deployment"):
        sc = d["spec"]["template"]["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid


def test_dockerignore_keeps_build_trees_out_and_sources_in():
    with open(os.path.join(REPO, ".dockerignore"), encoding="utf-8") as f:
        rules = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    assert any(r.rstrip("/") in ("build", "/build", "build/**") for r in rules), rules
    for needed in ("src", "CMakeLists.txt", "deploy"):
        assert not any(r.rstrip("/") == needed for r in rules), needed
