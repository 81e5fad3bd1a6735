#!/usr/bin/env bash
# Network part of the stand-in, in a private network namespace (never the root one):
# eth1 (public) and eth2 (flat) are veth ends inside the namespace (peers in it too), the
# stand-in runs with --skip-rpc, we check bridge, addresses, dnsmasq, iptables, then SIGTERM it
# and check that everything stays behind, then remove the namespace and every process in it.
#   tests/nova_standin/test_netns.sh [--ipv6] [--floating N] [stand-in flags...]
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=$ROOT/.venv/bin/python
D=$ROOT/tests/nova_standin
NS=nsstandin-$$
T=$(mktemp -d /tmp/nova-standin-ns.XXXXXX)
IPV6=0; NFLOAT=0; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ipv6) IPV6=1 ;;
    --floating) NFLOAT=$2; shift ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done
FAIL=0
ok() { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; FAIL=1; }
cleanup() {
  trap '' PIPE INT TERM HUP
  if ip netns list | grep -qw "$NS"; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$NS"
  fi
  rm -rf "$T"
} >/dev/null 2>&1
trap cleanup EXIT
trap "exit 130" INT TERM HUP PIPE
ip netns add "$NS" || exit 2
N="ip netns exec $NS"
$N ip link set lo up
$N ip link add eth1 type veth peer name eth1p
$N ip link add eth2 type veth peer name eth2p
for i in eth1 eth1p eth2 eth2p; do $N ip link set "$i" up; done
$N ip addr add 10.2.3.11/24 dev eth1

cp "$ROOT/tests/fixtures/nova.conf.flagfile" "$T/nova.conf"
printf -- '--networks_path=%s/networks\n--state_path=%s\n' "$T" "$T" >>"$T/nova.conf"
if [ $IPV6 = 1 ]; then
  printf -- '--use_ipv6\n--fixed_range_v6=fd00:10::/64\n' >>"$T/nova.conf"
  "$PY" "$D/db.py" init "$T/db.json" --cidr-v6 fd00:10::/64 >/dev/null
else
  "$PY" "$D/db.py" init "$T/db.json" >/dev/null
fi
[ "$NFLOAT" -gt 0 ] && "$PY" "$D/db.py" add-floating "$T/db.json" --count "$NFLOAT" --range 10.2.4.0/22 >/dev/null

t0=$(date +%s.%N)
$N "$PY" "$D/nova_network.py" --flagfile="$T/nova.conf" --host=lab-net --db "$T/db.json" \
  --record "$T/rec.jsonl" --skip-rpc "${EXTRA[@]}" >"$T/nn.log" 2>&1 &
NN=$!
for _ in $(seq 1 1200); do grep -q ' ready \|failed' "$T/nn.log" && break; sleep 0.1; done
t1=$(date +%s.%N)
cat "$T/nn.log"
echo "start-up to ready: $(echo "$t1 - $t0" | bc) s (includes interpreter start)"

$N ip -d link show br100 | grep -q 'bridge forward_delay 0' && ok "br100 is a bridge, forward_delay 0" || bad "br100 bridge"
$N ip link show eth2 | grep -q 'master br100' && ok "eth2 enslaved to br100" || bad "eth2 not in br100"
$N ip -o -4 addr show dev br100 | grep -q '10.0.0.1/24 brd 10.0.0.255' && ok "br100 has 10.0.0.1/24" || bad "gateway address"
$N ip -o addr show dev eth1 | grep -q '10.2.3.104/32' && ok "10.2.3.104/32 on eth1" || bad "floating address"
$N ip -o addr show dev lo | grep -q '169.254.169.254/32' && ok "metadata IP on lo" || bad "metadata ip"
[ "$($N cat /proc/sys/net/ipv4/ip_forward)" = 1 ] && ok "ip_forward=1 in the namespace" || bad "ip_forward"
if [ "$NFLOAT" -gt 0 ]; then
  n=$($N ip -o addr show dev eth1 | grep -c '10\.2\.[4-7]\.[0-9]*/32')
  [ "$n" = "$NFLOAT" ] && ok "$n extra floating IPs bound" || bad "extra floating: $n of $NFLOAT"
fi
PIDF=$T/networks/nova-br100.pid
DPID=$(cat "$PIDF" 2>/dev/null)
if [ -n "$DPID" ] && tr '\0' ' ' </proc/"$DPID"/cmdline | grep -q "dnsmasq --strict-order"; then
  ok "dnsmasq pid $DPID (pid file) runs: $(tr '\0' ' ' </proc/$DPID/cmdline)"
else bad "dnsmasq not running"; fi
ip netns pids "$NS" | grep -qx "$DPID" && ok "dnsmasq is in the namespace" || bad "dnsmasq namespace"
grep -q 'fa:16:3e:00:00:03,vm1.novalocal,10.0.0.3' "$T/networks/nova-br100.conf" && ok "hosts file" || bad "hosts file"
if [ $IPV6 = 1 ]; then
  RPID=$(cat "$T/networks/nova-br100.pid.radvd" 2>/dev/null)
  [ -n "$RPID" ] && [ -d /proc/"$RPID" ] && ok "radvd pid $RPID" || bad "radvd"
  $N ip -o -6 addr show dev br100 | grep -q 'fd00:10::1/64' && ok "br100 has fd00:10::1/64" || bad "v6 gateway"
fi
$N iptables-save >"$T/ipt.txt"
for want in \
  '-A FORWARD -j nova-filter-top' '-A OUTPUT -j nova-filter-top' \
  '-A nova-filter-top -j nova-network-local' '-A INPUT -j nova-network-INPUT' \
  '-A FORWARD -j nova-network-FORWARD' '-A nova-network-FORWARD -i br100 -j ACCEPT' \
  '-A nova-network-FORWARD -o br100 -j ACCEPT' \
  '-A nova-network-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT' \
  '-A POSTROUTING -j nova-postrouting-bottom' '-A nova-postrouting-bottom -j nova-network-snat' \
  '-A nova-network-snat -j nova-network-float-snat' \
  '-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120' \
  '-A nova-network-PREROUTING -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3' \
  '-A nova-network-OUTPUT -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3' \
  '-A nova-network-float-snat -s 10.0.0.3/32 -j SNAT --to-source 10.2.3.104' \
  '-A PREROUTING -j nova-network-PREROUTING' '-A POSTROUTING -j nova-network-POSTROUTING' ; do
  grep -qxF -- "$want" "$T/ipt.txt" && ok "iptables: $want" || bad "iptables missing: $want"
done
echo "--- iptables-save in $NS:"; grep -v '^#' "$T/ipt.txt" | head -60
[ "$(grep -c -- '-j DNAT --to-destination 10.0.0.3' "$T/ipt.txt")" -ge 2 ] || bad "DNAT count"

kill -TERM "$NN"; wait "$NN"; echo "stand-in exited rc=$? after SIGTERM"
tail -2 "$T/nn.log"
[ -d /proc/"$DPID" ] && ok "dnsmasq still runs after nova-network's exit" || bad "dnsmasq died"
$N ip link show br100 >/dev/null 2>&1 && ok "br100 stays" || bad "br100 gone"
$N ip -o addr show dev eth1 | grep -q '10.2.3.104/32' && ok "floating IP stays" || bad "floating gone"
$N iptables-save | grep -q nova-network-snat && ok "chains stay" || bad "chains gone"
$N iptables-save | grep -c 'nova-' | sed 's/^/nova iptables lines: /'
echo "--- restart on the leftover state + associate/disassociate, in-process:"
$N "$PY" "$D/selftest_associate.py" "$T/nova.conf" "$T/db.json" || FAIL=1
exit $FAIL
