//! `agora sim ...`: printed lines, files written, and errors on bad input.

use crate::{agora, stderr, stdout, TempDir};

/// The lines the market paper prints for `cabal_decay(0.49, 0.1, 100, 50)` (000 §10), as
/// Python's `%.15g` shows them.
const PAPER_000: [&str; 4] =
    ["0 0.489109440148248", "1 0.48813971353697", "10 0.474471440084348", "49 0.135168406967781"];

/// The lines 002 "Collusion" prints for tau 0.1, temp 10, stake_A 0.51, 100 blocks, at 15
/// significant digits.
const PAPER_002: [&str; 6] = [
    "0 0.48773233888202",
    "1 0.484953578432125",
    "10 0.410905489354598",
    "90 0.00028272510106181",
    "98 0.000132607611272809",
    "99 0.000120633719934647",
];

#[test]
fn sim_help_lists_every_experiment_and_every_flag_has_a_default() {
    let help = stdout(&agora(&["sim", "--help"]));
    for exp in ["cabal-000", "cabal-002", "trust-descent", "compare", "empirical", "all"] {
        assert!(help.contains(exp), "sim --help lacks {exp}:\n{help}");
    }
    for exp in ["cabal-000", "cabal-002", "trust-descent", "compare", "empirical"] {
        let help = stdout(&agora(&["sim", exp, "--help"]));
        // A flag's entry is its line plus, when clap wraps long help onto the next lines, the
        // more-indented lines below it.
        let lines: Vec<&str> = help.lines().collect();
        for (k, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if !trimmed.starts_with("--") && !trimmed.starts_with("-h,") {
                continue;
            }
            let entry: Vec<&str> = std::iter::once(*line)
                .chain(lines[k + 1..].iter().copied().take_while(|l| {
                    let t = l.trim_start();
                    !t.is_empty() && !t.starts_with('-')
                }))
                .collect();
            let flag = trimmed.split_whitespace().next().unwrap_or_default();
            if ["--help", "-h,", "--no-split", "--no-adaptive"].contains(&flag) {
                continue;
            }
            let entry = entry.join(" ");
            assert!(entry.contains("[default: "), "{exp}: {flag} has no default in its help: {entry}");
        }
    }
}

#[test]
fn cabal_000_prints_the_papers_table_and_writes_its_files() {
    let dir = TempDir::new("c000");
    let o = agora(&[
        "sim",
        "cabal-000",
        "--prcnt-c",
        "0.49",
        "--inf-rate",
        "0.1",
        "--rho",
        "100",
        "--steps",
        "50",
        "--out",
        dir.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // By default the printed lines are the paper's own code: its table, digit for digit.
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 50);
    for paper in PAPER_000 {
        assert!(out.lines().any(|l| l == paper), "printed table lacks {paper}");
    }
    for f in ["cabal_000.csv", "cabal_000.png", "cabal_000.md"] {
        dir.has(f);
    }
    let csv = std::fs::read_to_string(dir.0.join("cabal_000.csv")).unwrap();
    assert!(
        csv.starts_with("step,connectivity_mechanism,closed_form,abs_diff,paper,connectivity_with_clipping")
    );
    assert!(stderr(&o).contains("with stake clipping"));

    // The real connectivity mechanism: "step share" lines with 15 significant digits, equal to
    // the paper's values to the 14th digit.
    let o = agora(&["sim", "cabal-000", "--print", "mechanism", "--out", dir.path()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 50);
    for (k, line) in lines.iter().enumerate() {
        let (step, share) = line.split_once(' ').expect("two fields");
        assert_eq!(step, k.to_string());
        let digits = share.trim_start_matches("0.").trim_start_matches('0');
        assert!(digits.len() <= 15 && share.parse::<f64>().is_ok(), "{line}");
    }
    for paper in PAPER_000 {
        let (step, value) = paper.split_once(' ').unwrap();
        let ours: f64 = lines[step.parse::<usize>().unwrap()].split_once(' ').unwrap().1.parse().unwrap();
        let theirs: f64 = value.parse().unwrap();
        assert!((ours - theirs).abs() < 1e-14 * theirs, "{paper} vs {ours}");
    }
}

#[test]
fn cabal_002_prints_the_papers_table() {
    let dir = TempDir::new("c002");
    let o = agora(&[
        "sim",
        "cabal-002",
        "--tau",
        "0.1",
        "--temp",
        "10",
        "--stake-a",
        "0.51",
        "--blocks",
        "100",
        "--out",
        dir.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 100);
    for paper in PAPER_002 {
        assert!(out.lines().any(|l| l == paper), "mechanism output lacks {paper}");
    }
    assert!(stderr(&o).contains("printed lines: all 21 reproduced"), "{}", stderr(&o));
    for f in ["cabal_002.csv", "cabal_002.png", "cabal_002.md"] {
        dir.has(f);
    }
}

#[test]
fn trust_descent_small_run_writes_table_and_charts() {
    let dir = TempDir::new("descent");
    let o = agora(&[
        "sim",
        "trust-descent",
        "--n-honest",
        "3",
        "--n-cabal",
        "10",
        "--blocks",
        "40",
        "--honest-shares",
        "0.51,0.7",
        "--out",
        dir.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("honest 0.51 vs cabal 0.49") && out.contains("split honest 0.255 + 0.255"), "{out}");
    for f in [
        "trust_descent.csv",
        "trust_descent_share.png",
        "trust_descent_loss.png",
        "trust_descent_scaling.png",
        "trust_descent.md",
    ] {
        dir.has(f);
    }
    let csv = std::fs::read_to_string(dir.0.join("trust_descent.csv")).unwrap();
    // Header plus 3 runs x 40 blocks.
    assert_eq!(csv.lines().count(), 1 + 3 * 40);
}

#[test]
fn compare_runs_every_mechanism() {
    let dir = TempDir::new("compare");
    let o = agora(&[
        "sim",
        "compare",
        "--n-honest",
        "6",
        "--n-cabal",
        "3",
        "--epochs",
        "12",
        "--out",
        dir.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.0.join("compare.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "epoch,basic,connectivity,trust,nakamoto,yuma");
    assert_eq!(csv.lines().count(), 1 + 13);
    let out = stdout(&o);
    for m in ["`basic`", "`connectivity`", "`trust`", "`nakamoto`", "`yuma`"] {
        assert!(out.contains(m), "{out}");
    }
    dir.has("compare.png");
    dir.has("compare.md");
}

#[test]
fn all_quick_writes_a_joined_summary() {
    let dir = TempDir::new("all");
    let o = agora(&["sim", "all", "--quick", "--out", dir.path()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(dir.0.join("summary.md")).unwrap();
    for heading in
        ["connectivity mechanism", "trust mechanism", "Trust descent", "every mechanism", "Experiment 4"]
    {
        assert!(summary.contains(heading), "summary lacks {heading}");
    }
    // One title; every experiment's own title nested under it.
    assert_eq!(summary.lines().filter(|l| l.starts_with("# ")).count(), 1, "{summary}");
    for f in ["cabal_000.csv", "cabal_002.png", "trust_descent.csv", "compare.png", "empirical.csv"] {
        dir.has(f);
    }
}

#[test]
fn empirical_small_grid_writes_its_files() {
    let dir = TempDir::new("empirical");
    let o = agora(&[
        "sim",
        "empirical",
        "--ratios",
        "1,10",
        "--sizes",
        "6",
        "--seeds",
        "2",
        "--max-steps",
        "500",
        "--compare-seeds",
        "0",
        "--no-adaptive",
        "--out",
        dir.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Experiment 4"), "{}", stdout(&o));
    dir.has("empirical.csv");
    dir.has("empirical_spearman.png");
    let o = agora(&["sim", "empirical", "--sizes", "1", "--out", dir.path()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at least 2 peers"), "{}", stderr(&o));
}

/// Bad input: a clear one-line message naming the flag, and a non-zero exit.
#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = TempDir::new("bad");
    let cases: [(&[&str], &str); 8] = [
        (&["sim", "cabal-000", "--inf-rate", "-0.1"], "--inf-rate is -0.1"),
        (
            &["sim", "cabal-000", "--prcnt-c", "1.2"],
            "--prcnt-c is 1.2, expected a share strictly between 0 and 1",
        ),
        (&["sim", "cabal-000", "--prcnt-c", "0"], "--prcnt-c is 0"),
        (&["sim", "cabal-000", "--steps", "0"], "--steps is 0, expected at least 1"),
        (&["sim", "cabal-002", "--tau", "-1"], "--tau is -1"),
        (&["sim", "cabal-002", "--blocks", "0"], "--blocks is 0"),
        (&["sim", "trust-descent", "--honest-shares", "0.5,1.5"], "--honest-shares is 1.5"),
        (&["sim", "compare", "--epochs", "0"], "--epochs is 0"),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(["--out", dir.path()]);
        let o = agora(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err:?}");
        assert!(!err.contains("backtrace"), "a user error prints no backtrace: {err}");
    }
    // --out under a regular file cannot be created.
    let file = dir.0.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let bad_out = file.join("results");
    let o = agora(&["sim", "cabal-000", "--steps", "2", "--out", bad_out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot use output directory") && err.contains("plain-file"), "{err}");
    // A typo'd flag is clap's error, exit code 2.
    let o = agora(&["sim", "cabal-000", "--stepz", "3"]);
    assert_eq!(o.status.code(), Some(2));
}
