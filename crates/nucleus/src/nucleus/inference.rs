//! The exported offline model (market paper §8): f_i fed by its student, no network.

use super::checkpoint::{checkpoint_err, io_err, ExportMeta, EXPORT_CONFIG, EXPORT_WEIGHTS};
use super::*;
use crate::model::{Encoder, LocalModel, ModelConfig};

/// The exported offline model: f_i fed by its student, no network (market paper §8).
pub struct Inference {
    local: LocalModel,
    student: Encoder,
    device: Device,
    /// The shapes of the exported f_i (its context bounds what [`Inference::generate`] reads).
    pub model: ModelConfig,
}

impl Inference {
    /// Loads a directory written by [`Nucleus::export`].
    pub fn load(dir: &Path) -> Result<Self, NucleusError> {
        let path = dir.join(EXPORT_CONFIG);
        let json = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let meta: ExportMeta = serde_json::from_slice(&json).map_err(|e| checkpoint_err(&path, e))?;
        meta.model.validate("model")?;
        meta.student.validate("student")?;
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let local = LocalModel::new(&meta.model, vb.pp("local"))?;
        let student = Encoder::new(&meta.student, vb.pp("student"))?;
        let mut varmap = varmap;
        varmap.load(dir.join(EXPORT_WEIGHTS))?;
        Ok(Inference { local, student, device, model: meta.model })
    }

    fn logits(&self, tokens: &[u8]) -> Result<Tensor, NucleusError> {
        let x = token_tensor(tokens, 1, tokens.len(), &self.device)?;
        let dist = self.student.forward(&x)?;
        Ok(self.local.forward(&x, &dist)?.1)
    }

    /// Mean next-byte loss (nats) of `text`, over consecutive windows of the context length.
    pub fn score(&self, text: &[u8]) -> Result<f32, NucleusError> {
        if text.len() < 2 {
            return Err(
                DataError::TooShort { what: "text to score".into(), found: text.len(), needed: 2 }.into()
            );
        }
        let ctx = self.model.context;
        let (mut total, mut count) = (0f64, 0usize);
        let mut start = 0;
        while start + 1 < text.len() {
            let end = (start + ctx).min(text.len() - 1);
            let x = &text[start..end];
            let y = token_tensor(&text[start + 1..end + 1], 1, end - start, &self.device)?;
            let loss = next_token_loss(&self.logits(x)?, &y)?.to_scalar::<f32>()?;
            total += f64::from(loss) * (end - start) as f64;
            count += end - start;
            start = end;
        }
        Ok((total / count as f64) as f32)
    }

    /// Samples `n` bytes after `prompt` at `temperature` (0 = greedy), seeded.
    pub fn generate(
        &self,
        prompt: &[u8],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<u8>, NucleusError> {
        use rand::Rng;
        if prompt.is_empty() {
            return Err(DataError::TooShort { what: "prompt".into(), found: 0, needed: 1 }.into());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut text = prompt.to_vec();
        for _ in 0..n {
            let window = &text[text.len().saturating_sub(self.model.context)..];
            let logits = self.logits(window)?;
            let last = logits.get(0)?.get(window.len() - 1)?.to_vec1::<f32>()?;
            let next = if temperature <= 0.0 {
                argmax(&last)
            } else {
                let m = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let p: Vec<f32> = last.iter().map(|l| ((l - m) / temperature).exp()).collect();
                let total: f32 = p.iter().sum();
                let mut r = rng.gen::<f32>() * total;
                let mut pick = p.len() - 1;
                for (i, w) in p.iter().enumerate() {
                    if r < *w {
                        pick = i;
                        break;
                    }
                    r -= w;
                }
                pick
            };
            text.push(next as u8);
        }
        Ok(text.split_off(prompt.len()))
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}
