#!/usr/bin/env bash
# load.sh: measure a fresh build of itemsvc with the shared load harness
# (../shared/bench; its README lists the Debian packages it needs: wrk and the FastAPI original).
#
#   ./load.sh throughput [ROUNDS [SECS]]
#                                  update, create and mixed workloads: itemsvc against
#                                  bare net/http, bare+timeouts and FastAPI (default 5
#                                  rounds of 5 s; more, shorter rounds steady the medians)
#   ./load.sh rss                  peak RSS after 1,000,000 creates: itemsvc, FastAPI
#   ./load.sh 1m [ROUNDS]          mixed workload with 1M items stored vs 1k (default 3)
#   ./load.sh instr                user-space instructions per create under callgrind
#                                  (needs valgrind): itemsvc, bare, bare with timeouts
#
# "bare+timeouts" is the harness's bare server built with itemsvc's four
# http.Server timeouts: the ceiling for a server that protects itself alike.
#
# Servers run pinned to core 0, load generators to core 1, on 127.0.0.1 only.
# Every run is bounded in time, and only processes this script started are
# stopped, by PID.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=${BENCH:-../shared/bench}
WORK=$(mktemp -d) # builds and callgrind output
BIN=$WORK/itemsvc
go build -o "$BIN" .
SVC="exec $BIN -addr 127.0.0.1:\$PORT -access-log=false"

SPID=""
stop() {
  [[ -n $SPID ]] || return 0
  kill -TERM "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
  SPID=""
}
trap stop EXIT
trap 'exit 130' INT TERM

# build_fill builds the harness's 1M-item fill client into $WORK.
build_fill() { (cd "$BENCH/fill" && go build -o "$WORK/fill" .); }

# build_bare_timeouts builds bare+timeouts into $WORK.
build_bare_timeouts() {
  local d=$WORK/bare-timeouts-src
  mkdir -p "$d"
  cp "$BENCH/ref/bare/main.go" "$BENCH/ref/bare/go.mod" "$d/"
  sed -i -e 's|log.Fatal(http.ListenAndServe(\*addr, mux))|srv := \&http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}\n\tlog.Fatal(srv.ListenAndServe())|' \
    -e 's|^\t"strconv"$|\t"strconv"\n\t"time"|' "$d/main.go"
  grep -q ReadHeaderTimeout "$d/main.go" || { echo "could not add timeouts to $BENCH/ref/bare/main.go" >&2; exit 1; }
  (cd "$d" && go build -o "$WORK/bare-timeouts" .)
}

# instructions prints the user-space instructions one server (a command
# that takes -addr) spends per create: callgrind's totals after 6000 creates
# minus those after 2000, over 4000. Counts, unlike times, do not depend on
# what else the machine is doing.
instructions() {
  local name=$1 n total port vp
  shift
  declare -A at
  for n in 2000 6000; do
    port=$(free_port)
    GODEBUG=asyncpreemptoff=1 taskset -c 0 valgrind --tool=callgrind \
      --callgrind-out-file="$WORK/cg.$n" "$@" -addr "127.0.0.1:$port" >/dev/null 2>&1 &
    vp=$!
    SPID=$vp # so that the EXIT trap stops it if the run is cut short
    for _ in $(seq 100); do
      curl -s -o /dev/null -m 2 "http://127.0.0.1:$port/" && break
      sleep 0.2
    done
    timeout 120 taskset -c 1 "$WORK/fill" -port "$port" -n "$n" -c 4 -prefix "i$n-" >/dev/null
    callgrind_control -d "$vp" >/dev/null 2>&1
    kill -KILL "$vp" # SIGTERM would trip valgrind's signal handling; the counts are out
    wait "$vp" 2>/dev/null || true
    SPID=""
    at[$n]=$(awk '/^totals:/ {print $2}' "$WORK/cg.$n".*)
    rm -f "$WORK/cg.$n"*
  done
  total=$(( (at[6000] - at[2000]) / 4000 ))
  printf '%-14s %6d instructions per create\n' "$name" "$total"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start_itemsvc starts itemsvc on a free port and waits until it answers.
start_itemsvc() {
  PORT=$(free_port)
  taskset -c 0 "$BIN" -addr "127.0.0.1:$PORT" -access-log=false 2>/dev/null &
  SPID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/healthz" && return 0
    sleep 0.1
  done
  echo "itemsvc did not start" >&2
  exit 1
}

case ${1:-} in
throughput)
  build_bare_timeouts
  for w in update create mixed; do
    "$BENCH/compare.sh" -w "$w" -r "${2:-5}" -d "${3:-5}" -m 1200 bare fastapi-1w "itemsvc=$SVC" \
      "bare+timeouts=exec $WORK/bare-timeouts -addr 127.0.0.1:\$PORT"
  done
  ;;
rss)
  build_fill
  start_itemsvc
  echo "== itemsvc (pid $SPID)"
  timeout 215 taskset -c 1 "$WORK/fill" -port "$PORT" -pid "$SPID" -n 1000000 -c 32 -max 200s
  stop
  "$BENCH/rss1m.sh" -t 400 fastapi-1w
  ;;
1m)
  build_fill
  for r in $(seq "${2:-3}"); do
    for stored in 1k 1m; do
      start_itemsvc
      if [[ $stored == 1m ]]; then
        timeout 215 taskset -c 1 "$WORK/fill" -port "$PORT" -pid "$SPID" -n 1000000 -c 32 -max 200s | tail -1
      fi
      curl -s -m 10 -o /dev/null -X PUT -H 'Content-Type: application/json' \
        -d '{"name":"Fighters","size":6}' "http://127.0.0.1:$PORT/items/m[0-999]"
      WRK_RUN="r$r$stored" taskset -c 1 wrk -t1 -c32 -d1s -s "$BENCH/lua/mixed.lua" "http://127.0.0.1:$PORT" >/dev/null
      printf 'round %s stored=%s ' "$r" "$stored"
      WRK_RUN="m$r$stored" taskset -c 1 wrk -t1 -c32 -d5s --timeout 5s -s "$BENCH/lua/mixed.lua" "http://127.0.0.1:$PORT" | grep '^RESULT'
      stop
    done
  done
  ;;
instr)
  build_fill
  (cd "$BENCH/ref/bare" && go build -o "$WORK/bare" .)
  build_bare_timeouts
  instructions bare "$WORK/bare"
  instructions bare+timeouts "$WORK/bare-timeouts"
  instructions itemsvc "$BIN" -access-log=false
  ;;
*)
  sed -n '2,19p' "$0"
  exit 2
  ;;
esac
