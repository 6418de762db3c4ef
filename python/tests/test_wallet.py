"""Wallets in `agora wallet`'s format: written here, read by the CLI, and the reverse."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agora import wallet as w
from agora.wallet import INSECURE_FOR_TESTS, Wallet

from conftest import ROOT, run_agora

# The shared wallet vector: what `agora wallet regen` wrote (password "rust", cheap KDF) from
# the mnemonic below. The Python side must open it and derive the same keys; the wallet crate's
# tests (crates/wallet/tests/wallet.rs) open the same files.
RUST_WALLET = ROOT / "docs" / "vectors" / "wallets"
MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"


def test_a_wallet_round_trips_and_keys_come_from_the_words(tmp_path: Path) -> None:
    wal, phrase = Wallet.create("alice", "pw", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    assert len(phrase.split()) == 12
    opened = Wallet.open("alice", tmp_path)
    key = opened.unlock_coldkey("pw")
    assert key.public == wal.coldkey_public == opened.coldkey_public
    assert w.key_from_mnemonic(phrase).public == key.public
    hot_phrase = opened.create_hotkey("miner", words=24)
    assert len(hot_phrase.split()) == 24
    assert opened.hotkey("miner").public == w.key_from_mnemonic(hot_phrase).public
    assert opened.hotkeys() == ["miner"]
    assert w.list_wallets(tmp_path) == ["alice"]
    # Regenerating from the words under a new password gives the same key.
    again = Wallet.regen_coldkey("alice", phrase.upper().replace(" ", "   "), "new", tmp_path, INSECURE_FOR_TESTS, overwrite=True)
    assert again.unlock_coldkey("new").public == key.public


def test_files_are_owner_only_and_nothing_is_replaced_silently(tmp_path: Path) -> None:
    wal, _ = Wallet.create("bob", b"pw", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    wal.create_hotkey("h")
    for p in [wal.dir / "coldkey", wal.dir / "coldkeypub.txt", wal.dir / "hotkeys" / "h"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE((wal.dir / "hotkeys").stat().st_mode) == 0o700
    with pytest.raises(w.AlreadyExists):
        Wallet.create("bob", b"pw", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    with pytest.raises(w.AlreadyExists):
        wal.create_hotkey("h")
    assert not [p for p in wal.dir.rglob(".*tmp*")], "no temporary file left behind"


def test_bad_passwords_names_words_and_files_fail_clearly(tmp_path: Path) -> None:
    wal, _ = Wallet.create("carol", "right", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    with pytest.raises(w.WrongPassword, match="wrong password"):
        wal.unlock_coldkey("wrong")
    for name in ["", "../x", ".hidden", "a/b", "x" * 65]:
        with pytest.raises(w.WalletError, match="invalid name"):
            Wallet.open(name, tmp_path)
    with pytest.raises(w.NoWallet):
        Wallet.open("nobody", tmp_path)
    with pytest.raises(w.NoHotkey):
        wal.hotkey("none")
    with pytest.raises(w.WalletError, match="12 or 24"):
        w.parse_mnemonic("legal winner thank")
    with pytest.raises(w.WalletError, match="checksum"):
        w.parse_mnemonic(" ".join(["legal"] * 12))
    # A swapped public key fails the AEAD's associated data: refused, never a wrong key.
    f = json.loads((wal.dir / "coldkey").read_text())
    other, _ = Wallet.create("dave", "x", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    f["public_key"] = other.coldkey_public.hex()
    (wal.dir / "coldkey").write_text(json.dumps(f))
    (wal.dir / "coldkeypub.txt").write_text(other.coldkey_public.hex() + "\n")
    with pytest.raises(w.WrongPassword):
        Wallet.open("carol", tmp_path).unlock_coldkey("right")
    f["salt"] = "zz"
    (wal.dir / "coldkey").write_text(json.dumps(f))
    with pytest.raises(w.Corrupt, match="salt"):
        Wallet.open("carol", tmp_path).unlock_coldkey("right")
    (wal.dir / "coldkey").write_text("not json")
    with pytest.raises(w.Corrupt, match="not a coldkey file"):
        Wallet.open("carol", tmp_path).unlock_coldkey("right")


def test_the_wallet_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_WALLET_DIR", str(tmp_path / "env-root"))
    Wallet.create("erin", "pw", kdf=INSECURE_FOR_TESTS)
    assert (tmp_path / "env-root" / "erin" / "coldkeypub.txt").is_file()
    assert w.list_wallets() == ["erin"]


def test_a_wallet_the_rust_cli_wrote_opens_here() -> None:
    wal = Wallet.open("rusty", RUST_WALLET)
    key = wal.unlock_coldkey("rust")
    assert key.public == w.key_from_mnemonic(MNEMONIC).public
    assert wal.hotkey("miner").public == w.key_from_mnemonic(MNEMONIC).public


@pytest.mark.node
def test_the_rust_cli_reads_a_wallet_written_here(tmp_path: Path) -> None:
    wal, _ = Wallet.create("py", "pw", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    hot = wal.create_hotkey("miner")
    out = run_agora("wallet", "show", "--name", "py", "--wallet-dir", str(tmp_path)).stdout
    assert wal.coldkey_public.hex() in out and w.key_from_mnemonic(hot).public.hex() in out, out


@pytest.mark.node
def test_a_wallet_the_cli_makes_now_opens_here(tmp_path: Path) -> None:
    env = {"AGORA_PASSWORD": "cli-pw"}
    run_agora("wallet", "regen", "--name", "cli", "--wallet-dir", str(tmp_path), "--mnemonic", MNEMONIC,
              "--kdf-memory-kib", "64", "--kdf-passes", "1", env=env)
    run_agora("wallet", "regen", "--name", "cli", "--hotkey", "h", "--wallet-dir", str(tmp_path), "--mnemonic", MNEMONIC,
              env=env)
    wal = Wallet.open("cli", tmp_path)
    assert wal.unlock_coldkey("cli-pw").public == w.key_from_mnemonic(MNEMONIC).public
    assert wal.hotkey("h").public == wal.coldkey_public
    with pytest.raises(w.WrongPassword):
        wal.unlock_coldkey("other")
    assert os.access(wal.dir / "coldkey", os.R_OK)
