#!/usr/bin/env bash
# A one-node Slurm cluster with slurmdbd accounting on the machine's MariaDB, for the Slurm
# agent's tests. `bash .ci/slurm.sh up [DIR]` installs what is missing (Debian's slurm-wlm,
# slurmdbd, munge), starts munged, slurmdbd, slurmctld and slurmd on ports 16817-16819 with their
# files in DIR (default /tmp/suanli-slurm), and waits until the node takes jobs; every Slurm command
# then needs `SLURM_CONF=DIR/slurm.conf`. `bash .ci/slurm.sh down [DIR]` stops what `up` started
# and drops the accounting database. Runs as root (or with sudo -n), as ../shared/slurm's recipe.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
action="${1:-up}"
dir="${2:-/tmp/suanli-slurm}"
db="suanli_slurm_acct"
export SLURM_CONF="$dir/slurm.conf"
as_root=""
[ "$(id -u)" -eq 0 ] || as_root="sudo -n"

stop() {
    for name in slurmd slurmctld slurmdbd; do
        if [ -f "$dir/$name.pid" ]; then
            $as_root kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
        fi
    done
    sleep 1
    mysql -uroot -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
}

if [ "$action" = down ]; then
    stop
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    $as_root apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge >/dev/null \
        || { $as_root apt-get update -q >/dev/null && $as_root apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge >/dev/null; }
fi

stop
host="$(hostname -s)"
pass="suanli-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$dir/state" "$dir/spool"
rm -rf "${dir:?}/state/"* "${dir:?}/spool/"*
touch "$dir/fakegpu0" "$dir/fakegpu1" "$dir/fakegpu2" "$dir/fakegpu3"
sed -e "s|HOST|$host|g" -e "s|DIR|$dir|g" "$here/slurm/slurm.conf" > "$dir/slurm.conf"
sed -e "s|HOST|$host|g" -e "s|DIR|$dir|g" "$here/slurm/gres.conf" > "$dir/gres.conf"
(umask 077; sed -e "s|DIR|$dir|g" -e "s|=DB$|=$db|" -e "s|PASS|$pass|g" "$here/slurm/slurmdbd.conf" > "$dir/slurmdbd.conf")

# The accounting database and its user, new for each start.
mysql -uroot <<SQL
DROP DATABASE IF EXISTS $db;
CREATE USER IF NOT EXISTS 'suanli_slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'suanli_slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'suanli_slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'suanli_slurm'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL ON $db.* TO 'suanli_slurm'@'127.0.0.1';
GRANT ALL ON $db.* TO 'suanli_slurm'@'localhost';
SQL

# munge: one daemon for the machine, started once.
if ! pgrep -x munged >/dev/null; then
    $as_root mkdir -p /run/munge
    $as_root chown munge:munge /run/munge
    $as_root runuser -u munge -- /usr/sbin/munged
fi

wait_for() { # what, tries, command...
    local what="$1" tries="$2"
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "Slurm: $what did not come up; its log:" >&2
    tail -n 30 "$dir"/*.log >&2 || true
    exit 1
}

$as_root env SLURM_CONF="$SLURM_CONF" slurmdbd
wait_for "slurmdbd" 60 sacctmgr -n list cluster
sacctmgr -i add cluster suanlitest >/dev/null || true
$as_root env SLURM_CONF="$SLURM_CONF" slurmctld -i
wait_for "slurmctld" 60 scontrol ping
$as_root env SLURM_CONF="$SLURM_CONF" slurmd
node_idle() { sinfo -h -N -o '%T' | grep -q idle; }
wait_for "the node" 60 node_idle
echo "Slurm is up: SLURM_CONF=$SLURM_CONF"
sinfo -N -o '%N %T %G'
