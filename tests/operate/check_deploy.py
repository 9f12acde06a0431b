#!/usr/bin/env python3
"""Static checks of deploy/ that tests/operate.rs runs (nothing here needs a cluster or Docker).

    check_deploy.py ROOT kubernetes   kubectl kustomize, then every object against the Kubernetes
                                      JSON schemas (kubernetes-validate, strict, 1.30 and newest),
                                      ScaledObjects against keda-scaledobject.schema.json, then
                                      what the issue asks of the manifests (probes, resources,
                                      grace > drain, instance ids, PDBs, lag autoscaling <= partitions)
    check_deploy.py ROOT compose      the Compose specification's schema (check-jsonschema), then
                                      references: services, mounts, build context, health checks,
                                      Prometheus targets
    check_deploy.py ROOT docker       hadolint, then multi-stage, non-root, HEALTHCHECK, COPY sources
    check_deploy.py ROOT grafana      dashboard JSON and provisioning

Prints one line per problem and exits 1 if there is any. Tools come from
deploy/prometheus/install-tools.sh.
"""
import json
import os
import re
import subprocess
import sys

import yaml

ROLES = ["gateway", "admin", "ingest", "translator", "mapper", "executor"]
WORKERS = ["ingest", "translator", "mapper", "executor"]
# Input topic(s) and consumer group(s) of each worker role (crates/tributary/src/roles.rs).
STAGE_INPUTS = {"ingest": [("ingest", "ingest")], "translator": [("translator", "raw")], "mapper": [("mapper", "normalized")],
                "executor": [("executor", "actions"), ("action-log-writer", "action-logs")]}
# Least drain time on SIGTERM, in seconds (README "Configuration", config defaults): the
# gateway pauses 5 s (preStop), finishes requests (produce timeout 5 s + 0.5 s) and flushes
# (10 s); a worker may be inside an HTTP sink call: 6 attempts x 10 s + 6.2 s backoff.
MIN_GRACE = {"gateway": 5 + 5.5 + 10, "admin": 5, "ingest": 66.2, "translator": 66.2, "mapper": 66.2, "executor": 66.2}

problems = []


def problem(msg):
    problems.append(msg)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ------------------------------------------------------------------------------------ kubernetes

def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def check_kubernetes(root):
    import jsonschema
    import kubernetes_validate

    kdir = os.path.join(root, "deploy/kubernetes")
    out = run(["kubectl", "kustomize", kdir])
    if out.returncode != 0:
        problem(f"kubectl kustomize {kdir}: {out.stderr.strip()}")
        return
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    for f in sorted(os.listdir(kdir)):
        if f.endswith(".yaml") and f != "kustomization.yaml" and f not in kust.get("resources", []):
            problem(f"deploy/kubernetes/{f} is not listed in kustomization.yaml")

    keda_schema = json.load(open(os.path.join(root, "tests/operate/keda-scaledobject.schema.json")))
    newest = kubernetes_validate.latest_version()
    for d in docs:
        name = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if d.get("kind") == "ScaledObject":
            for e in jsonschema.Draft202012Validator(keda_schema).iter_errors(d):
                problem(f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
            continue
        for version in ["1.30", newest]:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problem(f"{name} (Kubernetes {version}): {'.'.join(map(str, e.absolute_path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problem(f"{name}: no schema for {d.get('apiVersion')} in Kubernetes {version}")

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
    config = {}
    for cm in configmaps.values():
        config.update(cm.get("data", {}))
    partitions = int(config.get("TRIBUTARY_KAFKA_PARTITIONS", "0"))
    if partitions < 1:
        problem("the ConfigMap sets no TRIBUTARY_KAFKA_PARTITIONS (the ceiling of the autoscalers)")
    prefix = config.get("TRIBUTARY_KAFKA_TOPIC_PREFIX", "tributary")
    group_prefix = config.get("TRIBUTARY_KAFKA_GROUP_PREFIX", "tributary")
    if not any(k.startswith("TRIBUTARY_ADMIN_TOKEN") for k in config) and not by_kind.get("Secret"):
        problem("no Secret (admin token, database credentials)")
    for s in by_kind.get("Secret", []):
        if "TRIBUTARY_ADMIN_TOKEN" not in s.get("stringData", {}) and "TRIBUTARY_ADMIN_TOKEN" not in s.get("data", {}):
            problem(f"Secret/{s['metadata']['name']} has no TRIBUTARY_ADMIN_TOKEN")
    if "TRIBUTARY_ADMIN_TOKEN" in config:
        problem("the admin token is in a ConfigMap: it belongs in the Secret")

    workloads = {}
    for kind in ["Deployment", "StatefulSet"]:
        for w in by_kind.get(kind, []):
            role = w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
            workloads[role] = w
    for role in ROLES:
        w = workloads.get(role)
        if not w:
            problem(f"no workload for the {role} role")
            continue
        want_kind = "StatefulSet" if role in WORKERS else "Deployment"
        if w["kind"] != want_kind:
            problem(f"{role}: a {w['kind']}, expected a {want_kind}")
        check_workload(role, w, configmaps, secrets)
    jobs = [j for j in by_kind.get("Job", []) if containers(j)[0].get("args") == ["migrate"]]
    if not jobs:
        problem("no Job runs `tributary migrate`")
    for j in jobs:
        check_env_refs(f"Job/{j['metadata']['name']}", containers(j)[0], configmaps, secrets)

    services = by_kind.get("Service", [])
    pod_labels = {role: w["spec"]["template"]["metadata"]["labels"] for role, w in workloads.items()}
    for s in services:
        sel = s["spec"].get("selector", {})
        if not any(all(lbl.get(k) == v for k, v in sel.items()) for lbl in pod_labels.values()):
            problem(f"Service/{s['metadata']['name']} selects no pods")
    for role in WORKERS:
        w = workloads.get(role)
        if not w:
            continue
        svc = [s for s in services if s["metadata"]["name"] == w["spec"].get("serviceName")]
        if not svc or svc[0]["spec"].get("clusterIP") != "None":
            problem(f"StatefulSet for {role}: serviceName must name a headless Service")
        env = {e["name"]: e for e in containers(w)[0].get("env", [])}
        iid = env.get("TRIBUTARY_WORKERS_INSTANCE_ID", {})
        if iid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            problem(f"{role}: TRIBUTARY_WORKERS_INSTANCE_ID must come from the pod name (stable per StatefulSet ordinal)")

    for role in ROLES:
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
                if all(pod_labels.get(role, {}).get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        if role in pod_labels and len(pdbs) != 1:
            problem(f"{role}: {len(pdbs)} PodDisruptionBudgets select its pods, expected 1")

    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind.get("ScaledObject", [])}
    for role in WORKERS:
        w = workloads.get(role)
        if not w:
            continue
        so = scaled.get(w["metadata"]["name"])
        if not so:
            problem(f"{role}: no ScaledObject scales {w['kind']}/{w['metadata']['name']} on lag")
            continue
        if so["spec"]["scaleTargetRef"].get("kind") != w["kind"]:
            problem(f"{role}: ScaledObject targets kind {so['spec']['scaleTargetRef'].get('kind')}, the workload is a {w['kind']}")
        if so["spec"].get("maxReplicaCount", 100) > partitions:
            problem(f"{role}: maxReplicaCount {so['spec'].get('maxReplicaCount')} exceeds the partition count {partitions}")
        triggers = {(t["metadata"].get("consumerGroup"), t["metadata"].get("topic")): t
                    for t in so["spec"]["triggers"] if t["type"] == "kafka"}
        for stage, topic in STAGE_INPUTS[role]:
            t = triggers.get((f"{group_prefix}-{stage}", f"{prefix}.{topic}"))
            if not t:
                problem(f"{role}: no kafka trigger on group {group_prefix}-{stage}, topic {prefix}.{topic}")
            elif t["metadata"].get("allowIdleConsumers") != "false":
                problem(f"{role}: allowIdleConsumers must be \"false\" (the partition count is the ceiling)")
            elif t["metadata"].get("bootstrapServers") != config.get("TRIBUTARY_KAFKA_BROKERS"):
                problem(f"{role}: the trigger's bootstrapServers differ from TRIBUTARY_KAFKA_BROKERS")


def check_env_refs(where, c, configmaps, secrets):
    refs = c.get("envFrom", [])
    cms = [r["configMapRef"]["name"] for r in refs if "configMapRef" in r]
    secs = [r["secretRef"]["name"] for r in refs if "secretRef" in r]
    if not cms or any(n not in configmaps for n in cms):
        problem(f"{where}: envFrom must name the ConfigMap ({cms})")
    if not secs or any(n not in secrets for n in secs):
        problem(f"{where}: envFrom must name the Secret ({secs})")


def check_workload(role, w, configmaps, secrets):
    spec = w["spec"]["template"]["spec"]
    where = f"{w['kind']}/{w['metadata']['name']}"
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= MIN_GRACE[role]:
        problem(f"{where}: terminationGracePeriodSeconds {grace} is not longer than its drain ({MIN_GRACE[role]} s)")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problem(f"{where}: runAsNonRoot is not set")
    if len(containers(w)) != 1:
        problem(f"{where}: {len(containers(w))} containers, expected the role's one")
    c = containers(w)[0]
    if c.get("args") != [role]:
        problem(f"{where}: runs {c.get('args')}, expected [{role!r}]")
    if not c.get("image", "").startswith("tributary"):
        problem(f"{where}: image {c.get('image')}")
    for kind in ["requests", "limits"]:
        for res in ["cpu", "memory"]:
            if res not in c.get("resources", {}).get(kind, {}):
                problem(f"{where}: no {kind}.{res}")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problem(f"{where}: {probe} must GET {path}")
        port = get.get("port")
        if port not in ports and port not in ports.values():
            problem(f"{where}: {probe} port {port} is not a container port")
    ann = w["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or int(ann.get("prometheus.io/port", 0)) not in ports.values():
        problem(f"{where}: prometheus.io/scrape and prometheus.io/port must name the metrics port")
    check_env_refs(where, c, configmaps, secrets)


# ------------------------------------------------------------------------------------ compose

def check_compose(root):
    cdir = os.path.join(root, "deploy/compose")
    path = os.path.join(cdir, "compose.yaml")
    out = run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", path])
    if out.returncode != 0:
        problem(f"compose.yaml against the Compose specification: {out.stdout.strip()} {out.stderr.strip()}")
    c = yaml.safe_load(open(path))
    services = c.get("services", {})
    for s in ROLES + ["migrate", "kafka", "scylla", "prometheus", "grafana"]:
        if s not in services:
            problem(f"compose: no service {s}")
    ids = {}
    for name, s in services.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("."):
                if not os.path.exists(os.path.join(cdir, src)):
                    problem(f"compose: {name} mounts {src}, which does not exist")
            elif src not in (c.get("volumes") or {}):
                problem(f"compose: {name} mounts the undeclared volume {src}")
        b = s.get("build")
        if b:
            ctx = os.path.join(cdir, b["context"])
            if not os.path.isfile(os.path.join(ctx, b["dockerfile"])):
                problem(f"compose: {name} builds {b['dockerfile']}, not found in {ctx}")
        for dep in (s.get("depends_on") or {}):
            if dep not in services:
                problem(f"compose: {name} depends on the unknown service {dep}")
        if name in ROLES:
            if (s.get("depends_on") or {}).get("migrate", {}).get("condition") != "service_completed_successfully":
                problem(f"compose: {name} must wait for migrate to complete")
            if s.get("command") != [name]:
                problem(f"compose: {name} runs {s.get('command')}")
            hc = s.get("healthcheck", {}).get("test", [])
            port = {"gateway": "8080", "admin": "8081"}.get(name, "9100")
            if port not in hc:
                problem(f"compose: {name}'s healthcheck does not probe port {port}")
        if name in WORKERS:
            iid = (s.get("environment") or {}).get("TRIBUTARY_WORKERS_INSTANCE_ID")
            if not iid:
                problem(f"compose: {name} has no TRIBUTARY_WORKERS_INSTANCE_ID")
            elif iid in ids:
                problem(f"compose: {name} and {ids[iid]} share the instance id {iid}")
            ids[iid] = name
    env = services.get("kafka", {}).get("environment", {})
    if "broker" not in env.get("KAFKA_PROCESS_ROLES", "") or "controller" not in env.get("KAFKA_PROCESS_ROLES", ""):
        problem("compose: Kafka must run in KRaft mode (broker,controller)")
    if env.get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR") != "1":
        problem("compose: one broker needs KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1 (exactly-once stages)")
    # Prometheus scrapes every role at the port it serves.
    prom = yaml.safe_load(open(os.path.join(root, "deploy/prometheus/prometheus.yml")))
    targets = {}
    for sc in prom["scrape_configs"]:
        for st in sc.get("static_configs", []):
            for t in st["targets"]:
                targets[st.get("labels", {}).get("role")] = t
    for role in ROLES:
        port = {"gateway": "8080", "admin": "8081"}.get(role, "9100")
        if targets.get(role) != f"{role}:{port}":
            problem(f"prometheus.yml: role {role} should be scraped at {role}:{port}, not {targets.get(role)}")


# ------------------------------------------------------------------------------------ docker

def check_docker(root):
    path = os.path.join(root, "deploy/docker/Dockerfile")
    out = run(["hadolint", "--failure-threshold", "info", path])
    if out.returncode != 0:
        problem(f"hadolint: {out.stdout.strip()} {out.stderr.strip()}")
    text = open(path).read()
    lines = [l for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        problem("Dockerfile: not multi-stage")
    final = lines[lines.index(froms[-1]):]
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problem("Dockerfile: the runtime stage must switch to a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        problem("Dockerfile: USER should be numeric (Kubernetes runAsNonRoot checks the uid)")
    if not any(l.upper().startswith("HEALTHCHECK ") for l in final):
        problem("Dockerfile: no HEALTHCHECK")
    if not any(l.upper().startswith("ENTRYPOINT ") and "tributary" in l for l in final):
        problem("Dockerfile: ENTRYPOINT is not the tributary binary")
    for l in lines:
        if l.upper().startswith("COPY ") and "--from" not in l:
            srcs = [a for a in l.split()[1:-1] if not a.startswith("--")]
            for s in srcs:
                if s != "." and not os.path.exists(os.path.join(root, s)):
                    problem(f"Dockerfile: COPY {s}: not in the build context")
    ignore = open(os.path.join(root, ".dockerignore")).read().split()
    for must in ["target/", ".git/", ".services/"]:
        if must not in ignore:
            problem(f".dockerignore: {must} is not excluded")
    hc = os.path.join(root, "deploy/docker/healthcheck.sh")
    if not os.access(hc, os.X_OK):
        problem("deploy/docker/healthcheck.sh is not executable")


# ------------------------------------------------------------------------------------ grafana

def check_grafana(root):
    gdir = os.path.join(root, "deploy/grafana")
    dash = json.load(open(os.path.join(gdir, "dashboards/tributary.json")))
    if not dash.get("uid") or not dash.get("title"):
        problem("dashboard: uid and title are required")
    ids = set()
    for p in dash["panels"]:
        if p["id"] in ids:
            problem(f"dashboard: panel id {p['id']} repeats")
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"dashboard: panel {p['title']!r} does not use the datasource variable")
        if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
            problem(f"dashboard: panel {p['title']!r} has no query")
        g = p.get("gridPos", {})
        if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
            problem(f"dashboard: panel {p['title']!r} has a bad gridPos {g}")
    ds = yaml.safe_load(open(os.path.join(gdir, "provisioning/datasources/prometheus.yml")))
    uids = [d.get("uid") for d in ds["datasources"]]
    var = [v for v in dash["templating"]["list"] if v["name"] == "datasource"]
    if not var or var[0]["current"]["value"] not in uids:
        problem("dashboard: the datasource variable's default is not a provisioned datasource uid")
    prov = yaml.safe_load(open(os.path.join(gdir, "provisioning/dashboards/tributary.yml")))
    paths = [p["options"]["path"] for p in prov["providers"]]
    compose = yaml.safe_load(open(os.path.join(root, "deploy/compose/compose.yaml")))
    mounts = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]]
    for p in paths:
        if p not in mounts:
            problem(f"grafana provisioning reads {p}, which compose does not mount")


def main():
    root, what = sys.argv[1], sys.argv[2]
    {"kubernetes": check_kubernetes, "compose": check_compose, "docker": check_docker, "grafana": check_grafana}[what](root)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{what}: ok")


if __name__ == "__main__":
    main()
