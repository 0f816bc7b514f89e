# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot test helpers for a real CephFS, sourced after functions.sh.
#
# start_cephfs DIR1 DIR2 starts a one-node Ceph cluster from Debian's
# packages (mon, osd on memstore so that no disk is needed, mds; no mgr:
# nothing here needs one, and it is most of the memory) bound to 127.0.0.1
# only, with auth none, everything under $TESTDIR/ceph, creates one
# filesystem and mounts it twice with ceph-fuse: DIR1 as client.admin and
# DIR2 as client.two, two Ceph clients as two hosts would be.  stop_cephfs
# (registered with on_exit) unmounts and kills the daemons by PID.
# evict_ceph_client NAME evicts the mount of client.NAME from the MDS,
# which blocklists it: the fencing of a dead host.

# ceph_skip_unless_installed: exit 77, saying why, without the packages.
ceph_skip_unless_installed() {
  for c in ceph ceph-mon ceph-osd ceph-mds ceph-fuse monmaptool fusermount; do
    command -v "$c" >/dev/null 2>&1 ||
      skip "$c missing: scripts/install-deps.sh installs Ceph (ceph-mon ceph-osd ceph-mds ceph-fuse ceph-common)"
  done
  [ -c /dev/fuse ] || skip "no /dev/fuse: ceph-fuse cannot mount"
}

CEPH_DIR=$TESTDIR/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
CEPH_FS=nbdroot
CEPH_MDS=a
CEPH_PIDS=""
CEPH_MOUNTS=""

# ceph_cmd ARGS...: the ceph CLI on this cluster, never hanging.
ceph_cmd() {
  timeout 60 ceph -c "$CEPH_CONF" --connect-timeout 20 "$@"
}

_ceph_conf() {
  local v1 v2
  v1=$(free_port)
  v2=$(free_port)
  cat >"$CEPH_CONF" <<CONF
[global]
fsid = $CEPH_FSID
mon host = [v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
run dir = $CEPH_DIR/run
log file = $CEPH_DIR/log/\$cluster-\$name.log
admin socket = $CEPH_DIR/run/\$cluster-\$name.\$pid.asok
crash dir = $CEPH_DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
mon warn on pool no redundancy = false
mds cache memory limit = 134217728
[mon]
mon data = $CEPH_DIR/mon
mon cluster log file = $CEPH_DIR/log/cluster.log
[osd]
osd data = $CEPH_DIR/osd
osd objectstore = memstore
memstore device bytes = 1073741824
osd journal size = 0
[mds]
mds data = $CEPH_DIR/mds
CONF
}

# _ceph_daemon NAME CMD...: starts a daemon in the foreground in its own
# session; its PID goes to CEPH_PIDS.
_ceph_daemon() {
  local name=$1
  shift
  setsid "$@" >>"$CEPH_DIR/log/$name.out" 2>&1 &
  CEPH_PIDS="$! $CEPH_PIDS"
}

# _ceph_wait WHAT CMD...: until CMD succeeds, at most 60 s.
_ceph_wait() {
  local what=$1 i=0
  shift
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -ge 300 ]; then
      tail -5 "$CEPH_DIR"/log/*.out "$CEPH_DIR"/log/*.log >&2 2>/dev/null
      fail "Ceph: $what did not come in 60 s"
    fi
    sleep 0.2
  done
}

_ceph_mds_active() { ceph_cmd mds stat | grep -q "up:active"; }

# ceph_fuse_mount NAME DIR: mounts the filesystem on DIR as client.NAME;
# ceph-fuse runs in the foreground (-f) so that its PID is known:
# $CEPH_DIR/fuse-NAME.pid.
ceph_fuse_mount() {
  mkdir -p "$2"
  setsid ceph-fuse -f -c "$CEPH_CONF" -n "client.$1" --client_fs "$CEPH_FS" \
    "$2" >>"$CEPH_DIR/log/fuse-$1.out" 2>&1 &
  echo $! >"$CEPH_DIR/fuse-$1.pid"
  CEPH_PIDS="$! $CEPH_PIDS"
  CEPH_MOUNTS="$2 $CEPH_MOUNTS"
  _ceph_wait "the mount of client.$1 on $2" mountpoint -q "$2"
}

# ceph_fuse_pid NAME: the PID of the ceph-fuse of client.NAME.
ceph_fuse_pid() { cat "$CEPH_DIR/fuse-$1.pid"; }

start_cephfs() {
  local uuid
  mkdir -p "$CEPH_DIR/run" "$CEPH_DIR/log" "$CEPH_DIR/crash" "$CEPH_DIR/osd" \
    "$CEPH_DIR/mds"
  CEPH_FSID=$(cat /proc/sys/kernel/random/uuid)
  _ceph_conf
  on_exit stop_cephfs
  monmaptool --create --fsid "$CEPH_FSID" \
    --addv a "$(sed -n 's/^mon host = //p' "$CEPH_CONF")" \
    "$CEPH_DIR/monmap" >/dev/null || fail "monmaptool failed"
  ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
    >>"$CEPH_DIR/log/mkfs.out" 2>&1 || fail "ceph-mon --mkfs failed"
  _ceph_daemon mon ceph-mon -c "$CEPH_CONF" -f -i a
  _ceph_wait "the monitor" ceph_cmd mon stat

  uuid=$(cat /proc/sys/kernel/random/uuid)
  ceph_cmd osd new "$uuid" >/dev/null || fail "ceph osd new failed"
  ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$uuid" \
    >>"$CEPH_DIR/log/mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed"
  _ceph_daemon osd ceph-osd -c "$CEPH_CONF" -f -i 0
  _ceph_daemon mds ceph-mds -c "$CEPH_CONF" -f -i "$CEPH_MDS"

  for pool in meta data; do
    ceph_cmd osd pool create "$CEPH_FS-$pool" 8 8 >/dev/null 2>&1 ||
      fail "ceph osd pool create failed"
    ceph_cmd osd pool set "$CEPH_FS-$pool" size 1 --yes-i-really-mean-it \
      >/dev/null 2>&1 || true
  done
  ceph_cmd fs new "$CEPH_FS" "$CEPH_FS-meta" "$CEPH_FS-data" >/dev/null 2>&1 ||
    fail "ceph fs new failed"
  ceph_cmd fs set "$CEPH_FS" standby_count_wanted 0 >/dev/null || true
  _ceph_wait "an active MDS" _ceph_mds_active

  ceph_fuse_mount admin "$1"
  ceph_fuse_mount two "$2"
}

stop_cephfs() {
  # A stopped ceph-fuse (a test's dead host) would keep the unmount and
  # its users waiting.
  for p in $CEPH_PIDS; do
    kill -CONT "$p" 2>/dev/null
  done
  for m in $CEPH_MOUNTS; do
    fusermount -u -z "$m" 2>/dev/null
  done
  for p in $CEPH_PIDS; do
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  CEPH_MOUNTS=""
  CEPH_PIDS=""
}

# ceph_client_id NAME: the MDS session id of the mount of client.NAME.
ceph_client_id() {
  ceph_cmd tell "mds.$CEPH_MDS" client ls 2>/dev/null |
    /usr/bin/python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s.get("client_metadata", {}).get("entity_id") == sys.argv[1]:
        print(s["id"])
' "$1"
}

# evict_ceph_client NAME: evicts (and so blocklists) the mount of
# client.NAME.
evict_ceph_client() {
  local id
  id=$(ceph_client_id "$1")
  [ -n "$id" ] || { echo "evict_ceph_client: no session of client.$1" >&2; return 1; }
  ceph_cmd tell "mds.$CEPH_MDS" client evict "id=$id" >/dev/null
}
