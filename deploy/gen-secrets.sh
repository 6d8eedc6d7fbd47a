#!/bin/sh
# gen-secrets.sh writes the secrets the compose stack reads, once: files that
# already exist are kept, so running it again changes nothing. Output (in
# deploy/secrets/, gitignored):
#   node_password                  password of the Redis nodes (read by the proxy, cluster-init, healthchecks)
#   redis_auth.conf                requirepass/masterauth lines, included by every node
#   client_password                password clients must AUTH with at the proxy
#   redis_exporter_passwords.json  node URI -> password map for redis_exporter (monitoring profile)
#   grafana_admin_password         Grafana's admin password (monitoring profile)
# The directory is private to its owner (0700); the files are 0644 so that the
# containers' non-root users (redis, nonroot, nobody) can read their bind mounts.
set -eu
dir="${1:-$(dirname "$0")/secrets}"
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

random() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

put() { # put NAME CONTENT: write $dir/NAME unless it exists
	if [ -e "$dir/$1" ]; then
		echo "keep     $dir/$1"
		return
	fi
	printf '%s\n' "$2" >"$dir/$1.tmp"
	chmod 644 "$dir/$1.tmp"
	mv "$dir/$1.tmp" "$dir/$1"
	echo "created  $dir/$1"
}

put node_password "$(random)"
put client_password "$(random)"
put grafana_admin_password "$(random)"
node=$(cat "$dir/node_password")
put redis_auth.conf "requirepass $node
masterauth $node"
map="{"
for i in 1 2 3 4 5 6; do
	[ "$i" = 1 ] || map="$map,"
	map="$map\"redis://172.30.7.1$i:6379\":\"$node\""
done
put redis_exporter_passwords.json "$map}"
