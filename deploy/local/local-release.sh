# shellcheck shell=bash
# The chart on the local cluster, as test-e2e.sh and demo-autoscale.sh install it
# (sourced; needs env.sh, lib.sh, HERE and a `k` function for kubectl):
#   fresh_images LOG        build the images (`make images`) and import them into the
#                           real node's containerd, so pods run the current code
#   local_namespace NS      NS under the `restricted` Pod Security Standard, with the
#                           broker as a Service named rabbitmq (headless; its endpoint
#                           is the node's forwarder to the loopback RabbitMQ)
#   local_values GRACE      chart values that put every pod on the real node with the
#                           imported images, workers draining for GRACE seconds
#   install_seed NS DIR [VALUES]
#                           `helm install warren` of the chart with the seed's workers
#                           (VALUES, examples/seed.yaml) in a fresh NS, queue_a and queue_b
#                           emptied first, the local values in DIR/values.yaml (needs a
#                           `helm_` function)
#   start_sampler NS DIR S  sim_check_sample.py sampling NS's worker Deployments and
#                           their queues every S seconds into DIR/samples.csv, through a
#                           kubectl proxy; both pids appended to the caller's `pids`
#                           array (its cleanup kills them), the sampler's in `sampler`;
#                           returns after the first sample. `touch DIR/stop` ends it.

CONTAINERD_SOCK="$WARREN_STATE/node/containerd/containerd.sock"

fresh_images() {
  local out="$1"
  bash "$HERE/images.sh" build >"$out" 2>&1 || {
    tail -20 "$out"
    die "make images failed"
  }
  bash "$HERE/images.sh" import "$CONTAINERD_SOCK" >>"$out" 2>&1 ||
    die "importing the images into $CONTAINERD_SOCK failed (log: $out)"
}

local_namespace() {
  local ns="$1"
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: v1
kind: Service
metadata: {name: rabbitmq, namespace: $ns}
spec:
  clusterIP: None
  ports: [{name: amqp, port: $WARREN_AMQP_PORT}, {name: http, port: $WARREN_MANAGEMENT_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: rabbitmq-node
  namespace: $ns
  labels: {kubernetes.io/service-name: rabbitmq}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"]}]
ports:
  - {name: amqp, port: $WARREN_AMQP_PORT, protocol: TCP}
  - {name: http, port: $WARREN_MANAGEMENT_PORT, protocol: TCP}
YAML
}

local_values() {
  cat <<YAML
image: {pullPolicy: Never}
nodeSelector: {$REAL_NODE_LABEL: "true"}
tolerations: [{key: $REAL_NODE_TAINT_KEY, operator: Exists, effect: NoSchedule}]
workers:
  image: {pullPolicy: Never}
  gracePeriodSeconds: $1
  nodeSelector: {$REAL_NODE_LABEL: "true"}
  tolerations: [{key: $REAL_NODE_TAINT_KEY, operator: Exists, effect: NoSchedule}]
YAML
}

install_seed() {
  local ns="$1" dir="$2" seed="${3:-$WARREN_ROOT/charts/warren/examples/seed.yaml}" q
  k delete namespace "$ns" --ignore-not-found --wait --timeout=60s >/dev/null
  local_namespace "$ns"
  for q in queue_a queue_b; do mgmt "/api/queues/%2f/$q/contents" -X DELETE >/dev/null 2>&1 || true; done
  local_values 30 >"$dir/values.yaml"
  helm_ install warren "$WARREN_ROOT/charts/warren" -n "$ns" --wait --timeout 120s \
    -f "$seed" -f "$dir/values.yaml" >/dev/null
}

start_sampler() {
  local ns="$1" dir="$2" interval="$3" api
  # kubectl itself in the background (not the k function's subshell), so that its pid is $!.
  kubectl --kubeconfig="$WARREN_KUBECONFIG" proxy --port=0 >"$dir/proxy.log" 2>&1 &
  pids+=("$!")
  wait_for "kubectl proxy" 20 grep -q 'Starting to serve' "$dir/proxy.log" || die "kubectl proxy did not start"
  api="http://$(sed -n 's/^Starting to serve on //p' "$dir/proxy.log" | head -1)"
  rm -f "$dir/stop"
  python3 "$HERE/sim_check_sample.py" "$api" "$ns" "$dir" "$dir/stop" --interval "$interval" \
    2>"$dir/sampler.log" &
  sampler=$!
  pids+=("$sampler")
  wait_for "the first sample" 20 sampled "$dir" || die "the sampler wrote nothing: $dir/sampler.log"
}
sampled() { [[ -n "$(tail -n +2 "$1/samples.csv" 2>/dev/null)" ]]; } # dir
