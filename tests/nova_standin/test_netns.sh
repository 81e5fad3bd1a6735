#!/usr/bin/env bash
# Network part of the stand-in, in a private network namespace (never the root one):
# eth1 (public) and eth2 (flat) are veth ends inside the namespace (peers in it too), the
# stand-in runs with --skip-rpc, we check bridge, addresses, dnsmasq, iptables, then SIGTERM it
# and check that everything stays behind, then remove the namespace and every process in it.
#   tests/nova_standin/test_netns.sh [--ipv6] [--networks 1|2] [--floating N] [stand-in flags...]
# --networks 2: the lab's real-site shape: a second flat network, br101 on eth5 (10.0.1.0/24,
# vm2 10.0.1.3, floating IP 10.2.3.110), each network's bridge_interface from the database and
# no flat_interface flag (nova's plug would put both bridges on it); with --ipv6 the networks
# get fd00::/64 and fd00:0:0:1::/64 and a radvd each.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=$ROOT/.venv/bin/python
D=$ROOT/tests/nova_standin
NS=nsstandin-$$
T=$(mktemp -d /tmp/nova-standin-ns.XXXXXX)
IPV6=0; NFLOAT=0; NNETS=1; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ipv6) IPV6=1 ;;
    --networks) NNETS=$2; shift ;;
    --floating) NFLOAT=$2; shift ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done
FAIL=0
ok() { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; FAIL=1; }
# shellcheck disable=SC2317 # run by the EXIT trap; shellcheck 0.9 takes the closing `exit`
# for the end of every path and calls the body unreachable (koalaman/shellcheck#2542)
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
$N ip link add eth5 type veth peer name eth5p
for i in eth1 eth1p eth2 eth2p eth5 eth5p; do $N ip link set "$i" up; done
$N ip addr add 10.2.3.11/24 dev eth1

cp "$ROOT/tests/fixtures/nova.conf.flagfile" "$T/nova.conf"
printf -- '--networks_path=%s/networks\n--state_path=%s\n' "$T" "$T" >>"$T/nova.conf"
if [ "$NNETS" = 2 ]; then
  V6A=-; V6B=-
  if [ $IPV6 = 1 ]; then
    printf -- '--use_ipv6\n--fixed_range_v6=fd00::/48\n' >>"$T/nova.conf"
    V6A=fd00::/64; V6B=fd00:0:0:1::/64
  fi
  # each network on its own bridge_interface: no flat_interface flag (empty: unset)
  printf -- '--flat_interface=\n' >>"$T/nova.conf"
  "$PY" "$D/db.py" init "$T/db.json" --network "10.0.0.0/24,br100,eth2,$V6A" \
    --network "10.0.1.0/24,br101,eth5,$V6B" --vm vm2=10.0.1.3 --floating 10.2.3.110=10.0.1.3 >/dev/null
elif [ $IPV6 = 1 ]; then
  printf -- '--use_ipv6\n--fixed_range_v6=fd00:10::/64\n' >>"$T/nova.conf"
  V6A=fd00:10::/64
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
"$PY" - "$T/networks/nova-standin-applied.json" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
c = a["commands"]
print("nova's commands: %d, %d as root (each after the command cost), run time %.3f s, "
      "init_host %.3f s; the slowest:" % (len(c), sum(x["root"] for x in c),
                                          sum(x.get("duration", 0) for x in c), a["duration_s"]))
for x in sorted(c, key=lambda x: -x.get("duration", 0))[:4]:
    print("  %.3f s  %s" % (x["duration"], " ".join(x["cmd"])[:90]))
EOF

if $N ip -d link show br100 | grep -q 'bridge forward_delay 0'; then ok "br100 is a bridge, forward_delay 0"; else bad "br100 bridge"; fi
if $N ip link show eth2 | grep -q 'master br100'; then ok "eth2 enslaved to br100"; else bad "eth2 not in br100"; fi
if $N ip -o -4 addr show dev br100 | grep -q '10.0.0.1/24 brd 10.0.0.255'; then ok "br100 has 10.0.0.1/24"; else bad "gateway address"; fi
if $N ip -o addr show dev eth1 | grep -q '10.2.3.104/32'; then ok "10.2.3.104/32 on eth1"; else bad "floating address"; fi
if $N ip -o addr show dev lo | grep -q '169.254.169.254/32'; then ok "metadata IP on lo"; else bad "metadata ip"; fi
if [ "$($N cat /proc/sys/net/ipv4/ip_forward)" = 1 ]; then ok "ip_forward=1 in the namespace"; else bad "ip_forward"; fi
if [ "$NFLOAT" -gt 0 ]; then
  n=$($N ip -o addr show dev eth1 | grep -c '10\.2\.[4-7]\.[0-9]*/32')
  if [ "$n" = "$NFLOAT" ]; then ok "$n extra floating IPs bound"; else bad "extra floating: $n of $NFLOAT"; fi
fi
PIDF=$T/networks/nova-br100.pid
DPID=$(cat "$PIDF" 2>/dev/null)
if [ -n "$DPID" ] && tr '\0' ' ' </proc/"$DPID"/cmdline | grep -q "dnsmasq --strict-order"; then
  ok "dnsmasq pid $DPID (pid file) runs: $(tr '\0' ' ' </proc/"$DPID"/cmdline)"
else bad "dnsmasq not running"; fi
if ip netns pids "$NS" | grep -qx "$DPID"; then ok "dnsmasq is in the namespace"; else bad "dnsmasq namespace"; fi
if grep -q 'fa:16:3e:00:00:03,vm1.novalocal,10.0.0.3' "$T/networks/nova-br100.conf"; then ok "hosts file"; else bad "hosts file"; fi
if grep -qx '3,10.0.0.1' "$T/networks/nova-br100.opts"; then ok "opts file (gateway option)"; else bad "opts file"; fi
if tr '\0' ' ' </proc/"$DPID"/cmdline | grep -q -- "--dhcp-script=$D/dhcpbridge.py"; then ok "dnsmasq runs the stand-in dhcpbridge"; else bad "dhcp-script"; fi
if [ $IPV6 = 1 ]; then
  RPID=$(cat "$T/networks/nova-ra-br100.pid" 2>/dev/null)
  if [ -n "$RPID" ] && [ -d /proc/"$RPID" ]; then ok "radvd pid $RPID"; else bad "radvd"; fi
  # nova's initialize_gateway_device: `ip -f inet6 addr change <cidr_v6> dev br100`
  if $N ip -o -6 addr show dev br100 | grep -q "$V6A"; then ok "br100 has $V6A"; else bad "v6 address"; fi
fi
if [ "$NNETS" = 2 ]; then
  if $N ip link show eth5 | grep -q 'master br101'; then ok "eth5 enslaved to br101 (its bridge_interface)"; else bad "eth5 not in br101"; fi
  if $N ip link show eth2 | grep -q 'master br100'; then ok "eth2 still in br100 alone"; else bad "eth2 moved"; fi
  if $N ip -o -4 addr show dev br101 | grep -q '10.0.1.1/24 brd 10.0.1.255'; then ok "br101 has 10.0.1.1/24"; else bad "br101 gateway"; fi
  if $N ip -o addr show dev eth1 | grep -q '10.2.3.110/32'; then ok "10.2.3.110/32 on eth1"; else bad "second floating address"; fi
  DPID2=$(cat "$T/networks/nova-br101.pid" 2>/dev/null)
  if [ -n "$DPID2" ] && [ "$DPID2" != "$DPID" ] && tr '\0' ' ' </proc/"$DPID2"/cmdline | grep -q -- '--listen-address=10.0.1.1'; then
    ok "a second dnsmasq, pid $DPID2, on 10.0.1.1"
  else bad "no dnsmasq for br101"; fi
  if grep -q 'fa:16:3e:00:01:03,vm2.novalocal,10.0.1.3' "$T/networks/nova-br101.conf" &&
    ! grep -q 10.0.1.3 "$T/networks/nova-br100.conf"; then ok "br101's hosts file holds vm2 alone"; else bad "br101 hosts file"; fi
  if [ $IPV6 = 1 ]; then
    RPID2=$(cat "$T/networks/nova-ra-br101.pid" 2>/dev/null)
    if [ -n "$RPID2" ] && [ -d /proc/"$RPID2" ] && grep -q 'prefix fd00:0:0:1::/64' "$T/networks/nova-ra-br101.conf"; then
      ok "radvd pid $RPID2 for br101 (prefix fd00:0:0:1::/64)"
    else bad "radvd for br101"; fi
    if $N ip -o -6 addr show dev br101 | grep -q 'fd00:0:0:1::/64'; then ok "br101 has fd00:0:0:1::/64"; else bad "br101 v6 address"; fi
  fi
fi
$N iptables-save >"$T/ipt.txt"
WANT2=()
[ "$NNETS" = 2 ] && WANT2=(
  '-A nova-network-snat -s 10.0.1.0/24 -o eth1 -j SNAT --to-source 10.2.3.120'
  '-A nova-network-FORWARD -i br101 -j ACCEPT' '-A nova-network-FORWARD -o br101 -j ACCEPT'
  '-A nova-network-POSTROUTING -s 10.0.1.0/24 -d 10.2.3.120/32 -j ACCEPT'
  '-A nova-network-PREROUTING -d 10.2.3.110/32 -j DNAT --to-destination 10.0.1.3'
  '-A nova-network-float-snat -s 10.0.1.3/32 -o eth1 -j SNAT --to-source 10.2.3.110'
  '-A nova-network-POSTROUTING -o br101 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill')
for want in \
  '-A FORWARD -j nova-filter-top' '-A OUTPUT -j nova-filter-top' \
  '-A nova-filter-top -j nova-network-local' '-A INPUT -j nova-network-INPUT' \
  '-A FORWARD -j nova-network-FORWARD' '-A nova-network-FORWARD -i br100 -j ACCEPT' \
  '-A nova-network-FORWARD -o br100 -j ACCEPT' \
  '-A nova-network-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT' \
  '-A POSTROUTING -j nova-postrouting-bottom' '-A nova-postrouting-bottom -j nova-network-snat' \
  '-A nova-network-snat -j nova-network-float-snat' \
  '-A nova-network-snat -s 10.0.0.0/24 -o eth1 -j SNAT --to-source 10.2.3.120' \
  '-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.2.3.120/32 -j ACCEPT' \
  '-A nova-network-POSTROUTING -s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT' \
  '-A nova-network-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.2.3.120:8775' \
  '-A nova-network-PREROUTING -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3' \
  '-A nova-network-OUTPUT -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3' \
  '-A nova-network-float-snat -s 10.0.0.3/32 -d 10.0.0.3/32 -j SNAT --to-source 10.2.3.104' \
  '-A nova-network-float-snat -s 10.0.0.3/32 -o eth1 -j SNAT --to-source 10.2.3.104' \
  '-A nova-network-POSTROUTING -s 10.0.0.3/32 -m conntrack --ctstate DNAT -j SNAT --to-source 10.2.3.104' \
  '-A nova-network-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill' \
  '-A PREROUTING -j nova-network-PREROUTING' '-A POSTROUTING -j nova-network-POSTROUTING' \
  "${WANT2[@]}"; do
  if grep -qxF -- "$want" "$T/ipt.txt"; then ok "iptables: $want"; else bad "iptables missing: $want"; fi
done
echo "--- iptables-save in $NS:"; grep -v '^#' "$T/ipt.txt" | head -60
$N ebtables -t nat -L PREROUTING >"$T/ebt.txt" 2>&1
# nova's rule has `--logical-in br100`; this kernel refuses it, the stand-in drops it (README)
if grep -q -- '--ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect' "$T/ebt.txt"; then
  ok "ebtables: nat PREROUTING redirect for 10.0.0.3 (nova's floating_ebtables_rules)"
else bad "ebtables rule missing: $(cat "$T/ebt.txt")"; fi
[ "$(grep -c -- '-j DNAT --to-destination 10.0.0.3' "$T/ipt.txt")" -ge 2 ] || bad "DNAT count"

kill -TERM "$NN"; wait "$NN"; echo "stand-in exited rc=$? after SIGTERM"
tail -2 "$T/nn.log"
if [ -d /proc/"$DPID" ]; then ok "dnsmasq still runs after nova-network's exit"; else bad "dnsmasq died"; fi
if $N ip link show br100 >/dev/null 2>&1; then ok "br100 stays"; else bad "br100 gone"; fi
if $N ip -o addr show dev eth1 | grep -q '10.2.3.104/32'; then ok "floating IP stays"; else bad "floating gone"; fi
if $N iptables-save | grep -q nova-network-snat; then ok "chains stay"; else bad "chains gone"; fi
$N iptables-save | grep -c 'nova-' | sed 's/^/nova iptables lines: /'
echo "--- restart on the leftover state + associate/disassociate, in-process:"
$N "$PY" "$D/selftest_associate.py" "$T/nova.conf" "$T/db.json" || FAIL=1
exit $FAIL
