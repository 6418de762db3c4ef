//! Checkpoints resume exactly; the export runs offline and matches the live model.

use nucleus::{CheckpointError, Corpus, Inference, Nucleus, NucleusConfig, NucleusError, Split};

use crate::{respond, teacher};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nucleus-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn checkpoint_resumes_the_same_trajectory() {
    crate::setup();
    let food = Corpus::builtin("food").unwrap();
    let t = crate::food_teacher();
    let mut n = Nucleus::new(NucleusConfig::tiny(2)).unwrap();
    let c = n.config().clone();
    let batches = food.batches(Split::Train, c.batch, c.model.context, 10, 2).unwrap();
    for b in &batches[..5] {
        n.train_step(b, &[(1, Some(respond(t, b))), (3, None)]).unwrap();
    }
    let dir = tmp("ckpt");
    n.save_checkpoint(&dir).unwrap();
    let mut m = Nucleus::load_checkpoint(&dir).unwrap();
    assert_eq!(m.steps(), 5);
    assert_eq!(m.weights(), n.weights());
    for b in &batches[5..] {
        let resp = [(1, Some(respond(t, b))), (3, None)];
        let rn = n.train_step(b, &resp).unwrap();
        let rm = m.train_step(b, &resp).unwrap();
        // Same parameters, optimizer moments and gate-noise stream: the same step.
        assert_eq!(rn.loss, rm.loss);
        assert_eq!(rn.grads, rm.grads);
    }
    assert_eq!(
        n.serve_forward(&batches[0].tokens, c.batch, c.model.context).unwrap(),
        m.serve_forward(&batches[0].tokens, c.batch, c.model.context).unwrap()
    );
    // A state file of another format version, or with a vector of the wrong length, is refused
    // with the file and what was expected and found.
    let state_path = dir.join("state.json");
    let original = std::fs::read(&state_path).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&original).unwrap();
    for (field, value) in [("version", serde_json::json!(99)), ("seen", serde_json::json!([true]))] {
        let mut s = state.clone();
        s[field] = value;
        std::fs::write(&state_path, serde_json::to_vec(&s).unwrap()).unwrap();
        match Nucleus::load_checkpoint(&dir) {
            Err(NucleusError::Checkpoint { path, source }) => {
                assert_eq!(path, state_path);
                match source {
                    CheckpointError::Version { expected: 1, found: 99 } => assert_eq!(field, "version"),
                    CheckpointError::Slots { vector: "seen", expected, found: 1 } => {
                        assert_eq!((field, expected), ("seen", c.slots))
                    }
                    other => panic!("{field}: {other:?}"),
                }
            }
            other => panic!("{field}: {:?}", other.err()),
        }
    }
    std::fs::write(&state_path, original).unwrap();
    assert!(Nucleus::load_checkpoint(&dir).is_ok());
    // A truncated checkpoint is an error, not a silently fresh model.
    std::fs::write(dir.join("optimizer.safetensors"), b"garbage").unwrap();
    assert!(Nucleus::load_checkpoint(&dir).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_runs_offline_like_the_student_fed_model() {
    crate::setup();
    let food = Corpus::builtin("food").unwrap();
    let n = teacher("food", 60, 3);
    let dir = tmp("export");
    n.export(&dir).unwrap();
    let inf = Inference::load(&dir).unwrap();
    let c = n.config();
    let b = &food.batches(Split::HeldOut, 1, c.model.context, 1, 1).unwrap()[0];
    let mut text = b.tokens.clone();
    text.push(*b.targets.last().unwrap());
    let offline = inf.score(&text).unwrap();
    let live = n.student_loss(b).unwrap();
    assert!((offline - live).abs() < 1e-4, "{offline} vs {live}");
    let g1 = inf.generate(b"The ", 40, 0.8, 1).unwrap();
    let g2 = inf.generate(b"The ", 40, 0.8, 1).unwrap();
    assert_eq!(g1.len(), 40);
    assert_eq!(g1, g2);
    eprintln!("sample: {:?}", String::from_utf8_lossy(&g1));
    // Scoring longer than the context walks windows.
    let long = &food.held_out[..c.model.context * 3 + 5];
    assert!(inf.score(long).unwrap().is_finite());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16: the model version names the parameters. It is the same for the same parameters
/// (a resumed checkpoint, a call between changes), and changes with a training step and with an
/// applied remote gradient; two models of other seeds differ.
#[test]
fn the_model_version_follows_the_parameters() {
    crate::setup();
    let food = Corpus::builtin("food").unwrap();
    let mut n = Nucleus::new(NucleusConfig::tiny(2)).unwrap();
    let c = n.config().clone();
    let (v0, s0) = n.model_version().unwrap();
    assert_eq!(n.model_version().unwrap(), (v0, s0));
    assert_eq!(s0, 0);
    assert_ne!(Nucleus::new(NucleusConfig::tiny(3)).unwrap().model_version().unwrap().0, v0);
    let batches = food.batches(Split::Train, c.batch, c.model.context, 2, 2).unwrap();
    n.pretrain_step(&batches[0]).unwrap();
    let (v1, s1) = n.model_version().unwrap();
    assert_ne!(v1, v0);
    assert_eq!(s1, 1);
    let b = &batches[1];
    let grads = vec![0.5f32; c.batch * c.model.context * c.model.output_dim];
    n.apply_remote_gradient(&b.tokens, b.batch, b.seq, &grads, 1.0).unwrap();
    let (v2, s2) = n.model_version().unwrap();
    assert_ne!(v2, v1, "a remote gradient changes the model");
    assert_eq!(s2, 1, "but is not one of its own steps");
    let dir = tmp("version");
    n.save_checkpoint(&dir).unwrap();
    assert_eq!(Nucleus::load_checkpoint(&dir).unwrap().model_version().unwrap(), (v2, s2));
    let _ = std::fs::remove_dir_all(&dir);
}
