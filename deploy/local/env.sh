# shellcheck shell=bash disable=SC2034
# Source this file (`. deploy/local/env.sh`) to get the pinned tools
# (kubectl, helm, kwok, etcd, kube-*) on PATH and KUBECONFIG pointing at the
# local cluster that `deploy/local/cluster.sh up` starts.
# The deploy/local scripts source it too, for the paths below.

WARREN_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
WARREN_ROOT="$(cd "$WARREN_LOCAL_DIR/../.." && pwd)"
# shellcheck source=versions.env
. "$WARREN_LOCAL_DIR/versions.env"

WARREN_CACHE="${WARREN_CACHE:-$HOME/.cache/warren}"
# One directory per component and version: bumping a pin builds into a new dir.
WARREN_K8S_BIN="$WARREN_CACHE/bin/kubernetes-$KUBERNETES_VERSION"
WARREN_ETCD_BIN="$WARREN_CACHE/bin/etcd-$ETCD_VERSION"
WARREN_KWOK_BIN="$WARREN_CACHE/bin/kwok-$KWOK_VERSION"
WARREN_HELM_BIN="$WARREN_CACHE/bin/helm-$HELM_VERSION"

# Cluster state lives in the (git-ignored) .local/ of the repo.
WARREN_STATE="$WARREN_ROOT/.local/cluster"
WARREN_KUBECONFIG="$WARREN_ROOT/.local/kubeconfig"

export WARREN_CACHE WARREN_ROOT
for _warren_d in "$WARREN_HELM_BIN" "$WARREN_KWOK_BIN" "$WARREN_ETCD_BIN" "$WARREN_K8S_BIN"; do
  case ":$PATH:" in
    *":$_warren_d:"*) ;;
    *) PATH="$_warren_d:$PATH" ;;
  esac
done
unset _warren_d
export PATH
export KUBECONFIG="$WARREN_KUBECONFIG"
