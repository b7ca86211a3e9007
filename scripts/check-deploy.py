#!/usr/bin/env python3
"""Checks deploy/kubernetes against the workers and topics.md.

    scripts/check-deploy.py BIN_DIR   (BIN_DIR holds the built workers, e.g. .build/debug)

Every manifest parses and is in the kustomization; each worker's Deployment sets only the
PREWARM_* settings the worker declares (its --help), its probes and ports match its settings,
it has resources, a PodDisruptionBudget, and a grace period above its shutdown bound; each
consumer worker scales on its own group's lag of its own topic, never past the topic's
partitions (topics.md). Exits 0 printing "deploy/kubernetes: ok ...", or 1 naming every problem.
"""
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "kubernetes")
WORKERS = ["entry-ingest", "store-scorer", "recommend-api", "ka-prewarmer", "push-producer"]
problems = []


def problem(text):
    problems.append(text)


def topics():
    """topics.md's table: topic -> (partitions, consumer group or None)."""
    table = {}
    with open(os.path.join(ROOT, "topics.md"), encoding="utf-8") as handle:
        for line in handle:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == 6 and cells[0].startswith("`"):
                group = re.fullmatch(r"`([^`]+)`", cells[4])
                table[cells[0].strip("`")] = (int(cells[2]), group.group(1) if group else None)
    return table


def declared(binary):
    """The PREWARM_* settings a worker's --help lists, and whether it takes PREWARM_KAFKA_*."""
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    names = set(re.findall(r"PREWARM_[A-Z0-9_]+", text))
    return {name for name in names if not name.endswith("_")}, "PREWARM_KAFKA_" in names


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binaries = sys.argv[1]
    documents = {}
    for name in sorted(os.listdir(DEPLOY)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(DEPLOY, name), encoding="utf-8") as handle:
            try:
                documents[name] = [doc for doc in yaml.safe_load_all(handle) if doc]
            except yaml.YAMLError as error:
                problem(f"{name} does not parse: {error}")
    kustomization = (documents.get("kustomization.yaml") or [{}])[0]
    listed = set(kustomization.get("resources", []))
    for name in documents:
        if name != "kustomization.yaml" and name not in listed:
            problem(f"{name} is not in kustomization.yaml's resources")
    for name in listed - set(documents):
        problem(f"kustomization.yaml lists {name}, which does not exist")

    objects = [doc for name, docs in documents.items() if name != "kustomization.yaml" for doc in docs]
    by_kind = {}
    for doc in objects:
        by_kind.setdefault(doc.get("kind"), {})[doc["metadata"]["name"]] = doc
    config = {name: doc.get("data", {}) for name, doc in by_kind.get("ConfigMap", {}).items()}
    secrets = {name: doc.get("stringData", {}) or doc.get("data", {}) for name, doc in by_kind.get("Secret", {}).items()}
    table = topics()

    for worker in WORKERS:
        deployment = by_kind.get("Deployment", {}).get(worker)
        if deployment is None:
            problem(f"no Deployment for {worker}")
            continue
        if "replicas" in deployment["spec"]:
            problem(f"{worker}: its Deployment sets replicas, which its autoscaler owns (every apply would reset it)")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        if container.get("command", [None])[0] != worker:
            problem(f"{worker}: the container runs {container.get('command')}, not {worker}")
        settings, takes_kafka = declared(os.path.join(binaries, worker))
        env = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                name = source["configMapRef"]["name"]
                if name not in config:
                    problem(f"{worker}: ConfigMap {name} does not exist")
                env.update(config.get(name, {}))
            if "secretRef" in source:
                name = source["secretRef"]["name"]
                if name not in secrets:
                    problem(f"{worker}: Secret {name} does not exist")
                env.update(secrets.get(name, {}))
        for item in container.get("env", []):
            env[item["name"]] = item.get("value", "(from the pod)")
        for name in sorted(env):
            if not name.startswith("PREWARM_"):
                continue
            if name.startswith("PREWARM_KAFKA_") and name not in settings:
                if not takes_kafka:
                    problem(f"{worker}: sets {name}, but it uses no Kafka")
            elif name not in settings:
                problem(f"{worker}: sets {name}, which it does not declare (--help)")
        ports = {port.get("name"): port["containerPort"] for port in container.get("ports", [])}
        admin = int(env.get("PREWARM_ADMIN_PORT", "8080"))
        if ports.get("admin") != admin:
            problem(f"{worker}: containerPort admin is {ports.get('admin')}, PREWARM_ADMIN_PORT is {admin}")
        for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ("admin", admin):
                problem(f"{worker}: {probe} must GET {path} on the admin port, is {get}")
        if worker == "recommend-api":
            http = int(env.get("PREWARM_HTTP_PORT", "8081"))
            if ports.get("http") != http:
                problem(f"recommend-api: containerPort http is {ports.get('http')}, PREWARM_HTTP_PORT is {http}")
            service = by_kind.get("Service", {}).get(worker)
            if service is None:
                problem("recommend-api has no Service")
            else:
                for port in service["spec"]["ports"]:
                    if port["targetPort"] not in ports:
                        problem(f"recommend-api's Service targets port {port['targetPort']}, which the pod does not name")
            if worker not in by_kind.get("HorizontalPodAutoscaler", {}):
                problem("recommend-api has no HorizontalPodAutoscaler (it scales on CPU)")
        resources = container.get("resources", {})
        if not resources.get("requests", {}).get("memory") or not resources.get("limits", {}).get("memory"):
            problem(f"{worker}: memory requests and limits must be set")
        bound = int(env.get("PREWARM_SHUTDOWN_TIMEOUT_S", "25"))
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace < bound + 5:
            problem(f"{worker}: terminationGracePeriodSeconds {grace} is not above PREWARM_SHUTDOWN_TIMEOUT_S {bound} (+5 s)")
        if not any(pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
                   for pdb in by_kind.get("PodDisruptionBudget", {}).values()):
            problem(f"{worker}: no PodDisruptionBudget selects its pods")

        group_topics = [topic for topic, (_, group) in table.items() if group == worker]
        scaled = by_kind.get("ScaledObject", {}).get(worker)
        if not group_topics:
            if scaled is not None:
                problem(f"{worker} consumes no topic, but has a ScaledObject")
            continue
        if scaled is None:
            problem(f"{worker}: no KEDA ScaledObject (it scales on its group's lag)")
            continue
        if scaled["spec"]["scaleTargetRef"]["name"] != worker:
            problem(f"{worker}: its ScaledObject scales {scaled['spec']['scaleTargetRef']['name']}")
        partitions = table[group_topics[0]][0]
        if scaled["spec"]["maxReplicaCount"] > partitions:
            problem(f"{worker}: maxReplicaCount {scaled['spec']['maxReplicaCount']} is more than {group_topics[0]}'s {partitions} partitions")
        kafka = [trigger for trigger in scaled["spec"]["triggers"] if trigger["type"] == "kafka"]
        if not kafka:
            problem(f"{worker}: its ScaledObject has no kafka trigger")
        for trigger in kafka:
            metadata = trigger["metadata"]
            if metadata.get("consumerGroup") != worker or metadata.get("topic") not in group_topics:
                problem(f"{worker}: its kafka trigger watches {metadata.get('consumerGroup')} on {metadata.get('topic')}")
            if metadata.get("bootstrapServers") != env.get("PREWARM_KAFKA_BOOTSTRAP_SERVERS"):
                problem(f"{worker}: its kafka trigger's brokers differ from PREWARM_KAFKA_BOOTSTRAP_SERVERS")

    if problems:
        for text in problems:
            print(f"check-deploy: {text}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy/kubernetes: ok ({len(objects)} objects, {len(WORKERS)} workers)")


main()
