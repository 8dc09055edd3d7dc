//! Loading a Hugging Face style model folder: config, weights, tokenizer, chat
//! template and generation defaults.

mod config;
mod input;
mod llama;
mod rope;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

pub use config::{ModelConfig, RopeParameters, TokenIds};
pub use input::{BatchInput, SeqChunk};
pub use llama::Llama;

use crate::chat_template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Everything loaded from a model folder.
#[derive(Debug)]
pub struct LoadedModel {
    /// The decoder.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template, when the folder has one.
    pub chat_template: Option<ChatTemplate>,
    /// Tokens that end generation (config, generation config and tokenizer config).
    pub eos_token_ids: Vec<u32>,
    /// The folder it came from.
    pub path: PathBuf,
}

/// `generation_config.json`: only what changes when generation stops.
#[derive(Debug, Default, Deserialize)]
struct GenerationConfig {
    eos_token_id: Option<TokenIds>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// The safetensors files of a folder: the shards named by
/// `model.safetensors.index.json` when present, else every `*.safetensors`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        #[derive(Deserialize)]
        struct Index {
            weight_map: std::collections::BTreeMap<String, String>,
        }
        let parsed: Index = serde_json::from_str(&read(&index)?)
            .map_err(|e| Error::files(&index, e.to_string()))?;
        let mut files: Vec<PathBuf> = parsed
            .weight_map
            .into_values()
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::files(dir, "no *.safetensors weights"));
    }
    Ok(files)
}

/// Loads only the decoder of the model folder `dir` (config and weights).
pub fn load_decoder(dir: &Path, dtype: DType, device: &Device) -> Result<Llama> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(Error::files(dir, "no config.json"));
    }
    let cfg = ModelConfig::from_json(&read(&config_path)?)?;
    let files = weight_files(dir)?;
    for file in &files {
        if !file.exists() {
            return Err(Error::files(
                file,
                "weight file listed in the index is missing",
            ));
        }
    }
    // SAFETY: the files are memory-mapped read-only; like every mmap-based loader,
    // this assumes nobody truncates them while the model is served.
    #[allow(unsafe_code)]
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
    Llama::load(vb, &cfg).map_err(|e| Error::files(dir, format!("weights: {e}")))
}

/// Loads the model folder `dir` with weights in `dtype` on `device`.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<LoadedModel> {
    let model = load_decoder(dir, dtype, device)?;
    let cfg = model.config().clone();
    let tokenizer = Tokenizer::from_folder(dir)?;
    let chat_template = ChatTemplate::from_folder(dir, &tokenizer)?;
    let generation: GenerationConfig =
        match std::fs::read_to_string(dir.join("generation_config.json")) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| Error::files(dir.join("generation_config.json"), e.to_string()))?,
            Err(_) => GenerationConfig::default(),
        };
    let mut eos_token_ids: Vec<u32> = [&generation.eos_token_id, &cfg.eos_token_id]
        .into_iter()
        .flatten()
        .flat_map(TokenIds::to_vec)
        .chain(tokenizer.eos_token_id())
        .collect();
    eos_token_ids.sort_unstable();
    eos_token_ids.dedup();
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        eos_token_ids,
        path: dir.to_path_buf(),
    })
}
