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
TICK=$(getconf CLK_TCK)

# run TARGET P TEST -> prints a csv line "target,P,test,rps,p50,p99,proxy_cpu_s"
run() {
  local target=$1 p=$2 test=$3 args before after
  case $target in
    proxy) args=(-p "$PORT") ;;
    direct) args=(--cluster -p "$FIRST_NODE") ;;
    *) args=(-h "${target%:*}" -p "${target##*:}") ;;
  esac
  before=$(cpu_ticks)
  redis-benchmark "${args[@]}" -t "$test" -n "$N" -c "$CLIENTS" -r "$KEYSPACE" -d "$SIZE" -P "$p" --csv 2>/dev/null |
    grep '^"' | tail -n +2 | tr -d '"' >"$DIR/out.csv"
  after=$(cpu_ticks)
  local cpu
  cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" 'BEGIN{printf "%.2f", (a-b)/t}')
  awk -F, -v tg="$target" -v p="$p" -v cpu="$cpu" '{printf "%s,%s,%s,%s,%s,%s,%s\n", tg, p, $1, $2, $5, $7, cpu}' "$DIR/out.csv"
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
echo "| P | test | target | req/s | p50 ms | p99 ms | ratio to direct | proxy ops per CPU-s |"
echo "|---|---|---|---|---|---|---|---|"
awk -F, '
  { key=$1 SUBSEP $2 SUBSEP $3; rps[key]+=$4; p50[key]+=$5; p99[key]+=$6; n[key]++
    if ($1=="proxy") { cpu[key]+=$7 }
    seen[$2 SUBSEP $3]=1; tg[$1]=1 }
  END {
    for (pt in seen) {
      split(pt, a, SUBSEP); p=a[1]; test=a[2]
      d=rps["direct" SUBSEP p SUBSEP test]/n["direct" SUBSEP p SUBSEP test]
      for (t in tg) {
        k=t SUBSEP p SUBSEP test; if (!(k in n)) continue
        r=rps[k]/n[k]
        eff="-"; if (t=="proxy" && cpu[k]>0) eff=sprintf("%.0f", '"$N"'*n[k]/cpu[k])
        printf "| %s | %s | %s | %.0f | %.3f | %.3f | %.2f | %s |\n", p, test, t, r, p50[k]/n[k], p99[k]/n[k], r/d, eff
      }
    }
  }' "$RESULTS" | sort -t'|' -k2,2n -k3,3 -k4,4
