#!/usr/bin/env bash
# Installs what clusterproxy needs to run and test on a Debian/Ubuntu machine:
# redis-server and redis-tools (redis-cli, redis-benchmark). Go itself must be
# on PATH (https://go.dev/dl); Go modules are fetched by the go command.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
if ((${#missing[@]})); then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing $pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $pkgs >/dev/null
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "deps: installing $pkgs (sudo)" >&2
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "deps: missing $pkgs; install them (Debian/Ubuntu: sudo apt-get install -y $pkgs) and retry" >&2
    exit 1
  fi
fi
# A system redis-server service is not needed: the launcher runs its own nodes.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  echo "deps: note: a system redis-server service is running; clusterproxy does not use it" >&2
fi
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "deps: go is at /usr/local/go/bin; add it to PATH" >&2
  else
    echo "deps: Go 1.26+ is required (https://go.dev/dl)" >&2
  fi
  exit 1
fi
go mod download
