#!/usr/bin/env bash
# Python <-> Rust interoperability of the wire protocol (5: a signed handshake per connection, then
# MACed calls and answers), both directions, on loopback:
#  (a) a Rust axon (examples/known_axon.rs, y = 2x + 1) called by a Python dendrite;
#  (b) a Python axon (interop.py axon) called by a Rust dendrite (examples/call_axon.rs).
# Needs the Python package: python3 -m pip install ./python (from the repository root; its gRPC
# stubs are generated from proto/agora.proto when it is built). Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../../.. && pwd)

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
python3 -c "import agora.wire" || { echo "interop: install the Python package first: python3 -m pip install $root/python"; exit 1; }

cargo build --quiet --manifest-path "$root/Cargo.toml" -p wire --example known_axon --example call_axon
examples="${CARGO_TARGET_DIR:-$root/target}/debug/examples"

# Starts "$@" with stdin held open by a fifo; waits for its LISTEN line; sets addr and key.
start() {
  local name=$1; shift
  mkfifo "$tmp/$name.in"
  "$@" < "$tmp/$name.in" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  pids+=($!)
  exec {fd}> "$tmp/$name.in"   # keeps the server's stdin open until this script exits
  for _ in $(seq 1 200); do
    if read -r word addr key < "$tmp/$name.out" 2>/dev/null && [ "$word" = LISTEN ]; then return 0; fi
    sleep 0.05
  done
  echo "$name did not start:"; cat "$tmp/$name.err"; return 1
}

echo "== (a) Rust axon, Python dendrite"
start rust_axon "$examples/known_axon"
python3 interop.py client "$addr" "$key"

echo "== (b) Python axon, Rust dendrite"
start py_axon python3 interop.py axon
"$examples/call_axon" "$addr" "$key"

echo "interop: both directions OK"
