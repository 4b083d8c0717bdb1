#!/usr/bin/env bash
# Development RabbitMQ from Debian's rabbitmq-server, on loopback only.
#
#   rabbitmq.sh up       install if missing, start, wait until AMQP and management answer
#   rabbitmq.sh down     stop the node this script started (and nothing else)
#   rabbitmq.sh restart  down + up, keeping durable queues and persistent messages
#   rabbitmq.sh status   say whether it runs
#
# State, logs and the pid file live in .local/rabbitmq/ of the repository.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
LOG_TAG=rabbitmq
# shellcheck source=lib.sh
. "$here/lib.sh"
state="$root/.local/rabbitmq"
rmq_bin=/usr/lib/rabbitmq/bin
amqp_port=${WARREN_AMQP_PORT:-5672}
mgmt_port=${WARREN_MANAGEMENT_PORT:-15672}

export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-warren@localhost}
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$amqp_port
export RABBITMQ_DIST_PORT=$((amqp_port + 20000))
export ERL_EPMD_ADDRESS=127.0.0.1
# Erlang distribution (CLI tools talk to the node through it) on loopback too.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CONFIG_FILE="$state/rabbitmq.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$state/enabled_plugins"
export RABBITMQ_MNESIA_BASE="$state/mnesia"
export RABBITMQ_LOG_BASE="$state/log"
export RABBITMQ_PID_FILE="$state/rabbitmq.pid"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

our_pid() {
  [ -f "$state/server.pid" ] || return 1
  local pid
  pid=$(cat "$state/server.pid")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install() {
  [ -x "$rmq_bin/rabbitmq-server" ] && return 0
  log "installing Debian's rabbitmq-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  # The package's own service may have been started by the init system; it must not
  # hold our ports or listen beyond loopback.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop rabbitmq-server 2>/dev/null || true; fi
}

write_config() {
  mkdir -p "$state/log" "$state/mnesia"
  cat >"$state/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$amqp_port
management.tcp.ip = 127.0.0.1
management.tcp.port = $mgmt_port
# One-second statistics so that the management API's counts and rates are fresh
# enough for the autoscaler's reaction benchmark; the broker default is 5 s.
collect_statistics_interval = 1000
CONF
  echo '[rabbitmq_management].' >"$state/enabled_plugins"
}

wait_ready() {
  local deadline=$((SECONDS + 90))
  until port_open "$amqp_port" && port_open "$mgmt_port" \
      && curl -fsS -u "$WARREN_MANAGEMENT_USERNAME:$WARREN_MANAGEMENT_PASSWORD" \
        "http://127.0.0.1:$mgmt_port/api/overview" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "did not come up within 90 s; last log lines:"
      tail -n 30 "$state/server.log" >&2 || true
      exit 1
    fi
    if ! our_pid >/dev/null; then
      log "the node exited during start; last log lines:"
      tail -n 30 "$state/server.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

up() {
  if our_pid >/dev/null || port_open "$amqp_port"; then
    log "already running on 127.0.0.1:$amqp_port (management :$mgmt_port)"
    return 0
  fi
  install
  command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }
  write_config
  local t0=$SECONDS
  # rabbitmq-server execs the Erlang VM, so $! is the node's own pid.
  nohup "$rmq_bin/rabbitmq-server" >"$state/server.log" 2>&1 </dev/null &
  echo $! >"$state/server.pid"
  wait_ready
  log "up on amqp://127.0.0.1:$amqp_port, management http://127.0.0.1:$mgmt_port ($((SECONDS - t0)) s)"
}

down() {
  local pid
  if ! pid=$(our_pid); then
    log "not started by this script; nothing to stop"
    rm -f "$state/server.pid"
    return 0
  fi
  "$rmq_bin/rabbitmqctl" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$state/server.pid"
  log "stopped"
}

status() {
  if our_pid >/dev/null; then log "running (pid $(our_pid))"
  elif port_open "$amqp_port"; then log "a broker not started by this script answers on :$amqp_port"
  else log "not running"; return 1; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  restart) down; up ;;
  status) status ;;
  *) echo "usage: $0 up|down|restart|status" >&2; exit 2 ;;
esac
