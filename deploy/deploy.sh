#!/usr/bin/env bash
# Deploy Trad on one machine: install, migrate, then restart in dependency order.
#   sudo deploy/deploy.sh [N_WORKERS]
# Expects the code in /opt/trad and settings in /etc/trad/trad.env (see trad.env.example).
set -euo pipefail
N_WORKERS="${1:-1}"
APP=/opt/trad
cd "$APP"

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[dev]'

install -m 0644 deploy/systemd/*.service /etc/systemd/system/
systemctl daemon-reload

# Migrate before any new code takes a request or a task.
set -a; . /etc/trad/trad.env; set +a
.venv/bin/trad db upgrade

# Workers first (they drain in-flight chunks on SIGTERM), then beat, then the API.
for i in $(seq 1 "$N_WORKERS"); do systemctl enable --now "trad-worker@$i"; systemctl restart "trad-worker@$i"; done
systemctl enable --now trad-beat && systemctl restart trad-beat
systemctl enable --now trad-api && systemctl restart trad-api
systemctl enable --now trad-flower && systemctl restart trad-flower
echo "deployed: $(systemctl is-active trad-api) api, $N_WORKERS worker(s)"
