#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders of untrusted bytes (crates/fuzz), on stable Rust.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60 s, every target)
# Instruments every crate of the harness with LLVM's SanitizerCoverage (the edge guards
# libFuzzer and AFL++ read; crates/fuzz/src/coverage.rs implements their callbacks). --target
# keeps the flags off build scripts and proc macros, which run inside the compiler. A crash is
# kept in crates/fuzz/regressions/<target>/ and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
-C llvm-args=-sanitizer-coverage-trace-pc-guard -C debug-assertions -C overflow-checks"
cargo run --release -p fuzz --target "$host" --target-dir target/fuzz -- --seconds "$seconds" "$@"
