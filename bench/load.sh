#!/usr/bin/env bash
# bench/load.sh: measure a fresh build of itemsvc with the shared load harness
# in ../shared/bench, beside the checkout. bench/README.md says what each
# mode measures and which Debian packages it needs.
#
#   bench/load.sh throughput [ROUNDS [SECS]]
#                         update, create and mixed workloads: itemsvc against bare
#                         net/http, bare+timeouts and FastAPI (default 5 rounds of
#                         5 s; more, shorter rounds steady the medians)
#   bench/load.sh rss     peak RSS after 1,000,000 creates: itemsvc, FastAPI; and
#                         itemsvc's CPU time for them
#   bench/load.sh 1m [ROUNDS]
#                         mixed workload with 1M items stored vs 1k (default 3)
#   bench/load.sh instr   user-space instructions per create under callgrind
#                         (needs valgrind): itemsvc, bare, bare with timeouts
#   bench/load.sh durable [ROUNDS [SECS]]
#                         -data against in memory: the three workloads (default 5
#                         rounds of 5 s), requests per sync (counted by strace),
#                         journal sizes after 1M creates and 1M updates, restarts
#   bench/load.sh pages [ROUNDS]
#                         1M items in memory: BenchmarkWalks against the server
#                         (a full walk; PUT waits and RSS while 8 clients walk),
#                         and GC CPU per cycle meanwhile (default 3 rounds)
#   bench/load.sh paired [ROUNDS [SECS]]
#                         bare against itself, bare+timeouts, itemsvc-bare-put and
#                         itemsvc, two servers at a time on the same core (default
#                         8 rounds of 8 s)
#
# "bare+timeouts" is the harness's bare server built with itemsvc's four
# http.Server timeouts: the ceiling for a server that protects itself alike.
# "itemsvc-bare-put" is itemsvc with bare's handler on its PUT route: its
# timeouts, routes, middleware and binary, without its handler's work. Between
# them, they split the gap from bare to itemsvc into its three causes.
#
# Servers run pinned to core 0, load generators to core 1, on 127.0.0.1 only.
# Every run is bounded in time, and only processes this script started are
# stopped, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
WORK=$(mktemp -d) # builds and callgrind output
BIN=$WORK/itemsvc
go build -o "$BIN" .
SVC="exec $BIN -addr 127.0.0.1:\$PORT -access-log=false"

SPID="" SPID2="" # the servers running now, if any
stop() {
  local p
  for p in $SPID $SPID2; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  SPID="" SPID2=""
}
trap stop EXIT
trap 'exit 130' INT TERM

# build_fill builds the harness's 1M-item fill client into $WORK.
build_fill() { (cd "$BENCH/fill" && go build -o "$WORK/fill" .); }

# build_refs builds the reference servers into $WORK: the harness's bare,
# and bare+timeouts from a copy of its source.
build_refs() {
  (cd "$BENCH/ref/bare" && go build -o "$WORK/bare" .)
  local d=$WORK/bare-timeouts-src
  mkdir -p "$d"
  cp "$BENCH/ref/bare/main.go" "$BENCH/ref/bare/go.mod" "$d/"
  sed -i -e 's|log.Fatal(http.ListenAndServe(\*addr, mux))|srv := \&http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}\n\tlog.Fatal(srv.ListenAndServe())|' \
    -e 's|^\t"strconv"$|\t"strconv"\n\t"time"|' "$d/main.go"
  grep -q ReadHeaderTimeout "$d/main.go" || { echo "could not add timeouts to $BENCH/ref/bare/main.go" >&2; exit 1; }
  (cd "$d" && go build -o "$WORK/bare-timeouts" .)
}

# build_bare_put builds itemsvc-bare-put into $WORK, from a copy of this
# source whose PUT route is served by a copy of the harness's bare handler.
build_bare_put() {
  local d=$WORK/itemsvc-bare-put-src
  mkdir -p "$d"
  cp -r go.mod api internal ./*.go "$d/"
  rm "$d"/*_test.go
  cat >"$d/bare_put.go" <<'GO'
package main

import (
	"io"
	"net/http"
	"strconv"
)

var fixed = []byte(`{"name":"Fighters","size":6}` + "\n")

func handleBarePut(*Store, int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(fixed)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(fixed)
	})
}
GO
  sed -i 's|"PUT /items/{id}", handlePut(|"PUT /items/{id}", handleBarePut(|' "$d/handler.go"
  grep -q handleBarePut "$d/handler.go" || { echo "could not swap the PUT handler in handler.go" >&2; exit 1; }
  (cd "$d" && go build -o "$WORK/itemsvc-bare-put" .)
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

# start_on_core0 starts a server (a command that takes -addr) on a free port,
# waits until it answers, and sets PORT and SPID.
start_on_core0() {
  PORT=$(free_port)
  taskset -c 0 "$@" -addr "127.0.0.1:$PORT" >/dev/null 2>&1 &
  SPID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/" && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2
  exit 1
}

# cpu_ticks prints the user plus system CPU time process $1 has used, in ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# paired runs two servers at the same time, both on core 0, each loaded by
# its own wrk on core 1, and prints per round how many requests the second
# serves per CPU-second (user + system, from /proc) against the first. Both
# see the machine in the same state at the same moment, so the other
# tenants' noise, which moves the harness's ratios by ±0.1, mostly cancels.
# Usage: paired WORKLOAD ROUNDS SECS NAME_A NAME_B; the servers are the
# commands in ${cmd[NAME]}.
paired() {
  local w=$1 rounds=$2 secs=$3 a=$4 b=$5 r pa pb ta tb ra rb porta portb
  start_on_core0 ${cmd[$a]}; pa=$SPID porta=$PORT SPID2=$SPID
  start_on_core0 ${cmd[$b]}; pb=$SPID portb=$PORT
  for port in $porta $portb; do # the ids mixed.lua updates
    curl -s -m 10 -o /dev/null -X PUT -H 'Content-Type: application/json' \
      -d '{"name":"Fighters","size":6}' "http://127.0.0.1:$port/items/m[0-999]"
  done
  for r in $(seq "$rounds"); do
    ta=$(cpu_ticks "$pa") tb=$(cpu_ticks "$pb")
    WRK_RUN="pa$r$RANDOM" taskset -c 1 wrk -t1 -c32 -d"${secs}s" -s "$BENCH/lua/$w.lua" "http://127.0.0.1:$porta" >"$WORK/wrk.a" &
    WRK_RUN="pb$r$RANDOM" taskset -c 1 wrk -t1 -c32 -d"${secs}s" -s "$BENCH/lua/$w.lua" "http://127.0.0.1:$portb" >"$WORK/wrk.b"
    wait $!
    ta=$(( $(cpu_ticks "$pa") - ta )) tb=$(( $(cpu_ticks "$pb") - tb ))
    ra=$(sed -n 's/^RESULT reqs=\([0-9]*\).*/\1/p' "$WORK/wrk.a")
    rb=$(sed -n 's/^RESULT reqs=\([0-9]*\).*/\1/p' "$WORK/wrk.b")
    grep -h '^RESULT' "$WORK/wrk.a" "$WORK/wrk.b" | grep -v 'conn=0 read=0 write=0 timeout=0 status=0' >&2 || true
    echo "$w $a $b $r $ra $ta $rb $tb"
  done
  stop
}

case ${1:-} in
throughput)
  build_refs
  for w in update create mixed; do
    "$BENCH/compare.sh" -w "$w" -r "${2:-5}" -d "${3:-5}" -m 1200 bare fastapi-1w "itemsvc=$SVC" \
      "bare+timeouts=exec $WORK/bare-timeouts -addr 127.0.0.1:\$PORT"
  done
  ;;
rss)
  build_fill
  start_on_core0 "$BIN" -access-log=false
  echo "== itemsvc (pid $SPID)"
  timeout 215 taskset -c 1 "$WORK/fill" -port "$PORT" -pid "$SPID" -n 1000000 -c 32 -max 200s
  # The rate is the fill client's own on this 2-core VM (bare serves it no
  # faster), so the server's CPU time is what shows its cost.
  awk -v hz="$(getconf CLK_TCK)" '{ printf "itemsvc CPU: %.1f s, user and system\n", ($14 + $15) / hz }' "/proc/$SPID/stat"
  stop
  "$BENCH/rss1m.sh" -t 400 fastapi-1w
  ;;
1m)
  build_fill
  for r in $(seq "${2:-3}"); do
    for stored in 1k 1m; do
      start_on_core0 "$BIN" -access-log=false
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
paired)
  build_refs
  build_bare_put
  declare -A cmd=([bare]="$WORK/bare" [bare2]="$WORK/bare" [bare+timeouts]="$WORK/bare-timeouts"
    [itemsvc-bare-put]="$WORK/itemsvc-bare-put -access-log=false" [itemsvc]="$BIN -access-log=false")
  for w in update create mixed; do
    for b in bare2 bare+timeouts itemsvc-bare-put itemsvc; do
      paired "$w" "${2:-8}" "${3:-8}" bare "$b" >>"$WORK/paired"
    done
  done
  # Each line: workload, A, B, round, A's requests, A's ticks, B's requests, B's ticks.
  awk -v ratios="$WORK/ratios" '{ r = ($7 / $8) / ($5 / $6); print $1, $3, r > ratios
    printf "%-7s %-16s round %2d: %.3f of bare'"'"'s requests per CPU-second (%d vs %d requests)\n", $1, $3, $4, r, $7, $5 }' "$WORK/paired"
  echo "== medians (bare2 is bare again: the method's own error)"
  sort -k1,1 -k2,2 -k3,3n "$WORK/ratios" |
    awk 'function report() { printf "%-7s %-16s median %.3f  range %.3f-%.3f  (%d rounds)\n",
           w, s, n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2, v[1], v[n], n }
      $1 != w || $2 != s { if (n) report(); n = 0; w = $1; s = $2 }
      { v[++n] = $3 }
      END { report() }'
  ;;
durable)
  build_fill
  data=$WORK/data.jsonl # on disk: mktemp's directory, not a tmpfs
  for w in update create mixed; do
    "$BENCH/compare.sh" -w "$w" -r "${2:-5}" -d "${3:-5}" -m 1200 "itemsvc=$SVC" \
      "itemsvc-data=rm -f $data; $SVC -data $data"
  done
  echo "== requests per sync: wrk -t1 -c32 -d5s, fsync calls counted by strace"
  for w in update create mixed; do
    rm -f "$data"
    start_on_core0 strace -f -qq --seccomp-bpf -e trace=fsync -c -o "$WORK/strace" "$BIN" -access-log=false -data "$data"
    curl -s -m 10 -o /dev/null -X PUT -H 'Content-Type: application/json' \
      -d '{"name":"Fighters","size":6}' "http://127.0.0.1:$PORT/items/m[0-999]" # the ids mixed.lua updates
    WRK_RUN="s$w" taskset -c 1 wrk -t1 -c32 -d5s -s "$BENCH/lua/$w.lua" "http://127.0.0.1:$PORT" >"$WORK/wrk.s"
    kill -TERM "$(pgrep -P "$SPID")" # itemsvc, not strace, which then prints its counts
    wait "$SPID" || true
    SPID=""
    reqs=$(sed -n 's/^RESULT reqs=\([0-9]*\).*/\1/p' "$WORK/wrk.s")
    syncs=$(awk '$NF == "fsync" { print $(NF - 1) }' "$WORK/strace")
    echo "$w: $reqs requests, $syncs syncs (1000 of them for the prefill), $(( reqs / (syncs - 1000) )) requests per sync"
  done
  echo "== 1,000,000 creates, then 1,000,000 updates of the same ids, fill -c 32"
  rm -f "$data"
  start_on_core0 "$BIN" -access-log=false -data "$data"
  timeout 215 taskset -c 1 "$WORK/fill" -port "$PORT" -pid "$SPID" -n 1000000 -c 32 -max 200s | tail -1
  cp "$data" "$WORK/created.jsonl"
  timeout 215 taskset -c 1 "$WORK/fill" -port "$PORT" -pid "$SPID" -n 1000000 -c 32 -max 200s | tail -1
  stop
  echo "journal: $(stat -c %s "$WORK/created.jsonl") bytes after the creates, $(stat -c %s "$data") after the updates"
  for f in created.jsonl data.jsonl; do
    for r in 1 2 3 4 5; do
      cp "$WORK/$f" "$WORK/restart.jsonl"
      sync
      PORT=$(free_port)
      rm -f "$WORK/log"
      mkfifo "$WORK/log"
      t0=$(date +%s%N)
      "$BIN" -access-log=false -data "$WORK/restart.jsonl" -addr "127.0.0.1:$PORT" 2>"$WORK/log" &
      SPID=$!
      # Reading its log costs no CPU, where polling /healthz would take a core from the replay.
      grep -q -m1 listening "$WORK/log"
      t1=$(date +%s%N)
      curl -sf -o /dev/null -m 1 "http://127.0.0.1:$PORT/healthz"
      echo "restart on $f: healthy after $(( (t1 - t0) / 1000000 )) ms"
      stop
    done
  done
  ;;
pages)
  build_fill
  PORT=$(free_port)
  log=$WORK/server.log # the GC trace, and the access log for the PUTs' own times
  GODEBUG=gctrace=1 taskset -c 0 "$BIN" -addr "127.0.0.1:$PORT" 2>"$log" &
  SPID=$!
  until curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/healthz"; do sleep 0.1; done
  timeout 215 taskset -c 1 "$WORK/fill" -port "$PORT" -pid "$SPID" -n 1000000 -c 32 -max 200s | tail -1
  cycles=$(grep -c '^gc ' "$log")
  echo "== go test -bench BenchmarkWalks -count ${2:-3}, against that server: the waits as its client saw them"
  WALK_URL="http://127.0.0.1:$PORT" WALK_PID=$SPID taskset -c 1 \
    go test -run '^$' -bench '^BenchmarkWalks$' -benchtime 1x -count "${2:-3}" . | grep '^Benchmark'
  stop
  echo "== the same PUTs as the server's access log timed them, from the handler's start to its end"
  grep -o 'method=PUT path=/items/probe[0-9]* status=20[01] bytes=[0-9]* duration=[0-9.]*[nµm]*s' "$log" |
    sed 's/.*duration=//; s/ns$/ 1e-6/; s/µs$/ 1e-3/; s/ms$/ 1/; s/s$/ 1e3/' | awk '{ print $1 * $2 }' | sort -n |
    awk '{ v[++n] = $1 } END { printf "%d PUTs: median %.2f ms, p99 %.2f, longest %.2f\n", n, v[int(n / 2) + 1], v[int(n * 0.99)], v[n] }'
  echo "== GC cycles during the walks: CPU per cycle, the sum of gctrace's five CPU times"
  grep '^gc ' "$log" | tail -n +"$((cycles + 1))" |
    awk '{ split($0, f, ", "); split(f[2], c, "[+/ ]"); ms = c[1] + c[2] + c[3] + c[4] + c[5]; sum += ms; n++
      if (n == 1 || ms < lo) lo = ms; if (ms > hi) hi = ms }
      END { printf "%d cycles: %.2f ms of CPU each on average, %.2f-%.2f\n", n, sum / n, lo, hi }'
  rm "$log"
  ;;
instr)
  build_fill
  build_refs
  instructions bare "$WORK/bare"
  instructions bare+timeouts "$WORK/bare-timeouts"
  instructions itemsvc "$BIN" -access-log=false
  ;;
*)
  sed -n '2,/^set /{/^set /!p}' "$0"
  exit 2
  ;;
esac
