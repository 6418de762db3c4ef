//! Every kept crash and every seed of every target passes, and a short blind campaign finds
//! nothing (the coverage-guided one is `scripts/fuzz.sh`, in CI).

use std::time::Duration;

#[test]
fn kept_crashes_and_seeds_pass() {
    for t in fuzz::targets::all() {
        for seed in (t.seeds)() {
            fuzz::replay(&t, &seed).unwrap_or_else(|m| panic!("{}: a seed fails: {m}", t.name));
        }
        for (path, input) in fuzz::regressions(&t) {
            fuzz::replay(&t, &input)
                .unwrap_or_else(|m| panic!("{}: {} fails again: {m}", t.name, path.display()));
        }
    }
}

#[test]
fn a_short_blind_campaign_finds_nothing() {
    for t in fuzz::targets::all() {
        match fuzz::fuzz(&t, Duration::from_secs(1), 7, None) {
            Ok(c) => assert!(c.execs > 10, "{}: {} execs", t.name, c.execs),
            Err(crash) => panic!(
                "{}: {}\ninput (hex): {}\nkeep it: cargo run -p fuzz -- {} --seed 7",
                crash.target,
                crash.message,
                hex::encode(&crash.input),
                crash.target
            ),
        }
    }
}

/// The harness can fail: a target whose property breaks on some input is caught, with the
/// panic's message, and the input is written where asked.
#[test]
fn a_broken_property_is_reported_and_kept() {
    let t = fuzz::Target {
        name: "negative-control",
        about: "panics on any input holding the byte 0x2a",
        dict: &[b"*"],
        seeds: || vec![b"abc".to_vec()],
        run: |b| assert!(!b.contains(&b'*'), "found the byte"),
    };
    let dir = std::env::temp_dir().join(format!("agora-fuzz-control-{}", std::process::id()));
    let crash =
        fuzz::fuzz(&t, Duration::from_secs(20), 1, Some(&dir)).expect_err("the fuzzer finds the byte");
    assert!(crash.message.contains("found the byte"), "{}", crash.message);
    assert!(crash.input.contains(&b'*'));
    let saved = crash.saved.expect("written");
    assert_eq!(std::fs::read(&saved).unwrap(), crash.input);
    let _ = std::fs::remove_dir_all(dir);
}
