#!/usr/bin/env bash
# The dashboard's browser test: starts a real `agora node --dev`, registers three neurons with
# the CLI (wallet, transfer, register, serve, stake, weights), then drives Debian's headless Chromium
# with playwright-core (dashboard.mjs) against the node's page. Screenshots go to
# target/dashboard/. Needs: `cargo build --bin agora`, `npm ci` in this folder, /usr/bin/chromium
# (CHROMIUM=... for another path).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
export AGORA=${AGORA:-$ROOT/target/debug/agora}
OUT=${OUT:-$ROOT/target/dashboard}
WORK=$(mktemp -d)
mkdir -p "$OUT"
rm -f "$OUT"/*.png
NODE_PID=
cleanup() {
  if [ -n "$NODE_PID" ]; then kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --localnet-file: the file `agora localnet` would write; written below as it would be.
"$AGORA" node --dev --data-dir "$WORK/chain" --block-time-ms 500 --rpc-addr 127.0.0.1:0 \
  --rpc-addr-file "$WORK/addr" --localnet-file "$WORK/localnet.json" >"$OUT/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do [ -s "$WORK/addr" ] && break; sleep 0.1; done
[ -s "$WORK/addr" ] || { echo "the node did not start:"; cat "$OUT/node.log"; exit 1; }
URL="http://$(cat "$WORK/addr")"
echo "node at $URL"

export AGORA_WALLET_DIR="$WORK/wallets" AGORA_PASSWORD=pw AGORA_CHAIN="$URL"
# "label value" -> value, from the CLI's output.
field() { awk -v l="$1" '$1 == l && (l != "hotkey" || $2 == "h") { print (l == "hotkey" ? $3 : $2); exit }'; }

neurons=()
for i in 1 2 3; do
  out=$("$AGORA" wallet new --name "w$i" --hotkey h --kdf-memory-kib 64 --kdf-passes 1)
  cold=$(echo "$out" | field coldkey)
  hot=$(echo "$out" | field hotkey)
  "$AGORA" tx transfer --dev-account alice --to "$cold" --amount 100 >/dev/null
  # The hotkey pays the fees of what it signs (serve).
  "$AGORA" tx transfer --wallet "w$i" --to "$hot" --amount 0.5 >/dev/null
  "$AGORA" tx register --wallet "w$i" --hotkey h 2>/dev/null | grep -q "registered as uid"
  "$AGORA" tx serve --wallet "w$i" --hotkey h --ip "10.0.0.$i" --port "800$i" >/dev/null
  stake_out=$("$AGORA" tx stake --wallet "w$i" --hotkey h --amount "$((i * 10)).5")
  tx=$(echo "$stake_out" | field transaction)
  neurons+=("{\"hotkey\":\"$hot\",\"stake\":\"$((i * 10)).5\",\"endpoint\":\"10.0.0.$i:800$i\",\"stake_tx\":\"$tx\"}")
done
# uid 0 weighs uids 1 and 2 as 1:3 (the CLI normalises to 0.25, 0.75).
"$AGORA" tx weights --wallet w1 --hotkey h --uids 1,2 --values 1,3 >/dev/null
(IFS=,; echo "[${neurons[*]}]") >"$WORK/expected.json"
cat >"$WORK/localnet.json" <<'JSON'
{"done": 12, "blocks": 500, "epoch": 1, "judge_block": 10, "spearman_incentive": 0.5,
 "peers": [{"uid": 0, "name": "expert-0", "role": "honest", "judge": 2.25, "loss": [[5, 4.5], [10, 3.75]]},
           {"uid": 1, "name": "noise-0", "role": "noise", "judge": 0.0, "loss": [[10, 5.25]]},
           {"uid": 2, "name": "cabal-0", "role": "cabal", "judge": null}]}
JSON
echo "registered: $(cat "$WORK/expected.json")"

node dashboard.mjs "$URL" "$WORK/expected.json" "$OUT"
