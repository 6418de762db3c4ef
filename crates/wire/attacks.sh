#!/usr/bin/env bash
# Issue 13's two attacks on an axon, before and after the fix, in one run (loopback only):
#  upload: 16 concurrent 100 MB Forward uploads from a key the axon does not know; the axon's
#          peak resident memory (VmHWM) above its idle size;
#  flood:  a registered zero-stake key sends 20,000 empty requests dated as far ahead as the axon
#          accepts into a 10,000-entry replay cache, while a key with 1,000 stake calls every
#          20 ms during the flood and 8 s after; the share of its calls answered BACKOFF.
# "before" is the same axon example (examples/flood_axon.rs) built from BEFORE_REV, attacked in
# protocol 1 with requests dated 29 s ahead (its window was 30 s both ways); "after" is this
# tree, credentials in metadata (protocol 2, now 5: a session per connection, MACed calls),
# requests dated 1.9 s ahead (its future window is 2 s).
#
# usage: bash crates/wire/attacks.sh [BEFORE_REV]
#        (default: the parent of the commit that brought protocol 2 into crates/wire/src/auth.rs)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
introduced=$(git -C "$root" log --format=%h --reverse -S"pub const PROTOCOL_VERSION" -- crates/wire/src/auth.rs | head -1)
before_rev=${1:-$introduced^}
target="${CARGO_TARGET_DIR:-$root/target}"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building the axon at $before_rev and here (release)" >&2
mkdir -p "$tmp/before"
git -C "$root" archive "$before_rev" | tar -x -C "$tmp/before"
cp examples/flood_axon.rs "$tmp/before/crates/wire/examples/"
# A target dir of its own (kept for the next run): cargo would take the two trees' `wire` for
# one package and mix their build outputs.
CARGO_TARGET_DIR="$target/attacks-before" cargo build --release --quiet --manifest-path "$tmp/before/Cargo.toml" -p wire --example flood_axon
cp "$target/attacks-before/release/examples/flood_axon" "$tmp/axon-before"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p wire --example flood_axon --example attack
cp "$target/release/examples/flood_axon" "$tmp/axon-after"
attack="$target/release/examples/attack"
read -r _ honest _ flooder < <("$attack" keys)

# start NAME BIN ARGS...: runs an axon with stdin on a fifo; sets addr, key, pid, idle_kb.
start() {
  local name=$1; shift
  mkfifo "$tmp/$name.in"
  "$@" < "$tmp/$name.in" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  pid=$!
  pids+=("$pid")
  exec {fd}> "$tmp/$name.in"
  eval "fd_$name=$fd"
  for _ in $(seq 1 200); do
    if read -r word addr key < "$tmp/$name.out" 2>/dev/null && [ "$word" = LISTEN ]; then
      idle_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
      return 0
    fi
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$tmp/$name.err" >&2; return 1
}

# stop NAME: closes its stdin, waits for it, sets peak_kb (its peak RSS). Not in a subshell:
# only this shell can wait for its child.
stop() {
  local name=$1 fdv="fd_$1"
  eval "exec ${!fdv}>&-"
  wait "$pid" || true
  peak_kb=$(awk '/PEAK_RSS_KB/ {print $2}' "$tmp/$name.out")
}

declare -A rss result
for side in before after; do
  protocol=$([ $side = before ] && echo 1 || echo 2)
  start "up_$side" "$tmp/axon-$side" --stake "$honest=1000"
  up_idle=$idle_kb
  echo "== $side: upload attack (protocol $protocol)" >&2
  "$attack" upload "$addr" "$key" "$protocol" 16 100 >&2
  stop "up_$side"
  rss[$side]=$(( (peak_kb - up_idle) / 1024 ))
  start "fl_$side" "$tmp/axon-$side" --replay-cache 10000 --stake "$honest=1000" --stake "$flooder=0"
  ahead=$([ $side = before ] && echo 29000 || echo 1900)
  echo "== $side: flood attack (protocol $protocol, requests $ahead ms ahead)" >&2
  out=$("$attack" flood "$addr" "$key" "$protocol" "$ahead" 20000 8)
  echo "$out" >&2
  result[$side]=$(sed -n 's/.*backoff_rate=\([0-9.]*\).*/\1/p' <<< "$out")
  stop "fl_$side"
done

printf '\n| attack | before (%s) | after (this tree) |\n|---|---|---|\n' "$before_rev"
printf '| 16 x 100 MB uploads from an unknown key: axon peak memory above idle | %s MB | %s MB |\n' "${rss[before]}" "${rss[after]}"
printf '| future-dated flood by a zero-stake key: staked caller answered BACKOFF | %.1f%% | %.1f%% |\n' \
  "$(echo "${result[before]} * 100" | bc -l)" "$(echo "${result[after]} * 100" | bc -l)"
