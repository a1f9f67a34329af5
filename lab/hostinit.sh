#!/bin/bash
# PID 1 of one lab host (a "server"): started by lab/hosts.py (start_init) as
#   ip netns exec NS unshare --uts --ipc --mount --pid --fork --mount-proc --propagation private \
#       lab/hostinit.sh HOST HOSTDIR LABDIR BOOT
# It gives the host its own hostname and its own copies of the directories that hold per-server
# state, starts sshd, optionally runs the boot sequence (what a real server starts at boot), then
# sleeps and reaps orphans until it is killed (SIGKILL from the root namespace = power off).
set -u
HOST=$1      # db01 ...
HD=$2        # lab/.state/N/hosts/HOST (absolute)
LABDIR=$3    # the checkout's lab/ (absolute)
BOOT=${4:-0} # 1 = run lab/bin/boot (cluster stack, PostgreSQL) after sshd, like a server booting

log() { echo "$(date '+%F %T') hostinit[$HOST]: $*"; }
die() { log "FATAL: $*"; exit 1; }

hostname "$HOST" || die "hostname"

# Reach the host's own tree and the lab's commands through fixed paths first: the checkout may live
# under /tmp, which is about to be covered by the host's own /tmp.
mount --bind "$HD" /opt/hatasks-lab/host || die "bind /opt/hatasks-lab/host"
mount --bind "$LABDIR/bin" /opt/hatasks-lab/bin || die "bind /opt/hatasks-lab/bin"
HD=/opt/hatasks-lab/host

# per-host directories: the host's own copies live under $HD/fs
for d in etc/corosync var/lib/pacemaker var/lib/corosync var/log etc/pgpool2 var/lib/postgresql \
         var/lib/hatasks etc/apache2 var/www root var/tmp; do
    mkdir -p "/$d" && mount --bind "$HD/fs/$d" "/$d" || die "bind /$d"
done
mount --bind "$HD/fs/etc/hosts" /etc/hosts || die "bind /etc/hosts"

# volatile state: /run (= /var/run) and /dev/shm are tmpfs (fresh at every boot)
volatile() {
    mount -t tmpfs -o mode=0755,size=64m "lab-run-$HOST" /run || die "tmpfs /run"
    mount -t tmpfs -o mode=1777,size=256m "lab-shm-$HOST" /dev/shm || die "tmpfs /dev/shm"
    mkdir -p /run/sshd /run/lock /run/crm /run/corosync /run/apache2 /run/lock/apache2 /run/postgresql \
        /run/hatasks-lab
    chmod 0755 /run/sshd
    chown hacluster:haclient /run/crm
    chown postgres:postgres /run/postgresql && chmod 2775 /run/postgresql
}
volatile
mount --bind "$HD/tmp" /tmp || die "bind /tmp"   # the host's own /tmp

# OCF providers: the real heartbeat + pacemaker ones plus the lab's own (pgpool agent)
OCF=$HD/ocf-rd
mount --bind /usr/lib/ocf/resource.d/heartbeat "$OCF/heartbeat" || die "bind ocf heartbeat"
mount --bind /usr/lib/ocf/resource.d/pacemaker "$OCF/pacemaker" || die "bind ocf pacemaker"
mount --rbind "$OCF" /usr/lib/ocf/resource.d || die "bind ocf resource.d"

ip link set lo up

start() {  # what the "BIOS" hands over to: sshd, then (BOOT=1) the services started at boot
    /usr/sbin/sshd -f "$HD/sshd_config" -E /var/log/sshd.log || die "sshd"
    log "up (sshd started, boot=$BOOT)"
    if [ "$BOOT" = 1 ]; then
        ( { /opt/hatasks-lab/bin/boot; touch /run/hatasks-lab/booted; } >>/var/log/boot.log 2>&1 </dev/null & )
    else
        touch /run/hatasks-lab/booted
    fi
}

# A reboot (SIGUSR1 from /opt/hatasks-lab/bin/reboot or `inv lab.reboot`): an orderly shutdown of the
# services as a real server's shutdown does (cluster stack, then PostgreSQL), every process killed,
# volatile state and addresses other than the host's own cleared, then boot with BOOT=1.
reboot_now() {
    log "reboot: stopping the cluster stack and PostgreSQL"
    timeout 150 /opt/hatasks-lab/bin/stack stop >>/var/log/boot.log 2>&1
    if [ -f /var/lib/postgresql/15/data/postmaster.pid ]; then
        timeout 60 runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /var/lib/postgresql/15/data \
            -m fast -w stop >>/var/log/boot.log 2>&1
    fi
    kill -TERM -1 2>/dev/null; sleep 1; kill -KILL -1 2>/dev/null
    wait 2>/dev/null   # known jobs; orphans are reaped by bash's SIGCHLD handling
    umount -l /run /dev/shm
    volatile
    find /tmp -mindepth 1 -delete 2>/dev/null
    ip -4 addr flush dev eth0 secondary 2>/dev/null
    BOOT=1
    log "reboot: booting"
    start
}

start
# PID 1: reap every orphan (bash's SIGCHLD handling waits for any child), never exit
REBOOT=0
trap '' HUP INT TERM
trap 'REBOOT=1' USR1
while :; do
    sleep 60 &
    wait
    if [ "$REBOOT" = 1 ]; then
        REBOOT=0
        reboot_now
    fi
done
