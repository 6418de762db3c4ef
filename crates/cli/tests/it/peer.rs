//! `agora peer run`, `agora peer pretrain`, `agora peer export` and `agora infer` refusing bad
//! input clearly, before anything is touched. (The peer running for real is the tiny localnet in `localnet.rs`.)

use crate::wallet::{wallet, CHEAP_KDF};
use crate::{agora, stderr, TempDir};

fn refused(args: &[&str], needle: &str) {
    let o = agora(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = stderr(&o);
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in\n{err}");
}

#[test]
fn peer_run_refuses_bad_input_before_joining() {
    let dir = TempDir::new("peer-bad");
    let mut args = vec!["new", "--name", "w", "--hotkey", "default"];
    args.extend(CHEAP_KDF);
    assert!(wallet(&dir, Some("pw"), &args).status.success());
    let run = |extra: &[&str]| {
        let mut a = vec!["peer", "run", "--wallet-dir", dir.path(), "--chain", "ws://127.0.0.1:9"];
        a.extend(extra);
        a.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let check = |extra: &[&str], needle: &str| {
        let a = run(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        refused(&a, needle);
    };
    check(&["--wallet", "nobody", "--dataset", "computers"], "nobody");
    check(&["--wallet", "w", "--hotkey", "nope", "--dataset", "computers"], "nope");
    check(&["--wallet", "w", "--dataset", "no-such-topic"], "no-such-topic");
    check(&["--wallet", "w", "--dataset", "computers", "--role", "cabal"], "--cabal-uids");
    check(&["--wallet", "w", "--dataset", "computers", "--role", "offline"], "--offline-at-block");
    check(&["--wallet", "w", "--dataset", "computers", "--timeout=0"], "--timeout");
    // Everything valid but the chain: a clear connection error, not a hang.
    check(&["--wallet", "w", "--dataset", "computers"], "127.0.0.1:9");
}

#[test]
fn export_and_infer_refuse_missing_or_damaged_models() {
    let dir = TempDir::new("infer-bad");
    let missing = dir.0.join("missing");
    let missing = missing.to_str().expect("utf-8");
    refused(&["peer", "export", "--checkpoint", missing, "--out", dir.path()], "checkpoint");
    refused(&["infer", "--model", missing, "--prompt", "hi"], "model");
    std::fs::write(dir.0.join("config.json"), b"{ not json").expect("write");
    refused(&["infer", "--model", dir.path(), "--prompt", "hi"], "model");
}

/// `agora peer pretrain` trains into OUT/checkpoint without a chain, counts a checkpoint already
/// there (a second call with more steps only adds the difference), and refuses bad input.
#[test]
fn pretrain_writes_a_checkpoint_that_counts_on_a_second_call() {
    let dir = TempDir::new("pretrain");
    let out = dir.0.join("p");
    let out = out.to_str().expect("utf-8");
    let pretrain = |steps: &str| {
        agora(&[
            "peer",
            "pretrain",
            "--dataset",
            "food",
            "--model-size",
            "tiny",
            "--steps",
            steps,
            "--out",
            out,
        ])
    };
    let o = pretrain("3");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("model at step 3"));
    let o = pretrain("5");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    // The progress lines are logs (stderr, through tracing); the result is stdout.
    let log = stderr(&o);
    assert!(log.contains("resuming") && log.contains("for 2 steps"), "{log}");
    assert!(stdout.contains("model at step 5"), "{stdout}");
    // The result is a model `agora peer export` takes.
    let exported = dir.0.join("exported");
    let checkpoint = format!("{out}/checkpoint");
    let o =
        agora(&["peer", "export", "--checkpoint", &checkpoint, "--out", exported.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));

    refused(
        &["peer", "pretrain", "--dataset", "no-such-topic", "--steps", "3", "--out", out],
        "no-such-topic",
    );
    refused(&["peer", "pretrain", "--dataset", "food", "--out", out], "--steps");
    refused(
        &["peer", "pretrain", "--dataset", "food", "--steps", "3", "--status-every", "0", "--out", out],
        "--status-every",
    );
    std::fs::write(format!("{out}/checkpoint/state.json"), b"{ damaged").expect("write");
    refused(&["peer", "pretrain", "--dataset", "food", "--steps", "9", "--out", out], "checkpoint");
}
