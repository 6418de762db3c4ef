#!/usr/bin/env bash
# Four `agora node --validator-key` processes, each in its own network namespace (its own
# interfaces, addresses and ports, as four hosts would be), joined by a bridge on 10.99.0.0/24.
# Checks that every validator finalizes past height $HEIGHT and that all hold the same block
# hash and state root there, then removes the namespaces, the bridge and the files.
#
# Needs root (or CAP_NET_ADMIN), iproute2, curl and jq:
#   sudo scripts/validators-netns.sh                 # target/debug/agora, about 30 s
#   AGORA=target/release/agora HEIGHT=50 sudo -E scripts/validators-netns.sh
set -euo pipefail

AGORA=$(realpath "${AGORA:-target/debug/agora}")
HEIGHT=${HEIGHT:-20}
N=4
DIR=$(mktemp -d /tmp/agora-netns.XXXXXX)
BRIDGE=agora-br0
export AGORA_WALLET_DIR=$DIR/wallets AGORA_PASSWORD=netns-throwaway
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for i in $(seq 0 $((N - 1))); do ip netns del "agora-v$i" 2>/dev/null || true; done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

addr() { echo "10.99.0.$(($1 + 1))"; }

# The bridge (with an address, so this host reaches every validator's RPC) and one namespace
# per validator, its end of a veth pair on the bridge.
ip link add "$BRIDGE" type bridge
ip addr add 10.99.0.254/24 dev "$BRIDGE"
ip link set "$BRIDGE" up
for i in $(seq 0 $((N - 1))); do
  ip netns add "agora-v$i"
  ip link add "agora-v$i-h" type veth peer name eth0 netns "agora-v$i"
  ip link set "agora-v$i-h" master "$BRIDGE" up
  ip -n "agora-v$i" addr add "$(addr "$i")/24" dev eth0
  ip -n "agora-v$i" link set eth0 up
  ip -n "agora-v$i" link set lo up
done

# A throwaway wallet per validator (cheap KDF) and a genesis naming their hotkeys.
keys=()
for i in $(seq 0 $((N - 1))); do
  "$AGORA" wallet new --name "v$i" --hotkey validator --kdf-memory-kib 8 --kdf-passes 1 >/dev/null
  keys+=("$("$AGORA" wallet show --name "v$i" | awk '$1 == "hotkey" && $2 == "validator" {print $3}')")
done
validators=$(printf '%s\n' "${keys[@]}" | jq -R '{key: ., power: 1}' | jq -s .)
jq -n --argjson v "$validators" '{chain_id: "agora-netns", validators: $v}' >"$DIR/genesis.json"

for i in $(seq 0 $((N - 1))); do
  peers=()
  for j in $(seq 0 $((N - 1))); do
    [ "$j" = "$i" ] || peers+=("${keys[$j]}@$(addr "$j"):9945")
  done
  ip netns exec "agora-v$i" "$AGORA" node --genesis "$DIR/genesis.json" --data-dir "$DIR/v$i" \
    --block-time-ms 200 --validator-key "$AGORA_WALLET_DIR/v$i/hotkeys/validator" \
    --p2p-addr "$(addr "$i"):9945" --rpc-addr "$(addr "$i"):9960" \
    --peers "$(IFS=,; echo "${peers[*]}")" >"$DIR/v$i.log" 2>&1 &
  pids+=($!)
done

rpc() { # rpc VALIDATOR METHOD PARAMS
  curl -s --max-time 2 -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "http://$(addr "$1"):9960"
}

deadline=$((SECONDS + 120))
while :; do
  heights=()
  for i in $(seq 0 $((N - 1))); do
    heights+=("$(rpc "$i" agora_status '[]' | jq -r '.result.finalized.height // 0' 2>/dev/null || echo 0)")
  done
  low=$(printf '%s\n' "${heights[@]}" | sort -n | head -1)
  [ "$low" -ge "$HEIGHT" ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "not every validator reached height $HEIGHT in 120 s: finalized ${heights[*]}" >&2
    tail -5 "$DIR"/v*.log >&2
    exit 1
  fi
  sleep 1
done

blocks=()
for i in $(seq 0 $((N - 1))); do
  blocks+=("$(rpc "$i" agora_block "[$HEIGHT]" | jq -r '.result | "\(.hash) \(.block.header.state_root)"')")
done
if [ "$(printf '%s\n' "${blocks[@]}" | sort -u | wc -l)" != 1 ]; then
  echo "the validators disagree at height $HEIGHT:" >&2
  printf '  %s\n' "${blocks[@]}" >&2
  exit 1
fi
echo "$N validators in $N network namespaces: finalized ${heights[*]}; block $HEIGHT is ${blocks[0]% *} (state root ${blocks[0]#* }) on all"
