#!/bin/bash
# Container health check: GET /healthz on 127.0.0.1:$HEALTHCHECK_PORT with bash's /dev/tcp
# (the runtime image carries no curl or wget). Exit 0 on a 200.
set -u
port="${1:-${HEALTHCHECK_PORT:-9100}}"
path="${2:-/healthz}"
{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *) exit 1 ;;
esac
