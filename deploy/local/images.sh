#!/usr/bin/env bash
# warren's container images, built without a Docker engine and without a registry.
#
#   images.sh build                      static musl binaries, then one OCI archive per image
#                                        in .local/images/ (make images)
#   images.sh check                      the images in a throwaway containerd: user, --help,
#                                        names through /etc/hosts and DNS, a task from the
#                                        dispatcher's image to the worker's (make images-check)
#   images.sh import SOCKET [NAMESPACE]  import every archive into the containerd listening on
#                                        SOCKET, namespace k8s.io by default (builds the archives
#                                        first when one is missing); ctr unpacks into
#                                        $CONTAINERD_SNAPSHOTTER when set
#   images.sh ref NAME                   the reference of image NAME, e.g. for a sandbox_image
#   images.sh archive NAME               the OCI archive of image NAME
#
# Images (deploy/images/Containerfile, one target each): warren-operator, warren-worker,
# warren-dispatcher at the workspace version, and pause (the local node's pod sandbox),
# named $WARREN_IMAGE_PREFIX/NAME:VERSION (default prefix localhost/warren). Each is one
# stripped static binary, at most 20 MiB. Installs Debian's musl-tools, binutils, buildah
# (build) and containerd, runc (import, check) when missing. buildah runs with
# --pull=never in a network namespace of its own: nothing is fetched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
LOG_TAG=images
# shellcheck source=lib.sh
. "$here/lib.sh"

images_dir="$root/deploy/images"
out="$root/.local/images"
context="$out/context"
prefix=${WARREN_IMAGE_PREFIX:-localhost/warren}
triple="$(uname -m)-unknown-linux-musl"
binaries=(warren-operator warren-worker warren-dispatcher)
images=("${binaries[@]}" pause)
pause_version=3.10
max_bytes=$((20 * 1024 * 1024))

workspace_version() {
  sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml"
}

version_of() { # image
  if [ "$1" = pause ]; then echo "$pause_version"; else workspace_version; fi
}

ref() { # image
  known "$1"
  echo "$prefix/$1:$(version_of "$1")"
}

archive() { # image
  known "$1"
  echo "$out/$1.tar"
}

known() { # image
  local i
  for i in "${images[@]}"; do [ "$i" = "$1" ] && return 0; done
  die "unknown image '$1'; images: ${images[*]}"
}

# ensure COMMAND:PACKAGE...: install Debian's PACKAGE for each COMMAND that is missing.
ensure() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian's ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The image tools run in a network namespace of their own when this user may make
# one, so that no step can reach a registry.
offline() {
  if unshare --net true 2>/dev/null; then unshare --net "$@"; else "$@"; fi
}

buildah_cmd=(buildah --root "$out/storage" --runroot "$out/run" --storage-driver vfs)

static_or_die() { # file
  if readelf -lW "$1" | grep -q 'program interpreter' || readelf -dW "$1" | grep -q NEEDED; then
    die "$1 is not a static executable"
  fi
}

compile() {
  ensure musl-gcc:musl-tools strip:binutils buildah:buildah
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  local t0=$SECONDS b
  say "cargo build --release --locked --target $triple (${binaries[*]})"
  (cd "$root" && cargo build --release --locked --target "$triple" \
    -p warren-operator -p warren-worker -p warren-dispatcher)
  log "binaries built in $((SECONDS - t0)) s"
  mkdir -p "$context"
  for b in "${binaries[@]}"; do
    strip --strip-all -o "$context/$b.tmp" "$root/target/$triple/release/$b"
    mv "$context/$b.tmp" "$context/$b"
  done
  musl-gcc -static -Os -s -Wall -Wextra -Werror -DPAUSE_VERSION="\"$pause_version\"" \
    -o "$context/pause" "$images_dir/pause/pause.c"
  for b in "${images[@]}"; do static_or_die "$context/$b"; done
}

# What the archives are made of; they are rebuilt when this changes.
inputs_digest() {
  {
    echo "$prefix $(workspace_version) $pause_version"
    sha256sum "$images_dir/Containerfile" "$images_dir/Containerfile.dockerignore"
    (cd "$context" && sha256sum "${images[@]}")
  } | sha256sum | cut -d' ' -f1
}

build_archives() {
  local t0=$SECONDS image tar version
  version=$(workspace_version)
  rm -rf "$out/storage" "$out/run"
  for image in "${images[@]}"; do
    tar=$(archive "$image")
    offline "${buildah_cmd[@]}" bud --quiet --layers --pull=never --timestamp 0 --identity-label=false \
      --build-arg BINARIES=prebuilt --build-arg VERSION="$version" \
      --build-arg PAUSE_VERSION="$pause_version" --target "$image" \
      --ignorefile "$images_dir/Containerfile.dockerignore" -f "$images_dir/Containerfile" \
      --tag "$(ref "$image")" "$context" >/dev/null
    rm -f "$tar.tmp"
    offline "${buildah_cmd[@]}" push --quiet "$(ref "$image")" "oci-archive:$tar.tmp:$(ref "$image")"
    mv "$tar.tmp" "$tar"
  done
  # The store only served the build: the archives are the result.
  rm -rf "$out/storage" "$out/run"
  log "${#images[@]} images built in $((SECONDS - t0)) s"
}

# blob ARCHIVE DIGEST: the content of one blob of an OCI archive.
blob() { tar -xOf "$1" "blobs/sha256/${2#sha256:}"; }

manifest() { # archive
  blob "$1" "$(tar -xOf "$1" index.json | grep -o 'sha256:[0-9a-f]*' | head -n1)"
}

image_config() { # archive
  blob "$1" "$(manifest "$1" | sed 's/.*"config":{[^}]*"digest":"\(sha256:[0-9a-f]*\)".*/\1/')"
}

layers() { # archive: the digests of its layers
  manifest "$1" | sed 's/.*"layers":\[\([^]]*\)\].*/\1/' | grep -o 'sha256:[0-9a-f]*'
}

# Uncompressed size of an image: its layers as unpacked tars, plus config and manifest.
image_bytes() { # archive
  local tar=$1 layer total
  total=$(($(manifest "$tar" | wc -c) + $(image_config "$tar" | wc -c)))
  for layer in $(layers "$tar"); do
    total=$((total + $(blob "$tar" "$layer" | gzip -dc | wc -c)))
  done
  echo "$total"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

report_sizes() {
  local image tar bytes too_big=0
  printf '%-20s %-46s %10s %12s\n' image reference "size MiB" "archive MiB"
  for image in "${images[@]}"; do
    tar=$(archive "$image")
    bytes=$(image_bytes "$tar")
    printf '%-20s %-46s %10s %12s\n' "$image" "$(ref "$image")" "$(mib "$bytes")" \
      "$(mib "$(stat -c %s "$tar")")"
    if ((bytes > max_bytes)); then
      log "ERROR: $image is $(mib "$bytes") MiB, above the 20 MiB limit"
      too_big=1
    fi
  done
  ((too_big == 0))
}

build() {
  # One build at a time: the repository is shared, and so are .local/images/ and target/.
  mkdir -p "$out"
  exec 9>"$out/.lock"
  if ! flock -n 9; then
    log "waiting for another images.sh build to finish"
    flock 9
  fi
  compile
  local digest
  digest=$(inputs_digest)
  if [ -f "$out/inputs.sha256" ] && [ "$(cat "$out/inputs.sha256")" = "$digest" ] \
    && all_archives_exist; then
    log "archives up to date (binaries, Containerfile and version unchanged)"
  else
    rm -f "$out/inputs.sha256"
    build_archives
    echo "$digest" >"$out/inputs.sha256"
  fi
  exec 9>&-
  say "OCI archives in ${out#"$root/"}/"
  report_sizes
}

all_archives_exist() {
  local image
  for image in "${images[@]}"; do [ -f "$(archive "$image")" ] || return 1; done
}

import() { # socket [namespace]
  local socket=${1:?usage: images.sh import SOCKET [NAMESPACE]} namespace=${2:-k8s.io} image
  ensure ctr:containerd
  [ -S "$socket" ] || die "no containerd socket at $socket"
  all_archives_exist || build
  for image in "${images[@]}"; do
    ctr --address "$socket" --namespace "$namespace" images import "$(archive "$image")" >/dev/null
    log "imported $(ref "$image") into $socket ($namespace)"
  done
}

# --- check: the images in a containerd of their own ----------------------------------

check_dir=""
containerd_pid=""
dns_pid=""
apiserver_pid=""
check_queue=warren-images-check
dns_address=127.0.83.53

c() { ctr --address "$check_dir/containerd.sock" --namespace warren-images-check "$@"; }

check_cleanup() {
  local id target pid
  if [ -n "$containerd_pid" ]; then
    for id in $(c tasks ls -q 2>/dev/null); do c tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $(c containers ls -q 2>/dev/null); do
      c tasks delete "$id" >/dev/null 2>&1 || true
      c containers delete "$id" >/dev/null 2>&1 || true
    done
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
  fi
  for pid in $dns_pid $apiserver_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  mgmt "/api/queues/%2f/$check_queue" -X DELETE >/dev/null 2>&1 || true
  mgmt "/api/queues/%2f/$check_queue.dead-letter" -X DELETE >/dev/null 2>&1 || true
  mgmt "/api/exchanges/%2f/$check_queue" -X DELETE >/dev/null 2>&1 || true
  if [ -n "$check_dir" ] && [ -d "$check_dir" ]; then
    for target in $(findmnt -rn -o TARGET | grep "^$check_dir/" | sort -r); do
      umount -l "$target" 2>/dev/null || true
    done
    rm -rf "$check_dir"
  fi
}

start_containerd() {
  check_dir=$(mktemp -d /tmp/warren-images-check.XXXXXX)
  cat >"$check_dir/config.toml" <<'TOML'
version = 2
# A store for this check only: no CRI, no other snapshotters, nothing but its socket.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
TOML
  containerd --config "$check_dir/config.toml" --root "$check_dir/root" \
    --state "$check_dir/state" --address "$check_dir/containerd.sock" \
    >"$check_dir/containerd.log" 2>&1 &
  containerd_pid=$!
  wait_for "containerd on $check_dir/containerd.sock" 20 c version \
    || { tail -n 20 "$check_dir/containerd.log" >&2; die "containerd did not start"; }
}

# Names as a pod sees them: /etc/hosts and /etc/resolv.conf of this check (the DNS stub
# on loopback, a cluster's search list), never the host's resolver.
write_name_files() {
  printf '127.0.0.1 localhost\n127.0.0.1 rabbitmq\n' >"$check_dir/hosts"
  printf 'nameserver %s\nsearch %s\noptions ndots:5\n' "$dns_address" \
    "warren-test.svc.cluster.local svc.cluster.local cluster.local" >"$check_dir/resolv.conf"
}

# run_image ID IMAGE ARGS...: run IMAGE to completion and print its output; the exit
# status is the container's. Read-only root; the network namespace of this script (so
# loopback reaches the broker) joined by path, because ctr's --net-host would also
# mount the host's /etc/hosts and /etc/resolv.conf over the check's. A caller's
# `local run_opts=(...)` adds ctr run options (--env, --mount).
run_opts=()
run_image() {
  local id=$1 image=$2
  shift 2
  c run --rm --read-only --with-ns "network:/proc/$$/ns/net" "${run_opts[@]}" \
    --mount "type=bind,src=$check_dir/hosts,dst=/etc/hosts,options=rbind:ro" \
    --mount "type=bind,src=$check_dir/resolv.conf,dst=/etc/resolv.conf,options=rbind:ro" \
    "$(ref "$image")" "$id" "$@"
}

# pid_of ID: the host pid of the container's task.
pid_of() { c tasks ls | awk -v id="$1" '$1 == id { print $2 }'; }

# uid_of ID: the real uid of the container's process, as the host sees it.
uid_of() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && awk '/^Uid:/ { print $2 }' "/proc/$pid/status"
}

running() { [ -n "$(pid_of "$1")" ]; }

worker_consuming() { [ "$(queue_consumers "$check_queue")" -ge 1 ]; }

# expect DESCRIPTION PATTERN OUTPUT: pass when OUTPUT has a line matching PATTERN.
expect() {
  if grep -qE -- "$2" <<<"$3"; then pass "$1"; else fail "$1"; printf '%s\n' "$3" | tail -n 5; fi
}

# The image configurations: user, labels, one layer.
check_static_contents() {
  local image config tar user label missing
  for image in "${images[@]}"; do
    tar=$(archive "$image")
    config=$(image_config "$tar")
    user=65532:65532
    [ "$image" = pause ] && user=65535:65535
    expect "$image: configured to run as $user" "\"User\":\"$user\"" "$config"
    missing=""
    for label in "source\":\"https://github.com/warren-dev/warren\"" \
      "version\":\"$(version_of "$image")\"" "licenses\":\"Apache-2.0\"" \
      "title\":\"$image\"" "description\":\""; do
      grep -qF "\"org.opencontainers.image.$label" <<<"$config" || missing+=" ${label%%\"*}"
    done
    if [ -z "$missing" ]; then
      pass "$image: OCI labels source, version $(version_of "$image"), licenses, title, description"
    else
      fail "$image: OCI labels missing:$missing"
    fi
    expect "$image: one layer" '^1$' "$(layers "$tar" | wc -l)"
  done
}

# A task from the dispatcher's image to the worker's, each finding the broker by name:
# the worker through DNS with a cluster's search list, the dispatcher through /etc/hosts.
check_task_flow() {
  local got rc
  python3 -u "$images_dir/stubs.py" dns "$dns_address" \
    rabbitmq.warren-test.svc.cluster.local=127.0.0.1 >"$check_dir/dns.log" 2>&1 &
  dns_pid=$!
  wait_for "the DNS stub on $dns_address" 10 grep -q ready "$check_dir/dns.log" || die "DNS stub did not start"

  run_image worker warren-worker /usr/local/bin/warren-worker \
    --amqp-url 'amqp://guest:guest@rabbitmq.warren-test:5672/%2f' --queue "$check_queue" \
    --name images-check-worker --listen off --grace-period 5s >"$check_dir/worker.log" 2>&1 &
  local worker_run=$!
  if wait_for "the worker container to consume $check_queue" 30 worker_consuming; then
    pass "warren-worker: resolves rabbitmq.warren-test through resolv.conf's search list and connects"
  else
    fail "warren-worker: resolves rabbitmq.warren-test through resolv.conf's search list and connects"
    tail -n 5 "$check_dir/worker.log"
  fi
  expect "the worker's lookups walked the search list to rabbitmq.warren-test.svc.cluster.local" \
    'A rabbitmq.warren-test.svc.cluster.local -> 127.0.0.1' "$(cat "$check_dir/dns.log")"
  log "DNS queries: $(grep -v '^ready$' "$check_dir/dns.log" | sort -u | paste -sd ';')"
  expect "warren-worker: runs as uid 65532" '^65532$' "$(uid_of worker)"

  got=$(run_image dispatcher warren-dispatcher /usr/local/bin/warren-dispatcher --amqp-url 'amqp://guest:guest@rabbitmq:5672/%2f' \
    send --route "task_a=$check_queue" --task task_a --kwargs '{"seconds": 0.1}' --timeout 20s 2>&1) || true
  expect "warren-dispatcher: resolves rabbitmq through /etc/hosts; the task's result names the worker container" \
    '"worker": *"images-check-worker"' "$got"

  c tasks kill -s SIGTERM worker >/dev/null || true
  rc=0
  wait "$worker_run" || rc=$?
  expect "warren-worker: exits 0 on SIGTERM" '^0$' "$rc"
  log "worker's last log line: $(tail -n 1 "$check_dir/worker.log")"
}

# new_ca DIR NAME: a P-256 CA certificate and key (DIR/ca.crt, DIR/ca.key), valid a day.
new_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
}

# run_operator_in_cluster SA_DIR PORT: the operator as a pod runs it, in the background:
# KUBERNETES_SERVICE_HOST and _PORT set, SA_DIR (ca.crt, token, namespace) mounted where
# the kubelet mounts the ServiceAccount's; stopped once it logs its first API failure.
run_operator_in_cluster() {
  local name
  name=$(basename "$1")
  local run_opts=(--env KUBERNETES_SERVICE_HOST=127.0.0.1 --env "KUBERNETES_SERVICE_PORT=$2"
    --mount "type=bind,src=$1,dst=/var/run/secrets/kubernetes.io/serviceaccount,options=rbind:ro")
  run_image "operator-$name" warren-operator /usr/local/bin/warren-operator run \
    --management-url http://127.0.0.1:15672 --metrics-addr 127.0.0.1:0 \
    >"$check_dir/operator-$name.log" 2>&1 &
  local run=$!
  wait_for "the operator ($name CA) to log an API failure" 20 \
    grep -q WARN "$check_dir/operator-$name.log" || true
  c tasks kill -s SIGKILL "operator-$name" >/dev/null 2>&1 || true
  wait "$run" || true
}

# The image has no CA bundle: in a pod, kube trusts the ServiceAccount's ca.crt alone.
# Against a stub apiserver whose certificate that CA signed, requests get through TLS
# with the token; with another CA mounted, none does.
check_operator_in_cluster() {
  local pki="$check_dir/pki" port dir before
  mkdir -p "$pki/cluster" "$pki/other"
  new_ca "$pki/cluster" stub-cluster-ca
  new_ca "$pki/other" another-ca
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kube-apiserver \
    -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$pki/server.ext"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/cluster/ca.crt" -CAkey "$pki/cluster/ca.key" \
    -set_serial 1 -days 1 -extfile "$pki/server.ext" -out "$pki/server.crt" 2>/dev/null
  for dir in cluster other; do
    rm "$pki/$dir/ca.key"
    printf stub-token >"$pki/$dir/token"
    printf default >"$pki/$dir/namespace"
    chmod 0644 "$pki/$dir"/*
  done
  python3 -u "$images_dir/stubs.py" apiserver "$pki/server.crt" "$pki/server.key" \
    >"$check_dir/apiserver.log" 2>&1 &
  apiserver_pid=$!
  wait_for "the stub apiserver" 10 grep -q ready "$check_dir/apiserver.log" \
    || die "the stub apiserver did not start"
  port=$(sed -n 's/^port //p' "$check_dir/apiserver.log")

  run_operator_in_cluster "$pki/cluster" "$port"
  expect "warren-operator: in-cluster config through TLS, trusting the ServiceAccount's ca.crt; token sent" \
    'bearer=yes' "$(cat "$check_dir/apiserver.log")"
  before=$(grep -c 'bearer=' "$check_dir/apiserver.log" || true)
  run_operator_in_cluster "$pki/other" "$port"
  if [ "$(grep -c 'bearer=' "$check_dir/apiserver.log" || true)" = "$before" ] \
    && grep -q 'Connect' "$check_dir/operator-other.log"; then
    pass "warren-operator: with another CA mounted, no request gets through TLS"
  else
    fail "warren-operator: with another CA mounted, no request gets through TLS"
    tail -n 3 "$check_dir/operator-other.log"
  fi
}

check_pause() {
  local rc=0
  c run --rm "$(ref pause)" pause >"$check_dir/pause.log" 2>&1 &
  local pause_run=$!
  wait_for "the pause container" 10 running pause || true
  expect "pause: runs as uid 65535" '^65535$' "$(uid_of pause)"
  c tasks kill -s SIGTERM pause >/dev/null || true
  wait "$pause_run" || rc=$?
  expect "pause: exits 0 on SIGTERM" '^0$' "$rc"
}

check_all() { # the images-check subcommand (lib.sh has check for one check)
  local t0=$SECONDS image got version
  version=$(workspace_version)
  all_archives_exist || build
  ensure containerd:containerd runc:runc python3:python3 openssl:openssl
  say "image contents"
  if report_sizes; then pass "every image at most 20 MiB"; else fail "every image at most 20 MiB"; fi
  check_static_contents
  trap check_cleanup EXIT
  start_containerd
  write_name_files
  say "the images in a throwaway containerd (${check_dir})"
  for image in "${images[@]}"; do
    c images import "$(archive "$image")" >/dev/null
  done
  expect "all images imported" "$(ref pause)" "$(c images ls -q)"
  for image in "${binaries[@]}"; do
    got=$(run_image "$image-version" "$image" "/usr/local/bin/$image" --version 2>&1) || true
    expect "$image: --version prints $version" "^$image $version\$" "$got"
    got=$(run_image "$image-help" "$image" "/usr/local/bin/$image" --help 2>&1) || true
    expect "$image: --help" '^Usage: ' "$got"
  done
  got=$(run_image operator-crd warren-operator /usr/local/bin/warren-operator crd 2>&1) || true
  expect "warren-operator: crd prints the TaskQueue CRD" '^kind: CustomResourceDefinition' "$got"
  got=$(run_image pause-version pause /pause -v 2>&1) || true
  expect "pause: -v prints $pause_version" "^pause $pause_version " "$got"
  check_pause
  check_operator_in_cluster
  check_task_flow
  log "check took $((SECONDS - t0)) s"
  summary
}

case "${1:-}" in
  build) build ;;
  check) check_all ;;
  import) shift; import "$@" ;;
  ref) ref "${2:?usage: images.sh ref NAME}" ;;
  archive) archive "${2:?usage: images.sh archive NAME}" ;;
  *) echo "usage: $0 build|check|import SOCKET [NAMESPACE]|ref NAME|archive NAME" >&2; exit 2 ;;
esac
