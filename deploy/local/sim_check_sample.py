"""The sampler of deploy/local/sim-check-record.sh: what the cluster did during a
recorded autoscaling run, for checking the operator's simulator against it.

Every INTERVAL seconds (0.5), for each worker Deployment that a TaskQueue of NAMESPACE
scales: its spec.replicas and its Ready worker pods (Ready condition True, not being
deleted), read through `kubectl proxy` at API_URL, and its queue's ready and unacked
counts from the RabbitMQ management API (the vhost's listing with queue totals, current
when read; found as lib.sh finds it: WARREN_MANAGEMENT_URL, _USERNAME, _PASSWORD).
One row per queue and sample in OUT_DIR/samples.csv:

    unix_s,queue,spec_replicas,ready_pods,ready,unacked

(unix_s: when the sample's reads began). Beside it a watch of the worker pods writes
OUT_DIR/pods.jsonl, a line per change it saw, with the time it saw it: pods that were
created and deleted between two samples are there too. Runs until STOP_FILE exists.

usage: sim_check_sample.py API_URL NAMESPACE OUT_DIR STOP_FILE [--interval S]
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

WORKER_SELECTOR = "app.kubernetes.io/component=worker"
WORKER_LABEL = "warren.dev/worker"
HEADER = "unix_s,queue,spec_replicas,ready_pods,ready,unacked"


def get_json(url, headers=None, timeout=5.0):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def management_headers():
    user = os.environ.get("WARREN_MANAGEMENT_USERNAME", "guest")
    password = os.environ.get("WARREN_MANAGEMENT_PASSWORD", "guest")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def is_ready(pod):
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def targets(taskqueues):
    """{Deployment name: queue} of the TaskQueues' scale targets."""
    return {
        tq["spec"]["scaleTargetRef"]["name"]: tq["spec"]["queue"]
        for tq in taskqueues.get("items", [])
    }


def rows(unix_s, queue_of, deployments, pods, queues):
    """One sample's CSV rows: the listings of Deployments, pods and queues, combined."""
    replicas = {
        d["metadata"]["name"]: d.get("spec", {}).get("replicas", 0)
        for d in deployments.get("items", [])
    }
    ready_pods = {}
    for pod in pods.get("items", []):
        worker = pod["metadata"].get("labels", {}).get(WORKER_LABEL)
        if is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            ready_pods[worker] = ready_pods.get(worker, 0) + 1
    counts = {q.get("name"): q for q in queues}
    out = []
    for deployment, queue in sorted(queue_of.items(), key=lambda item: item[1]):
        q = counts.get(queue, {})
        out.append(
            f"{unix_s:.3f},{queue},{replicas.get(deployment, '')},"
            f"{ready_pods.get(deployment, 0)},{q.get('messages_ready', '')},"
            f"{q.get('messages_unacknowledged', '')}"
        )
    return out


def pod_record(seen_s, kind, pod):
    """What the watch keeps of one pod event: its times and readiness."""
    meta = pod["metadata"]
    ready = next(
        (c for c in pod.get("status", {}).get("conditions") or [] if c.get("type") == "Ready"),
        {},
    )
    return {
        "seen_s": round(seen_s, 3),
        "event": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "worker": meta.get("labels", {}).get(WORKER_LABEL),
        "created": meta.get("creationTimestamp"),
        "deleting": meta.get("deletionTimestamp"),
        "phase": pod.get("status", {}).get("phase"),
        "ready": ready.get("status") == "True",
        "ready_since": ready.get("lastTransitionTime") if ready.get("status") == "True" else None,
    }


def watch_pods(api, namespace, path):
    """Follows the worker pods until the process ends, appending to `path`."""
    base = f"{api}/api/v1/namespaces/{namespace}/pods?labelSelector="
    base += urllib.parse.quote(WORKER_SELECTOR)
    with path.open("a") as out:

        def write(kind, pod):
            out.write(json.dumps(pod_record(time.time(), kind, pod)) + "\n")
            out.flush()

        version = None
        while True:
            try:
                if version is None:
                    listing = get_json(base)
                    for pod in listing.get("items", []):
                        write("LISTED", pod)
                    version = listing["metadata"]["resourceVersion"]
                url = f"{base}&watch=1&resourceVersion={version}&timeoutSeconds=600"
                with urllib.request.urlopen(url, timeout=660) as stream:
                    for line in stream:
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            version = None  # expired (410): list again
                            break
                        write(event["type"], event["object"])
                        version = event["object"]["metadata"]["resourceVersion"]
            except (OSError, ValueError, KeyError) as error:
                print(f"sim_check_sample: pod watch: {error}; again", file=sys.stderr)
                time.sleep(0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("api_url")
    p.add_argument("namespace")
    p.add_argument("out_dir", type=Path)
    p.add_argument("stop_file", type=Path)
    p.add_argument("--interval", type=float, default=0.5)
    a = p.parse_args()
    api, ns = a.api_url.rstrip("/"), a.namespace
    management = os.environ.get("WARREN_MANAGEMENT_URL", "http://127.0.0.1:15672").rstrip("/")
    auth = management_headers()
    selector = urllib.parse.quote(WORKER_SELECTOR)
    queue_of = targets(get_json(f"{api}/apis/warren.dev/v1alpha1/namespaces/{ns}/taskqueues"))
    if not queue_of:
        sys.exit(f"sim_check_sample: no TaskQueues in {ns}")
    a.out_dir.mkdir(parents=True, exist_ok=True)
    threading.Thread(
        target=watch_pods, args=(api, ns, a.out_dir / "pods.jsonl"), daemon=True
    ).start()
    queues_url = (
        f"{management}/api/queues/%2f?disable_stats=true&enable_queue_totals=true"
        "&columns=name,messages_ready,messages_unacknowledged"
    )
    with (a.out_dir / "samples.csv").open("w") as out:
        out.write(HEADER + "\n")
        next_at = time.time()
        while not a.stop_file.exists():
            began = time.time()
            try:
                queues = get_json(queues_url, auth)
                deployments = get_json(
                    f"{api}/apis/apps/v1/namespaces/{ns}/deployments?labelSelector={selector}"
                )
                pods = get_json(f"{api}/api/v1/namespaces/{ns}/pods?labelSelector={selector}")
                out.write("\n".join(rows(began, queue_of, deployments, pods, queues)) + "\n")
                out.flush()
            except (OSError, ValueError) as error:
                print(f"sim_check_sample: sample at {began:.3f} skipped: {error}", file=sys.stderr)
            # On a fixed grid; a sample that overran skips the slots it missed.
            next_at += a.interval
            while next_at <= time.time():
                next_at += a.interval
            time.sleep(max(0.0, next_at - time.time()))


if __name__ == "__main__":
    main()
