#!/usr/bin/env bash
# Side-by-side redis-benchmark figures: the proxy against direct cluster access
# (redis-benchmark --cluster), alternating in one run on one local six-node
# cluster, with the proxy's CPU seconds read from /proc.
#
#   bench/compare.sh                 # defaults below
#   ROUNDS=3 N=200000 bench/compare.sh
#   EXTRA="127.0.0.1:7777" bench/compare.sh   # also measure another endpoint (e.g. another proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
SIZE=${SIZE:-64}
ROUNDS=${ROUNDS:-2}
PIPELINES=${PIPELINES:-"1 16"}
TESTS=${TESTS:-set,get}
PORT=${PORT:-6390}
DEV_PORTS=${DEV_PORTS:-7101-7106}
FIRST_NODE=${DEV_PORTS%-*}
DIR=${DIR:-$(mktemp -d /tmp/clusterproxy-bench.XXXXXX)}
EXTRA=${EXTRA:-}

./scripts/deps.sh
go build -o bin/proxy ./cmd/proxy
./bin/proxy -dev -dev-dir "$DIR/cluster" -dev-ports "$DEV_PORTS" -listen "127.0.0.1:$PORT" \
  -log-level warn ${PROXY_FLAGS:-} >"$DIR/proxy.log" 2>&1 &
PROXY_PID=$!
trap 'kill -INT $PROXY_PID 2>/dev/null; wait $PROXY_PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 300); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  kill -0 $PROXY_PID 2>/dev/null || { cat "$DIR/proxy.log"; exit 1; }
  sleep 0.1
done

cpu_ticks() { awk '{print $14+$15}' "/proc/$PROXY_PID/stat"; }
NODE_PIDS=""
for port in $(seq "$FIRST_NODE" "${DEV_PORTS#*-}"); do
  NODE_PIDS="$NODE_PIDS $(pgrep -f "redis-server .*:$port( |$)" | head -1)"
done
TICK=$(getconf CLK_TCK)

# node_ticks: CPU ticks used so far by the six nodes of the cluster.
node_ticks() {
  local t=0 pid
  for pid in $NODE_PIDS; do t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo $t
}
# machine_ticks: "busy idle" ticks of the whole machine (all cores) so far.
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }

# run TARGET P TEST -> prints a csv line
# "target,P,test,rps,p50,p99,proxy_cpu_s,nodes_cpu_s,machine_busy_s,machine_idle_s"
run() {
  local target=$1 p=$2 test=$3 args before after nb na mb mi ma mia
  case $target in
    proxy) args=(-p "$PORT") ;;
    direct) args=(--cluster -p "$FIRST_NODE") ;;
    *) args=(-h "${target%:*}" -p "${target##*:}") ;;
  esac
  before=$(cpu_ticks); nb=$(node_ticks); read -r mb mi < <(machine_ticks)
  redis-benchmark "${args[@]}" -t "$test" -n "$N" -c "$CLIENTS" -r "$KEYSPACE" -d "$SIZE" -P "$p" --csv 2>/dev/null |
    grep '^"' | tail -n +2 | tr -d '"' >"$DIR/out.csv"
  after=$(cpu_ticks); na=$(node_ticks); read -r ma mia < <(machine_ticks)
  if [ "$target" != proxy ]; then after=$before; fi
  awk -F, -v tg="$target" -v p="$p" -v t="$TICK" -v cpu=$((after - before)) -v nodes=$((na - nb)) \
    -v busy=$((ma - mb)) -v idle=$((mia - mi)) \
    '{printf "%s,%s,%s,%s,%s,%s,%.2f,%.2f,%.2f,%.2f\n", tg, p, $1, $2, $5, $7, cpu/t, nodes/t, busy/t, idle/t}' "$DIR/out.csv"
}

RESULTS="$DIR/results.csv"
: >"$RESULTS"
targets="proxy direct ${EXTRA}"
for round in $(seq 1 "$ROUNDS"); do
  for p in $PIPELINES; do
    for test in ${TESTS//,/ }; do
      for t in $targets; do run "$t" "$p" "$test" >>"$RESULTS"; done
    done
  done
done

echo "redis-benchmark -t $TESTS -n $N -c $CLIENTS -r $KEYSPACE -d $SIZE, $ROUNDS rounds alternating, $(nproc) cores, $(date -u +%F)"
echo
echo "| P | test | target | req/s | p50 ms | p99 ms | ratio to direct | proxy ops per CPU-s | CPU us per request: proxy / nodes / all | machine idle | ratio the CPU allows |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
awk -F, '
  { key=$1 SUBSEP $2 SUBSEP $3; rps[key]+=$4; p50[key]+=$5; p99[key]+=$6; n[key]++
    cpu[key]+=$7; nodes[key]+=$8; busy[key]+=$9; idle[key]+=$10
    seen[$2 SUBSEP $3]=1; tg[$1]=1 }
  END {
    for (pt in seen) {
      split(pt, a, SUBSEP); p=a[1]; test=a[2]
      dk="direct" SUBSEP p SUBSEP test
      d=rps[dk]/n[dk]
      dall=busy[dk]*1e6/('"$N"'*n[dk])
      for (t in tg) {
        k=t SUBSEP p SUBSEP test; if (!(k in n)) continue
        r=rps[k]/n[k]; reqs='"$N"'*n[k]
        eff="-"; if (t=="proxy" && cpu[k]>0) eff=sprintf("%.0f", reqs/cpu[k])
        pr="-"; if (t=="proxy") pr=sprintf("%.2f", cpu[k]*1e6/reqs)
        all=busy[k]*1e6/reqs
        idl=0; if (busy[k]+idle[k] > 0) idl=100*idle[k]/(busy[k]+idle[k])
        allows="-"; if (all > 0 && dall > 0) allows=sprintf("%.2f", dall/all)
        printf "| %s | %s | %s | %.0f | %.3f | %.3f | %.2f | %s | %s / %.2f / %.2f | %.0f%% | %s |\n", p, test, t, r, p50[k]/n[k], p99[k]/n[k], r/d, eff, pr, nodes[k]*1e6/reqs, all, idl, allows
      }
    }
  }' "$RESULTS" | sort -t'|' -k2,2n -k3,3 -k4,4
echo
echo "CPU per request is CPU time over requests in the target's rounds: the proxy's, the six nodes', and the"
echo "whole machine's (benchmark, nodes, proxy and anything else running). When the machine is busy (idle near"
echo "0%), throughput is bound by CPU per request, so \"ratio the CPU allows\" (direct's CPU per request over the"
echo "target's) is the ratio to direct this machine can give the target at its measured cost."
