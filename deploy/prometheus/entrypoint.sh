#!/bin/sh
# Writes the scrape target from $QSIG_METRICS_TARGET into a copy of prometheus.yml, then runs
# Prometheus on $PROMETHEUS_LISTEN with its data in /var/lib/prometheus (extra args pass through).
set -eu
mkdir -p /tmp/prometheus
sed "s#targets: \[\"[^\"]*\"\]#targets: [\"${QSIG_METRICS_TARGET}\"]#" /etc/prometheus/prometheus.yml \
  > /tmp/prometheus/prometheus.yml
cp /etc/prometheus/alerts.yml /tmp/prometheus/alerts.yml
exec /usr/bin/prometheus --config.file=/tmp/prometheus/prometheus.yml \
  --storage.tsdb.path=/var/lib/prometheus/metrics2 --web.listen-address="${PROMETHEUS_LISTEN}" "$@"
