//! Prints a signed `transfer` between two dev accounts as hex, ready for
//! `agora_submitTransaction`. Insecure on purpose: dev keys derive from their names
//! (`ledger::dev_key`), so this only makes sense on a `--dev` chain.
//!
//! `cargo run -p client --example dev_transfer -- alice bob 1000000 0` (from, to, amount in
//! base units, nonce; the chain id defaults to `agora-dev`, a fifth argument overrides it).

use ledger::{dev_key, public_key, Call, TxBody};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (from, to) = (arg(0, "alice"), arg(1, "bob"));
    let Ok(amount) = arg(2, "1000000").parse::<u64>() else {
        return eprintln!("amount: a whole number of base units");
    };
    let Ok(nonce) = arg(3, "0").parse::<u64>() else { return eprintln!("nonce: a whole number") };
    let chain = arg(4, "agora-dev");
    let key = dev_key(&from);
    let fee = ledger::FeeSchedule::default().transfer;
    let body = TxBody {
        sender: public_key(&key),
        nonce,
        fee,
        call: Call::Transfer { to: public_key(&dev_key(&to)), amount },
    };
    let tx = body.sign(&key, &chain);
    eprintln!("transaction id {}", tx.id());
    println!("{}", hex::encode(tx.encode()));
}
