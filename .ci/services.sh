#!/usr/bin/env bash
# Makes sure the services the tests talk to are listening on loopback, and
# starts the ones that are not, with this machine's packaged commands:
# PostgreSQL 5432, MariaDB 3306, Redis 6379, NATS with JetStream 4222,
# Mosquitto 1883. Quick when everything already runs.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ensure NAME PORT PROGRAM COMMAND...: unless PORT accepts connections, runs
# COMMAND (PROGRAM must be installed) and waits up to 30 s for the port.
ensure() {
    local name=$1 port=$2 program=$3
    shift 3
    if listening "$port"; then
        echo "services: $name is up on 127.0.0.1:$port"
        return 0
    fi
    if ! command -v "$program" >/dev/null 2>&1; then
        echo "services: $name is not installed ($program not found); the tests need it on 127.0.0.1:$port" >&2
        return 1
    fi
    echo "services: starting $name"
    "$@" >/dev/null
    for _ in $(seq 1 150); do
        if listening "$port"; then return 0; fi
        sleep 0.2
    done
    echo "services: $name did not start listening on 127.0.0.1:$port" >&2
    return 1
}

postgres_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure PostgreSQL 5432 pg_ctlcluster \
    pg_ctlcluster --skip-systemctl-redirect "$(postgres_version)" main start
ensure MariaDB 3306 mariadbd \
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
ensure Redis 6379 redis-server \
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
ensure "NATS (JetStream)" 4222 nats-server \
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
ensure Mosquitto 1883 mosquitto \
    mosquitto -d -c /etc/mosquitto/mosquitto.conf

# The email tests run a real SMTP server, Python's aiosmtpd
# (ghostflow-nodes/tests/peers/smtp_peer.py); install it when missing.
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "services: installing aiosmtpd (PyPI) for the SMTP test peer"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "aiosmtpd==1.4.6"
fi

# The AI tests also run on a real inference server, llama-cpp-python's
# OpenAI-compatible server, llama.cpp underneath
# (ghostflow-nodes/tests/ai_llama_cpp.rs); install it when missing.
bash .ci/llama-server.sh
