#!/usr/bin/env bash
# `qsig health` against a real `qsig serve` on ephemeral loopback ports: healthy while it runs
# (the addresses come from the server's run file, not from the config's ports), unhealthy (exit 1,
# with the reason) once it has stopped, and a config's addresses can be probed directly.
set -euo pipefail
QSIG=$1
CONFIG=$2
export QSIG_RUN_DIR=$(mktemp -d)
LOG=$QSIG_RUN_DIR/serve.log
"$QSIG" serve --config "$CONFIG" --set grpc.listen=127.0.0.1:0 --set metrics.listen=127.0.0.1:0 \
  --set admin.listen=127.0.0.1:0 \
  --set workers.cores=[] --set console.status_interval_s=0 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$QSIG_RUN_DIR"' EXIT
for _ in $(seq 300); do
  [ -s "$QSIG_RUN_DIR/serve.run" ] && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; echo "FAIL: serve exited"; exit 1; }
  sleep 0.1
done
grep -q '^grpc 127.0.0.1:[1-9]' "$QSIG_RUN_DIR/serve.run" || { echo "FAIL: run file"; exit 1; }
"$QSIG" health || { echo "FAIL: a running server is not healthy"; exit 1; }
# The config's own ports are 0 here: probing them directly must fail, not pass.
if "$QSIG" health --config "$CONFIG" --set grpc.listen=127.0.0.1:1 --set metrics.listen=127.0.0.1:1 \
  --timeout 1 2>/dev/null; then
  echo "FAIL: health passed on a port nobody listens on"; exit 1
fi
kill -TERM $SERVER
wait $SERVER || { echo "FAIL: serve exit code $? after SIGTERM"; exit 1; }
[ ! -e "$QSIG_RUN_DIR/serve.run" ] || { echo "FAIL: run file left behind"; exit 1; }
if "$QSIG" health 2>/dev/null; then echo "FAIL: healthy after stop"; exit 1; fi
echo "qsig health: OK"
