//! A nucleus on disk: checkpoints (model, optimizer moments, scores, RNG position), written
//! file by file with renames so a reader never sees half a file, and the offline export.

use super::*;

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    version: u32,
    config: NucleusConfig,
    steps: u64,
    opt_step: u64,
    scores: Vec<f32>,
    seen: Vec<bool>,
    fail_rate: Vec<f32>,
    rng_seed: [u8; 32],
    rng_word_pos: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ExportMeta {
    pub(super) version: u32,
    pub(super) model: ModelConfig,
    pub(super) student: ModelConfig,
}

const CHECKPOINT_VERSION: u32 = 1;
const MODEL_FILE: &str = "model.safetensors";
const OPT_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";
pub(super) const EXPORT_WEIGHTS: &str = "offline.safetensors";
pub(super) const EXPORT_CONFIG: &str = "config.json";

pub(super) fn io_err(path: &Path, source: std::io::Error) -> NucleusError {
    NucleusError::Io { path: path.to_path_buf(), source }
}

pub(super) fn checkpoint_err(path: &Path, source: impl Into<CheckpointError>) -> NucleusError {
    NucleusError::Checkpoint { path: path.to_path_buf(), source: source.into() }
}

impl Nucleus {
    /// Writes `dir/model.safetensors` (all variables), `dir/optimizer.safetensors` (AdamW
    /// moments) and `dir/state.json` (config, step counts, scores, RNG position).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), NucleusError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        // Each file is written beside its final name and renamed into place, so a reader (the
        // localnet's judge loads checkpoints while peers run) never sees half a file.
        let model_tmp = dir.join(format!("{MODEL_FILE}.tmp"));
        self.varmap.save(&model_tmp)?;
        std::fs::rename(&model_tmp, dir.join(MODEL_FILE)).map_err(|e| io_err(dir, e))?;
        let opt_tmp = dir.join(format!("{OPT_FILE}.tmp"));
        candle_core::safetensors::save(&self.opt.state(), &opt_tmp)?;
        std::fs::rename(&opt_tmp, dir.join(OPT_FILE)).map_err(|e| io_err(dir, e))?;
        let state = CheckpointState {
            version: CHECKPOINT_VERSION,
            config: self.cfg.clone(),
            steps: self.steps,
            opt_step: self.opt.step,
            scores: self.scores.clone(),
            seen: self.seen.clone(),
            fail_rate: self.fail_rate.clone(),
            rng_seed: self.rng.get_seed(),
            rng_word_pos: self.rng.get_word_pos().to_string(),
        };
        let path = dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(&state).map_err(|e| checkpoint_err(&path, e))?;
        // Written last and renamed into place: a crash mid-save leaves no state.json that
        // points at half-written tensors of a newer step.
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, json).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        Ok(())
    }

    /// Resumes from a directory written by [`Nucleus::save_checkpoint`].
    pub fn load_checkpoint(dir: &Path) -> Result<Self, NucleusError> {
        let path = dir.join(STATE_FILE);
        let json = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let state: CheckpointState = serde_json::from_slice(&json).map_err(|e| checkpoint_err(&path, e))?;
        if state.version != CHECKPOINT_VERSION {
            let found = state.version;
            return Err(checkpoint_err(
                &path,
                CheckpointError::Version { expected: CHECKPOINT_VERSION, found },
            ));
        }
        let slots = state.config.slots;
        for (vector, found) in
            [("scores", state.scores.len()), ("seen", state.seen.len()), ("fail_rate", state.fail_rate.len())]
        {
            if found != slots {
                return Err(checkpoint_err(&path, CheckpointError::Slots { vector, expected: slots, found }));
            }
        }
        let mut n = Nucleus::new(state.config)?;
        n.varmap.load(dir.join(MODEL_FILE))?;
        let opt_path = dir.join(OPT_FILE);
        let opt_state = candle_core::safetensors::load(&opt_path, &n.device)?;
        n.opt.load_state(&opt_state, state.opt_step).map_err(|e| checkpoint_err(&opt_path, e))?;
        n.steps = state.steps;
        n.scores = state.scores;
        n.seen = state.seen;
        n.fail_rate = state.fail_rate;
        n.rng = ChaCha8Rng::from_seed(state.rng_seed);
        let pos: u128 = state.rng_word_pos.parse().map_err(|_| {
            checkpoint_err(&path, CheckpointError::RngPosition { found: state.rng_word_pos.clone() })
        })?;
        n.rng.set_word_pos(pos);
        Ok(n)
    }

    /// Writes the offline model to directory `dir`: `offline.safetensors` (f_i's and the
    /// student's variables, `local.*` and `student.*`) and `config.json` (both shapes).
    /// [`Inference::load`] runs it with no network.
    pub fn export(&self, dir: &Path) -> Result<(), NucleusError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for prefix in ["local.", "student."] {
            for (name, var) in named_vars(&self.varmap, prefix)? {
                tensors.insert(name, var.as_tensor().clone());
            }
        }
        candle_core::safetensors::save(&tensors, dir.join(EXPORT_WEIGHTS))?;
        let meta = ExportMeta {
            version: CHECKPOINT_VERSION,
            model: self.cfg.model.clone(),
            student: self.cfg.student.clone(),
        };
        let path = dir.join(EXPORT_CONFIG);
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| checkpoint_err(&path, e))?;
        std::fs::write(&path, json).map_err(|e| io_err(&path, e))?;
        Ok(())
    }
}
