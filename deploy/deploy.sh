#!/usr/bin/env bash
# Deploy Trad on one machine: install, migrate, then restart in dependency order.
#   sudo deploy/deploy.sh [N_WORKERS] [all|worker]
# Expects the code in /opt/trad and settings in /etc/trad/trad.env (see trad.env.example).
# "all" (the default): workers, beat, the API and Flower. "worker": a machine added for
# more workers only (same DATABASE_URL and CELERY_BROKER_URL; beat, the API and Flower run
# on the first machine, which migrates: deploy it first).
set -euo pipefail
N_WORKERS="${1:-1}"
ROLE="${2:-all}"
APP=/opt/trad
cd "$APP"
case "$ROLE" in all|worker) ;; *) echo "deploy.sh: role must be all or worker, got $ROLE" >&2; exit 2 ;; esac

set -a; . /etc/trad/trad.env; set +a
if [ "$ROLE" = all ] && [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
    echo "deploy.sh: set FLOWER_BASIC_AUTH=user:password in /etc/trad/trad.env (Flower never runs open)" >&2
    exit 2
fi

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# The server's extra (Flower), not dev's tools.
.venv/bin/pip install --quiet -e '.[server]'

install -m 0644 deploy/systemd/*.service /etc/systemd/system/
systemctl daemon-reload

# Migrate before any new code takes a request or a task.
if [ "$ROLE" = all ]; then .venv/bin/trad db upgrade; fi

# Workers first (they drain in-flight chunks on SIGTERM), then beat, then the API.
for i in $(seq 1 "$N_WORKERS"); do systemctl enable --now "trad-worker@$i"; systemctl restart "trad-worker@$i"; done
if [ "$ROLE" = worker ]; then
    echo "deployed: $N_WORKERS worker(s) on $(hostname)"
    exit 0
fi
systemctl enable --now trad-beat && systemctl restart trad-beat
systemctl enable --now trad-api && systemctl restart trad-api
systemctl enable --now trad-flower && systemctl restart trad-flower
echo "deployed: $(systemctl is-active trad-api) api, $N_WORKERS worker(s)"
