#!/usr/bin/env bash
# Reproducible benchmark: every target measured in one run, with the same
# settings, servers pinned to SERVER_CPUS and wrk to LOAD_CPUS, loopback
# only, each run bounded by DURATION. Prints a markdown table and writes it,
# with a CSV and a PNG chart, to bench/results/<timestamp>/ (and copies them
# to bench/RESULTS.md and bench/chart.png).
#
#   make bench                      # defaults below
#   DURATION=5s REPEAT=1 make bench # quicker, noisier
#   ONLY="forward_auth grpc_check" make bench
#                                   # only these targets; the results stay in
#                                   # bench/results/ (RESULTS.md is left alone)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}   # per measured run
WARMUP=${WARMUP:-2s}        # discarded run before each measured one
REPEAT=${REPEAT:-3}         # runs per target; medians are reported
CONNS=${CONNS:-64}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
FRESH_TOKENS=${FRESH_TOKENS:-60000}
ONLY=${ONLY:-}              # space-separated targets; empty: all
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
missing=""
for bin in wrk redis-server nginx gnuplot taskset; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing="$missing $bin"
done
if [ -n "$missing" ]; then
  pkgs=$(echo "$missing" | sed 's/gnuplot/gnuplot-nox/; s/taskset/util-linux/')
  echo "installing:$pkgs"
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $pkgs
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

OUT=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "building..."
go build -trimpath -o "$WORK/portcullis" .
go build -trimpath -o "$WORK/benchsrv" ./bench/benchsrv
B=$WORK/benchsrv

# The gRPC load client and the peer, from the Go module proxy when missing.
export PATH="$PATH:$(go env GOPATH)/bin"
install_go() { # BINARY MODULE@VERSION
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $1 ($2)..."
  GOFLAGS= go install "$2" || echo "  $1 did not install; its targets are skipped"
}
want oauth2_proxy && install_go oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6
port() { "$B" freeport; }

# pinned NAME CMD...: start a server on SERVER_CPUS; its PID in $LAST_PID.
pinned() { taskset -c "$SERVER_CPUS" "$@" >"$WORK/$(basename "$1").log" 2>&1 & LAST_PID=$!; PIDS+=("$LAST_PID"); }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_http() { # URL: poll until it answers at all
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "not answering: $1" >&2; return 1
}
command -v curl >/dev/null || { $SUDO apt-get install -y -q curl >/dev/null; }

"$B" keygen -key "$WORK/key.pem"
# Tokens are issued by a tiny OIDC provider (discovery + JWKS of the same
# key), so oauth2-proxy verifies exactly the token Portcullis does.
OIDC_PORT=$(port)
ISSUER=http://127.0.0.1:$OIDC_PORT
pinned "$B" oidc -addr "127.0.0.1:$OIDC_PORT" -key "$WORK/key.pem" -iss "$ISSUER"
wait_http "$ISSUER/jwks"
SECRET=bench-secret-0123456789-0123456789
HASH=$(printf '%s\n' "$SECRET" | BCRYPT_COST=12 "$WORK/portcullis" -hash-secret)
BASIC=$(printf 'bench:%s' "$SECRET" | base64 -w0)
"$B" tokens -key "$WORK/key.pem" -iss "$ISSUER" -n 1 > "$WORK/token"
TOKEN=$(cat "$WORK/token")
echo "minting $FRESH_TOKENS fresh tokens for the cache-miss run..."
want portcullis_fresh_token || want bare_es256 || FRESH_TOKENS=1
"$B" tokens -key "$WORK/key.pem" -iss "$ISSUER" -n "$FRESH_TOKENS" > "$WORK/tokens"

UP_PORT=$(port)
pinned "$B" upstream -addr "127.0.0.1:$UP_PORT"; UP_PID=$LAST_PID
wait_http "http://127.0.0.1:$UP_PORT/"

REDIS_PORT=$(port)
pinned redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning
REDIS_PID=$LAST_PID

write_config() { # FILE PORT ADMIN_PORT GRPC_PORT
  cat > "$1" <<YAML
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
grpc_listen: 127.0.0.1:$4
environment: development
log: {level: warn, security_events: false}
upstream: {url: http://127.0.0.1:$UP_PORT}
trusted_proxies: [127.0.0.1]
issuer:
  url: $ISSUER
  keys: [{id: bench, algorithm: ES256, private_key_file: $WORK/key.pem}]
  clients: [{id: bench, secret_hash: "$HASH", scopes: [bench:read]}]
audience: [bench]
routes:
  - {path: /, scopes: [bench:read]}
rate_limit:
  default: {requests: 1000000000, per: 1s, key: subject}
  token_endpoint: {requests: 1000000000, per: 1s, key: client_ip}
  new_tokens: {requests: 1000000000, per: 1s, key: client_ip}  # one wrk address sends every fresh token
YAML
}

# start_portcullis [ENV=VALUE...]: PID in PC_PID, ports in PC_PORT,
# PC_ADMIN and PC_GRPC.
start_portcullis() {
  PC_PORT=$(port); PC_ADMIN=$(port); PC_GRPC=$(port)
  write_config "$WORK/pc.yaml" "$PC_PORT" "$PC_ADMIN" "$PC_GRPC"
  pinned env "$@" "$WORK/portcullis" -config "$WORK/pc.yaml"; PC_PID=$LAST_PID
  wait_http "http://127.0.0.1:$PC_ADMIN/health/ready"
}

# measure_grpc NAME PID: benchsrv grpcload calls Check over one HTTP/2
# connection with CONNS concurrent streams (as Envoy multiplexes), from the
# generated stubs; same token and route as forward_auth. (ghz was tried
# first: it builds messages by reflection and saturated its own core at
# about 14k calls/s with the server core two-thirds idle.) non-2xx counts
# RPC errors and every decision that was not "allowed" (from Portcullis's
# own auth_requests_total).
measure_grpc() {
  local name=$1 pid=$2
  local rps p50 p99 nonok denied rss loadcpu ticks
  # Both cores' use is printed: a server core that is not busy means the
  # client or the connection, not Portcullis, set the figure.
  ticks=$(awk '{print $14+$15}' "/proc/$pid/stat")
  read -r rps p50 p99 nonok loadcpu < <(taskset -c "$LOAD_CPUS" "$B" grpcload -target "127.0.0.1:$PC_GRPC" \
    -path /api/orders -token "$TOKEN" -c "$CONNS" -warmup "$WARMUP" -d "$DURATION")
  ticks=$(( $(awk '{print $14+$15}' "/proc/$pid/stat") - ticks ))
  echo "  (server core busy $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v w="${WARMUP%s}" -v d="${DURATION%s}" \
    'BEGIN { printf "%.0f", 100 * t / hz / (w + d) }')% over warm-up and run; load core ${loadcpu}%)"
  denied=$(curl -s "http://127.0.0.1:$PC_ADMIN/metrics" | awk '/^auth_requests_total\{/ && !/"allowed"/ {s += $2} END {printf "%d", s}')
  nonok=$((nonok + denied))
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  echo "$name $rps $p50 $p99 $rss $nonok" >> "$OUT/runs.txt"
  printf '  %-28s %10s req/s  p50 %-9s p99 %-9s rss %6s KiB  non-2xx %s\n' "$name" "$rps" "${p50}ms" "${p99}ms" "$rss" "$nonok"
}

# measure NAME URL SCRIPT RSS_PID: one warm-up and one measured wrk run;
# appends "name rps p50 p99 rss_kb non2xx" to $OUT/runs.txt.
measure() {
  local name=$1 url=$2 script=$3 pid=$4 log="$WORK/wrk.txt"
  taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"$WARMUP" -s "$script" "$url" >/dev/null
  TOKEN=$TOKEN TOKENS_FILE=$WORK/tokens BASIC=$BASIC \
    taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$script" "$url" > "$log"
  local rps p50 p99 non2xx rss
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$log")
  p50=$(awk '$1=="50%" {print $2}' "$log")
  p99=$(awk '$1=="99%" {print $2}' "$log")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$log"); non2xx=${non2xx:-0}
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  echo "$name $rps $(to_ms "$p50") $(to_ms "$p99") $rss $non2xx" >> "$OUT/runs.txt"
  printf '  %-28s %10s req/s  p50 %-9s p99 %-9s rss %6s KiB  non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "$rss" "$non2xx"
}
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }

# Environment variables wrk's Lua scripts read.
export TOKEN TOKENS_FILE=$WORK/tokens BASIC
B_SCRIPT=bench/wrk/bearer.lua
NGINX_CONF=$WORK/nginx.conf

for r in $(seq 1 "$REPEAT"); do
  echo "run $r of $REPEAT"
  want direct && measure direct "http://127.0.0.1:$UP_PORT/" "$B_SCRIPT" "$UP_PID"

  if want bare_proxy; then
  p=$(port); pinned "$B" bare -addr "127.0.0.1:$p" -upstream "http://127.0.0.1:$UP_PORT"; pid=$LAST_PID
  wait_http "http://127.0.0.1:$p/"; measure bare_proxy "http://127.0.0.1:$p/" "$B_SCRIPT" "$pid"; stop "$pid"
  fi

  if want bare_es256; then
  p=$(port); pinned "$B" bare -addr "127.0.0.1:$p" -upstream "http://127.0.0.1:$UP_PORT" -verify "$WORK/key.pem" -iss "$ISSUER"; pid=$LAST_PID
  wait_http "http://127.0.0.1:$p/"; measure bare_es256 "http://127.0.0.1:$p/" bench/wrk/fresh.lua "$pid"; stop "$pid"
  fi

  if want portcullis_local; then
  start_portcullis
  measure portcullis_local "http://127.0.0.1:$PC_PORT/api/orders" "$B_SCRIPT" "$PC_PID"; stop "$PC_PID"
  fi

  if want oauth2_proxy && command -v oauth2-proxy >/dev/null 2>&1; then
    # The peer users would pick instead: it verifies the same ES256 bearer
    # token against the same JWKS (found by OIDC discovery) and proxies to
    # the same upstream. Compare with portcullis_local.
    p=$(port)
    pinned oauth2-proxy --http-address="127.0.0.1:$p" --upstream="http://127.0.0.1:$UP_PORT/" \
      --provider=oidc --oidc-issuer-url="$ISSUER" --client-id=bench --client-secret=bench-client-secret \
      --cookie-secret=0123456789abcdef0123456789abcdef --email-domain='*' \
      --skip-jwt-bearer-tokens=true --extra-jwt-issuers="$ISSUER=bench" \
      --request-logging=false --auth-logging=false --standard-logging=false
    pid=$LAST_PID
    wait_http "http://127.0.0.1:$p/ping"; measure oauth2_proxy "http://127.0.0.1:$p/api/orders" "$B_SCRIPT" "$pid"; stop "$pid"
  fi

  if want portcullis_redis; then
  start_portcullis "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
  measure portcullis_redis "http://127.0.0.1:$PC_PORT/api/orders" "$B_SCRIPT" "$PC_PID"; stop "$PC_PID"
  fi

  if want portcullis_fresh_token; then
  start_portcullis
  measure portcullis_fresh_token "http://127.0.0.1:$PC_PORT/api/orders" bench/wrk/fresh.lua "$PC_PID"; stop "$PC_PID"
  fi

  if want grpc_check; then
    start_portcullis
    measure_grpc grpc_check "$PC_PID"; stop "$PC_PID"
  fi

  if want forward_auth || want nginx_auth_request; then
  start_portcullis
  want forward_auth && measure forward_auth "http://127.0.0.1:$PC_PORT/auth/verify/api/orders" "$B_SCRIPT" "$PC_PID"

  if want nginx_auth_request; then
  np=$(port)
  mkdir -p "$WORK/nginx"
  cat > "$NGINX_CONF" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  upstream portcullis { server 127.0.0.1:$PC_PORT; keepalive 64; }
  upstream app { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$np;
    location = /_auth {
      internal;
      proxy_pass http://portcullis/auth/verify;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_auth;
      auth_request_set \$sub \$upstream_http_x_auth_subject;
      proxy_set_header X-Auth-Subject \$sub;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
NGINX
  pinned "$NGINX" -p "$WORK/nginx" -c "$NGINX_CONF"; ng=$LAST_PID
  wait_http "http://127.0.0.1:$np/"
  measure nginx_auth_request "http://127.0.0.1:$np/api/orders" "$B_SCRIPT" "$PC_PID"
  stop "$ng"
  fi
  stop "$PC_PID"
  fi

  if want token_endpoint; then
  start_portcullis
  curl -s -o /dev/null -H "Authorization: Basic $BASIC" -d grant_type=client_credentials "http://127.0.0.1:$PC_PORT/token"
  measure token_endpoint "http://127.0.0.1:$PC_PORT/token" bench/wrk/token.lua "$PC_PID"; stop "$PC_PID"
  fi

  for tool in oauth2-proxy; do
    command -v "$tool" >/dev/null 2>&1 || { [ "$r" = 1 ] && echo "  $tool: not installed, its target skipped"; }
  done
done

# Medians per target, ratios, table, CSV, chart.
awk -v out="$OUT" '
function median(list,   n, a, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j+1] = a[j]; a[j+1] = t }
  return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
{ if (!($1 in seen)) { order[++k] = $1; seen[$1] = 1 }
  rps[$1] = rps[$1] " " $2; p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4; rss[$1] = rss[$1] " " $5; bad[$1] += $6 }
END {
  for (i = 1; i <= k; i++) { n = order[i]; R[n] = median(rps[n]); P50[n] = median(p50[n]); P99[n] = median(p99[n]); M[n] = median(rss[n]) }
  bare = R["bare_proxy"]; bv = R["bare_es256"]; bp99 = P99["bare_proxy"]
  if (!bare) bare = -1; if (!bv) bv = -1; if (!bp99) bp99 = -1   # a partial run (ONLY): no ratios
  print "| target | req/s | p50 ms | p99 ms | vs bare proxy | p99 vs bare | peak RSS MiB | non-2xx |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= k; i++) {
    n = order[i]
    if (bare > 0) printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.1f | %d |\n", n, R[n], P50[n], P99[n], R[n] / bare, P99[n] / bp99, M[n] / 1024, bad[n]
    else printf "| %s | %.0f | %.2f | %.2f | - | - | %.1f | %d |\n", n, R[n], P50[n], P99[n], M[n] / 1024, bad[n]
    printf "%s,%.0f,%.3f,%.3f,%.3f,%.1f,%d\n", n, R[n], P50[n], P99[n], R[n] / bare, M[n] / 1024, bad[n] > (out "/results.csv")
  }
  print ""
  printf "Targets: local %.0f%% of bare (>= 85%%, p99 %.2fx <= 1.2x); redis %.0f%% (>= 60%%); fresh token %.0f%% of bare+ES256 (>= 90%%); forward-auth %.0f req/s (>= 20000); gRPC Check %.0f req/s (>= 20000), p99 %.2f ms (<= 10); /token %.0f req/s (>= 5000); oauth2-proxy %.0f req/s (%.0f%% of Portcullis proxy mode)\n", \
    100 * R["portcullis_local"] / bare, P99["portcullis_local"] / bp99, 100 * R["portcullis_redis"] / bare, 100 * R["portcullis_fresh_token"] / bv, R["forward_auth"], R["grpc_check"], P99["grpc_check"], R["token_endpoint"], \
    R["oauth2_proxy"], R["portcullis_local"] ? 100 * R["oauth2_proxy"] / R["portcullis_local"] : 0
}' "$OUT/runs.txt" > "$OUT/table.md"

{
  echo "# Benchmark results"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(go version | awk '{print $3}')."
  echo "wrk -t1 -c$CONNS -d$DURATION on CPU $LOAD_CPUS (grpc_check: benchsrv grpcload -c$CONNS on one HTTP/2 connection); servers on CPU $SERVER_CPUS; medians of $REPEAT runs; ~100-byte upstream body."
  echo
  cat "$OUT/table.md"
} > "$OUT/results.md"

gnuplot <<GP
set terminal pngcairo size 900,420 noenhanced
set output "$OUT/chart.png"
set datafile separator ","
set style fill solid 0.8
set boxwidth 0.7
set ylabel "requests/s (higher is better)"
set xtics rotate by -30
set grid ytics
set title "Portcullis benchmark: median req/s"
set yrange [0:*]
set offsets 0,0,graph 0.08,0
plot "$OUT/results.csv" using 0:2:xtic(1) with boxes notitle lc rgb "#3b6ea5", \
     "" using 0:2:(sprintf("%.0f", \$2)) with labels offset 0,0.8 notitle
GP

if [ -z "$ONLY" ]; then
  cp "$OUT/results.md" bench/RESULTS.md
  cp "$OUT/chart.png" bench/chart.png
fi
echo
cat "$OUT/results.md"
