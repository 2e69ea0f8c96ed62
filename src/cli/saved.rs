//! Loading a saved run (a run directory or a checkpoint file) back into a model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec::RunSpec;
use super::text_data::{TOKENIZER_META, tokenizer_from_metadata};
use super::{Error, Result};
use crate::Gpu;
use crate::data::Preprocessor;
use crate::data::tokenizer::Tokenizer;
use crate::models::ModelSpec;
use crate::nn::Module;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::{Task, trainer};

/// A model restored from a checkpoint, with what defined it.
pub struct SavedRun {
    /// The checkpoint file used.
    pub path: PathBuf,
    /// Its contents.
    pub checkpoint: Checkpoint,
    /// The run settings.
    pub spec: RunSpec,
    /// The network description.
    pub model_spec: ModelSpec,
    /// The task.
    pub task: Task,
    /// CSV preprocessing, if the run trained on a CSV file.
    pub preprocessor: Option<Preprocessor>,
}

/// The checkpoint a path names: a `.safetensors` file, or a run directory (its best checkpoint,
/// else its last).
pub fn checkpoint_path(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        for name in [trainer::BEST, trainer::LAST] {
            let p = path.join(name);
            if p.exists() {
                return Ok(p);
            }
        }
        return Err(Error(format!(
            "{}: no {} or {} in this directory; is it a kiln run directory?",
            path.display(),
            trainer::BEST,
            trainer::LAST
        )));
    }
    if !path.exists() {
        return Err(Error(format!(
            "{}: no such file or directory",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}

fn meta_json<T: serde::de::DeserializeOwned>(ck: &Checkpoint, key: &str) -> Result<T> {
    serde_json::from_str(ck.meta(key)?).map_err(|e| {
        Error(format!("checkpoint {}: metadata {key:?} is unreadable ({e}); was it written by another kiln version?", ck.path))
    })
}

impl SavedRun {
    /// Read a saved run.
    pub fn open(path: &Path) -> Result<SavedRun> {
        let path = checkpoint_path(path)?;
        let checkpoint = checkpoint::load(&path)?;
        let spec = meta_json(&checkpoint, "run_spec")?;
        let model_spec: ModelSpec = meta_json(&checkpoint, "model_spec")?;
        let task: Task = meta_json(&checkpoint, "task")?;
        let preprocessor = match checkpoint.metadata.get("preprocessor") {
            Some(_) => Some(meta_json(&checkpoint, "preprocessor")?),
            None => None,
        };
        if let Task::Classification { class_names } = &task {
            let outputs = model_spec.outputs();
            if class_names.len() != outputs && !model_spec.is_sequence() {
                return Err(Error(format!(
                    "checkpoint {}: its metadata names {} class(es) but the model has {outputs} \
                     outputs; the file was edited or mixed from two runs",
                    path.display(),
                    class_names.len()
                )));
            }
        }
        Ok(SavedRun {
            path,
            checkpoint,
            spec,
            model_spec,
            task,
            preprocessor,
        })
    }

    /// Build the network and load its weights (eval mode).
    pub fn model(&self, gpu: &Arc<Gpu>) -> Result<Box<dyn Module>> {
        let mut m = self.model_spec.build(gpu).map_err(|e| {
            Error(format!(
                "checkpoint {}: the model its metadata describes cannot be built: {e}",
                self.path.display()
            ))
        })?;
        self.checkpoint
            .restore_into("model", &m.named_parameters())?;
        self.checkpoint.restore_into("buffer", &m.named_buffers())?;
        m.set_training(false);
        Ok(m)
    }

    /// The tokenizer a language model's checkpoint carries; `what` opens the error when there is
    /// none (the checkpoint's name, or a flag and the name).
    pub fn tokenizer(&self, what: &str) -> Result<Arc<dyn Tokenizer>> {
        let meta = self
            .checkpoint
            .metadata
            .get(TOKENIZER_META)
            .ok_or_else(|| Error(format!("{what}: the checkpoint carries no tokenizer")))?;
        Ok(tokenizer_from_metadata(
            meta,
            &self.path.display().to_string(),
        )?)
    }

    /// Class names, for classification runs.
    pub fn class_names(&self) -> Option<&[String]> {
        match &self.task {
            Task::Classification { class_names } => Some(class_names),
            Task::Regression { .. } => None,
        }
    }
}
