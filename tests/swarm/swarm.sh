#!/usr/bin/env bash
# The swarm runtime's test cluster: N Docker engines on this one machine, each
# in its own network namespace, joined into a swarm, with a registry. Adapted
# from shared/recipes/swarm-netns.sh (run end to end on this kind of machine).
#
#   tests/swarm/swarm.sh up [N]   N nodes (default 3); quick when already up
#   tests/swarm/swarm.sh status   what runs; exit 1 when the cluster is not up
#   tests/swarm/swarm.sh down     stop all it started, unmount, delete namespaces
#   tests/swarm/swarm.sh stop I   stop node I's dockerd (a lost node); start I: back
#   tests/swarm/swarm.sh solo     also a lone engine in no swarm (solo-down: gone)
#
# Topology (10.213.0.0/24, this project's own test addresses):
#   netns swn-hub : bridge br0, the "switch"
#   netns swn-nI  : eth0 = 10.213.0.1I (veth to br0); dockerd with its own data,
#                   exec root, pid file and socket $ROOT/nI/docker.sock; hostname nI;
#   host          : swn-h0 = 10.213.0.1 (veth to br0), the nodes' gateway: their
#                   builds reach the package registries through it (NAT, one
#                   iptables rule tagged dotcloud-swarm, removed by down)
#   node 1        : the manager, and the registry (Debian's docker-registry) on
#                   10.213.0.11:5000
# Labels: flavor=live on n2 and n3. The base images of the docker runtime are
# copied from this machine's engine into every node (tests/docker/images.sh
# makes them), so a release image's first pull fetches only its own layer.
# $ROOT/env says DOCKER_HOST, SWARM_REGISTRY and SWARM_NODES for the tests.
set -euo pipefail
ROOT=${SWARM_ROOT:-/tmp/dotcloud-swarm}
NET=10.213.0
REG=$NET.11:5000
D=/usr/bin/docker        # Debian's CLI (the one on PATH may be another)
[ -x $D ] || D=docker
IMAGES=("${DOTCLOUD_DOCKER_PYTHON_IMAGE:-python:3.12-slim}" "${DOTCLOUD_DOCKER_NODE_IMAGE:-node:22-slim}")
TAG=dotcloud-swarm
dk() { local i=$1; shift; DOCKER_HOST=unix://$ROOT/n$i/docker.sock $D "$@"; }
ts() { date +%s%N; }
since() { local ms=$(( ($(ts) - $1) / 1000000 )); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { echo "swarm: $*"; }

nodes_ready() {  # how many nodes the manager sees ready (0 when it does not answer)
  dk 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true
}

network() {
  local N=$1 i
  ip netns add swn-hub; ip -n swn-hub link set lo up
  ip -n swn-hub link add br0 type bridge; ip -n swn-hub link set br0 up
  ip link add swn-h0 type veth peer name h0 netns swn-hub
  ip -n swn-hub link set h0 master br0 up
  ip addr add $NET.1/24 dev swn-h0; ip link set swn-h0 up
  for i in $(seq 1 "$N"); do
    ip netns add swn-n$i; ip -n swn-n$i link set lo up
    ip link add eth0 netns swn-n$i type veth peer name vn$i netns swn-hub
    ip -n swn-hub link set vn$i master br0 up
    ip -n swn-n$i addr add $NET.1$i/24 dev eth0; ip -n swn-n$i link set eth0 up
    ip -n swn-n$i route add default via $NET.1
  done
  sysctl -qw net.ipv4.ip_forward=1
  iptables -t nat -C POSTROUTING -s $NET.0/24 ! -d $NET.0/24 -j MASQUERADE -m comment --comment $TAG \
    2>/dev/null || iptables -t nat -A POSTROUTING -s $NET.0/24 ! -d $NET.0/24 -j MASQUERADE \
    -m comment --comment $TAG
}

registry() {
  mkdir -p $ROOT/registry
  cat > $ROOT/registry/config.yml <<CONF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $ROOT/registry/data}
  delete: {enabled: true}
http: {addr: "$REG"}
CONF
  setsid nsenter --net=/run/netns/swn-n1 docker-registry serve $ROOT/registry/config.yml \
    >$ROOT/registry/log 2>&1 </dev/null & echo $! > $ROOT/registry/pid
}

start_engine() {
  local i=$1
  mkdir -p $ROOT/n$i
  # nsenter --net, not `ip netns exec`: that remounts /sys, hiding
  # /sys/fs/cgroup, and dockerd dies with "Devices cgroup isn't mounted".
  # unshare --uts: each node its own hostname (the swarm's node.hostname).
  setsid nsenter --net=/run/netns/swn-n$i unshare --uts sh -c "hostname n$i; exec dockerd \
    --data-root $ROOT/n$i/data --exec-root $ROOT/n$i/exec --pidfile $ROOT/n$i/dockerd.pid \
    -H unix://$ROOT/n$i/docker.sock \
    --storage-driver=overlay2 --insecure-registry $REG" \
    >>$ROOT/n$i/dockerd.log 2>&1 </dev/null &
}

wait_engine() {
  local i=$1
  for _ in $(seq 1 120); do dk "$i" info >/dev/null 2>&1 && return; sleep 0.5; done
  tail -20 $ROOT/n$i/dockerd.log >&2; exit 1
}

stop_engine() {  # as a node dies: its dockerd stopped, its containers with it
  local i=$1 p
  [ -f $ROOT/n$i/dockerd.pid ] || return 0
  p=$(cat $ROOT/n$i/dockerd.pid); kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$p" 2>/dev/null || true
}

engines() {
  local N=$1 i
  for i in $(seq 1 "$N"); do start_engine "$i"; done
  for i in $(seq 1 "$N"); do wait_engine "$i"; done
}

images() {
  local N=$1 i pids=()
  for image in "${IMAGES[@]}"; do
    $D image inspect "$image" >/dev/null 2>&1 || { say "no $image in this machine's engine" \
      "(tests/docker/images.sh makes it)" >&2; exit 1; }
  done
  [ -s $ROOT/base.tar ] || $D save -o $ROOT/base.tar "${IMAGES[@]}"
  for i in $(seq 1 "$N"); do dk $i load -q -i $ROOT/base.tar >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}

swarm() {
  local N=$1 i tok
  dk 1 swarm init --advertise-addr $NET.11 --listen-addr $NET.11:2377 >/dev/null
  tok=$(dk 1 swarm join-token -q worker)
  for i in $(seq 2 "$N"); do
    dk $i swarm join --token "$tok" --advertise-addr $NET.1$i --listen-addr $NET.1$i:2377 \
      $NET.11:2377 >/dev/null
  done
  for _ in $(seq 1 60); do [ "$(nodes_ready)" -ge "$N" ] && break; sleep 0.5; done
  for i in $(seq 2 "$N"); do
    [ "$i" -le 3 ] && dk 1 node update --label-add flavor=live n$i >/dev/null
  done
}

up() {
  local N=${1:-3} t0 t
  if [ -S $ROOT/n1/docker.sock ] && [ "$(nodes_ready)" -ge "$N" ]; then
    say "already up ($(nodes_ready) nodes)"; return
  fi
  [ ! -e /run/netns/swn-hub ] || down >/dev/null
  t0=$(ts); mkdir -p $ROOT
  network "$N"; registry; engines "$N"; say "network, registry, $N engines: $(since $t0)"
  t=$(ts); images "$N"; say "base images in every node: $(since $t)"
  t=$(ts); swarm "$N"; say "swarm of $(nodes_ready) nodes: $(since $t)"
  for _ in $(seq 1 40); do curl -fs http://$REG/v2/ >/dev/null && break; sleep 0.25; done
  curl -fs http://$REG/v2/ >/dev/null || { cat $ROOT/registry/log >&2; exit 1; }
  printf 'DOCKER_HOST=unix://%s/n1/docker.sock\nSWARM_REGISTRY=%s\nSWARM_NODES=%s\n' \
    "$ROOT" "$REG" "$N" > $ROOT/env
  say "up in $(since $t0)"
}

status() {
  [ -S $ROOT/n1/docker.sock ] && [ "$(nodes_ready)" -ge 1 ] || { say "down"; return 1; }
  dk 1 node ls --format '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}'
  curl -fs http://$REG/v2/_catalog || say "registry not answering"
  echo
  cat $ROOT/env
}

down() {
  local d ns
  solo_down
  for d in $ROOT/n*/; do [ -d "$d" ] && stop_engine "$(basename "$d" | tr -d n)"; done
  [ -f $ROOT/registry/pid ] && { kill "$(cat $ROOT/registry/pid)" 2>/dev/null || true; }
  # A swarm dockerd leaves an nsfs bind mount (exec/netns/default) that would
  # keep its namespace alive after `ip netns del`.
  mount | awk -v r="$ROOT/" 'index($3, r) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l
  for ns in $(ip netns list | awk '/^swn-/{print $1}'); do ip netns del "$ns"; done
  ip link del swn-h0 2>/dev/null || true
  while iptables -t nat -D POSTROUTING -s $NET.0/24 ! -d $NET.0/24 -j MASQUERADE \
    -m comment --comment $TAG 2>/dev/null; do :; done
  [ "${SWARM_KEEP:-0}" = 1 ] || rm -rf $ROOT
  say "down: $(ip netns list | grep -c swn- || true) namespaces and" \
    "$(mount | grep -c " $ROOT/" || true) mounts left"
}

solo() {  # a lone engine in no swarm (10.213.0.20), for `up --runtime swarm` to make one
  local t0; t0=$(ts)
  if [ -S $ROOT/solo/docker.sock ] && DOCKER_HOST=unix://$ROOT/solo/docker.sock $D info \
      >/dev/null 2>&1; then say "solo engine already up"; return; fi
  [ -e /run/netns/swn-hub ] || { say "the cluster is not up: swarm.sh up first" >&2; exit 1; }
  mkdir -p $ROOT/solo
  ip netns add swn-solo; ip -n swn-solo link set lo up
  ip link add eth0 netns swn-solo type veth peer name vsolo netns swn-hub
  ip -n swn-hub link set vsolo master br0 up
  ip -n swn-solo addr add $NET.20/24 dev eth0; ip -n swn-solo link set eth0 up
  ip -n swn-solo route add default via $NET.1
  setsid nsenter --net=/run/netns/swn-solo unshare --uts sh -c "hostname solo; exec dockerd \
    --data-root $ROOT/solo/data --exec-root $ROOT/solo/exec --pidfile $ROOT/solo/dockerd.pid \
    -H unix://$ROOT/solo/docker.sock --storage-driver=overlay2" \
    >>$ROOT/solo/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 120); do DOCKER_HOST=unix://$ROOT/solo/docker.sock $D info >/dev/null 2>&1 \
    && break; sleep 0.5; done
  DOCKER_HOST=unix://$ROOT/solo/docker.sock $D load -q -i $ROOT/base.tar >/dev/null
  say "solo engine up in $(since $t0): DOCKER_HOST=unix://$ROOT/solo/docker.sock"
}

solo_down() {
  local p
  if [ -f $ROOT/solo/dockerd.pid ]; then
    p=$(cat $ROOT/solo/dockerd.pid)
    kill "$p" 2>/dev/null && for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$p" 2>/dev/null || true
  fi
  mount | awk -v r="$ROOT/solo/" 'index($3, r) == 1 {print $3}' | sort -r | xargs -r -n1 umount -l
  ip netns del swn-solo 2>/dev/null || true
  rm -rf $ROOT/solo
}

case ${1:-} in
  solo) solo ;; solo-down) solo_down ;;
  up) up "${2:-3}" ;; status) status ;; down) down ;;
  stop) stop_engine "$2" ;;
  start) start_engine "$2"; wait_engine "$2" ;;
  *) echo "usage: $0 up [N] | status | down | stop I | start I | solo | solo-down" >&2; exit 2 ;;
esac
