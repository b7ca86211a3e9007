#!/usr/bin/env python3
"""Checks the shape of compose.yaml: services, KRaft Kafka, worker commands and env, ports.

    scripts/check-compose.py [path/to/compose.yaml]

Exits 0 and prints "compose.yaml: ok (N services)", or exits 1 naming every problem.
YAML anchors and merge keys (`<<: *x`) are resolved by the YAML loader.
"""
import os
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("check-compose: PyYAML is missing; install it (apt-get install python3-yaml "
             "or pip install pyyaml)")

WORKERS = ["entry-ingest", "store-scorer", "ka-prewarmer", "push-producer", "recommend-api"]
REQUIRED_SERVICES = ["kafka", "redis", "postgres", "topics"] + WORKERS
WORKER_ENV = [
    "PREWARM_KAFKA_BOOTSTRAP_SERVERS", "PREWARM_REDIS_HOST", "PREWARM_REDIS_PORT",
    "PREWARM_REDIS_PASSWORD", "PREWARM_POSTGRES_URL", "PREWARM_POSTGRES_PASSWORD",
    "PREWARM_ADMIN_PORT", "PREWARM_ADMIN_TOKEN",
]
PUSH_ENV = ["PREWARM_PUSH_AB_URL", "PREWARM_PUSH_REC_URL", "PREWARM_PUSH_MATERIAL_URL"]


def environment(service):
    """The service's environment as a dict, from either the mapping or the list form."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return env
    return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)


def host_ports(entry):
    """Host ports an entry of `ports:` publishes (none when the host port is ephemeral)."""
    if isinstance(entry, dict):  # long syntax
        published = entry.get("published")
        spec = "" if published is None else str(published)
    else:
        parts = str(entry).split("/")[0].rsplit(":", 2)  # [ip:]host:container or container
        spec = parts[-2] if len(parts) >= 2 else ""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", spec)
    if not match:
        return []
    low = int(match.group(1))
    return list(range(low, int(match.group(2) or low) + 1))


def check(doc):
    problems = []
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict):
        return ["no `services:` mapping"], 0
    for name in REQUIRED_SERVICES:
        if name not in services:
            problems.append(f"service `{name}` is missing")

    kafka = services.get("kafka") or {}
    kafka_env = environment(kafka)
    if "kafka" in services and not kafka_env.get("KAFKA_PROCESS_ROLES"):
        problems.append("kafka: KAFKA_PROCESS_ROLES is not set (KRaft mode expected)")
    if any("zookeeper" in name for name in services) or any(
            "ZOOKEEPER" in key for key in kafka_env):
        problems.append("kafka: ZooKeeper is configured; the broker must run in KRaft mode")

    for name in WORKERS:
        service = services.get(name)
        if service is None:
            continue
        if not service.get("command"):
            problems.append(f"{name}: no `command`")
        env = environment(service)
        required = WORKER_ENV + (PUSH_ENV if name == "push-producer" else [])
        for key in required:
            if env.get(key) in (None, ""):
                problems.append(f"{name}: environment variable {key} is missing")

    publishers = {}
    for name, service in services.items():
        for entry in (service or {}).get("ports") or []:
            for port in host_ports(entry):
                publishers.setdefault(port, []).append(name)
    for port, names in sorted(publishers.items()):
        if len(names) > 1:
            problems.append(f"host port {port} is published by more than one service: "
                            + ", ".join(names))
    return problems, len(services)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "compose.yaml")
    label = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)
    except OSError as error:
        sys.exit(f"{label}: cannot read: {error.strerror}")
    except yaml.YAMLError as error:
        sys.exit(f"{label}: not valid YAML: {error}")
    problems, count = check(doc)
    if problems:
        for problem in problems:
            print(f"{label}: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"{label}: ok ({count} services)")


if __name__ == "__main__":
    main()
