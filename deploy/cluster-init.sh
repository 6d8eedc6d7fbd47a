#!/bin/sh
# cluster-init.sh forms the Redis Cluster of the compose stack, once. It is
# safe to run again: it exits 0 at once when the nodes already form a cluster
# (after `docker compose down && up` they re-form it from nodes.conf), and it
# refuses to touch nodes that hold keys or belong to another cluster.
#
# Environment: CLUSTER_NODES (space-separated host:port of the six nodes,
# required), NODE_PASSWORD_FILE (default /run/secrets/node_password; empty or
# missing: no password), INIT_TIMEOUT seconds (default 120).
set -eu
: "${CLUSTER_NODES:?CLUSTER_NODES must list the nodes as host:port}"
pwfile="${NODE_PASSWORD_FILE-/run/secrets/node_password}"
if [ -n "$pwfile" ] && [ -r "$pwfile" ]; then
	REDISCLI_AUTH=$(cat "$pwfile")
	export REDISCLI_AUTH
fi
timeout="${INIT_TIMEOUT:-120}"
deadline=$(($(date +%s) + timeout))

log() { echo "cluster-init: $*"; }
cli() { # cli HOST:PORT ARGS...
	addr=$1
	shift
	redis-cli --no-auth-warning -h "${addr%:*}" -p "${addr##*:}" "$@"
}
field() { # field HOST:PORT NAME: a field of CLUSTER INFO
	cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}
expired() { [ "$(date +%s)" -ge "$deadline" ]; }

# Every node up and answering PING with our password.
for n in $CLUSTER_NODES; do
	until [ "$(cli "$n" ping 2>/dev/null)" = PONG ]; do
		if expired; then
			log "node $n does not answer PING (down, or wrong password) after ${timeout}s"
			exit 1
		fi
		sleep 1
	done
done
log "all nodes answer"

# formed: every node sees the cluster ok with all 16384 slots, and knows
# every node as either a master with slots or a replica (redis-cli assigns
# replicas after the slots).
formed() {
	for n in $CLUSTER_NODES; do
		[ "$(field "$n" cluster_state)" = ok ] || return 1
		[ "$(field "$n" cluster_slots_ok)" = 16384 ] || return 1
		cli "$n" cluster nodes | tr -d '\r' | awk '$3 ~ /master/ && NF < 9 { bare = 1 } END { exit bare }' || return 1
	done
}
wait_formed() {
	until formed; do
		if expired; then
			log "cluster not ok with 16384 slots after ${timeout}s"
			for n in $CLUSTER_NODES; do log "$n: state=$(field "$n" cluster_state) slots_ok=$(field "$n" cluster_slots_ok)"; done
			exit 1
		fi
		sleep 1
	done
}

# Already formed (or re-forming from nodes.conf after a restart)?
for n in $CLUSTER_NODES; do
	if [ "$(field "$n" cluster_slots_assigned)" != 0 ] || [ "$(field "$n" cluster_known_nodes)" != 1 ]; then
		log "$n already belongs to a cluster; waiting for it to be ok"
		wait_formed
		log "cluster is formed (nothing to do)"
		exit 0
	fi
done

# A new cluster: refuse nodes that hold data.
for n in $CLUSTER_NODES; do
	keys=$(cli "$n" dbsize | tr -d '\r')
	if [ "$keys" != 0 ]; then
		log "node $n is not in a cluster but holds $keys keys; refusing to create a cluster over it"
		exit 1
	fi
done

log "creating the cluster: $CLUSTER_NODES"
# shellcheck disable=SC2086 # CLUSTER_NODES is a list
redis-cli --no-auth-warning --cluster create $CLUSTER_NODES --cluster-replicas 1 --cluster-yes
wait_formed
log "cluster formed: cluster_state:ok, 16384 slots"
