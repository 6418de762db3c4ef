#!/usr/bin/env bash
# The main job: a whole market on this machine. Installs Debian's `fortunes` corpus when it can
# (the peers' training text; without it they train on the built-in sample in
# crates/nucleus/data), builds agora in release mode, and runs `agora localnet` with the
# arguments given (default: the built-in 16-peer scenario, report in ./agora-localnet).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/games/fortunes/computers ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y fortunes >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y fortunes >/dev/null) \
            || echo "could not install fortunes: the peers train on the built-in sample" >&2
    elif command -v sudo >/dev/null; then
        sudo apt-get install -y fortunes >/dev/null || echo "could not install fortunes: the peers train on the built-in sample" >&2
    else
        echo "fortunes is not installed and there is no sudo: the peers train on the built-in sample" >&2
    fi
fi

cargo build --release --bin agora
if [ "$#" -eq 0 ]; then
    set -- --out agora-localnet
fi
exec ./target/release/agora localnet "$@"
