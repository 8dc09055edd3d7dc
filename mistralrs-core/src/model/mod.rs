//! Loading a model: a Hugging Face style folder (config, safetensors weights,
//! tokenizer, chat template, generation defaults) or a GGUF file (`gguf`).

mod config;
mod embedding;
mod float_type;
mod gguf;
pub(crate) use gguf::tokenizer_of as gguf_tokenizer;
mod gguf_tokenizer;
mod input;
mod int8_tiles;
mod llama;
mod q4_1;
#[cfg(target_arch = "x86_64")]
mod q8_0;
mod quantize;
mod rope;
mod safetensors_reader;
mod weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

pub use config::{ModelConfig, RopeParameters, TokenIds};
pub use float_type::FloatType;
pub use input::{BatchInput, SeqChunk};
pub use llama::Llama;
pub use quantize::{ProgressFn, Quantization};
pub use weights::supported_types as supported_gguf_types;

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

/// How a model's weights are loaded.
#[derive(Clone)]
pub struct LoadOptions {
    /// Dtype of the dense weights and of the activations. Safetensors: when
    /// `None`, f32 on the CPU and bf16 on a GPU. GGUF: `None` keeps
    /// projections quantized (the rest in f32); a dtype dequantizes every
    /// tensor to it, as transformers does with GGUF.
    pub dtype: Option<FloatType>,
    /// Quantize a safetensors checkpoint's projections while loading.
    pub quantize: Option<Quantization>,
    /// Where tensors live.
    pub device: Device,
    /// Told `(done, total)` as projections are quantized.
    pub progress: Option<ProgressFn>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: None,
            quantize: None,
            device: Device::Cpu,
            progress: None,
        }
    }
}

impl LoadOptions {
    /// Dense weights in `dtype`, nothing quantized, on the CPU.
    pub fn with_dtype(dtype: FloatType) -> Self {
        Self {
            dtype: Some(dtype),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("dtype", &self.dtype)
            .field("quantize", &self.quantize)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
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

/// Dense weights' dtype when none is asked for: f32 on the CPU (the reference
/// numerics), bf16 on a GPU (what checkpoints are trained in; tensor cores).
fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// On a GPU, refuses a model whose weights (`bytes`) exceed the free memory,
/// before any of them is allocated.
fn check_weights_fit(path: &Path, device: &Device, bytes: u64) -> Result<()> {
    match crate::DeviceMemory::of(device)? {
        Some(memory) => memory
            .check_weights_fit(bytes)
            .map_err(|e| Error::files(path, e.to_string())),
        None => Ok(()),
    }
}

/// Loads only the decoder of the model folder `dir` (config and weights).
pub fn load_decoder(dir: &Path, options: &LoadOptions) -> Result<Llama> {
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
    let dtype = options
        .dtype
        .map_or_else(|| default_dtype(&options.device), FloatType::dtype);
    let reader = safetensors_reader::SafetensorsReader::open(&files)?;
    if options.quantize.is_none() {
        check_weights_fit(dir, &options.device, reader.bytes_as(dtype))?;
    }
    let vb = VarBuilder::from_backend(Box::new(reader), dtype, options.device.clone());
    let source = weights::Safetensors {
        vb,
        tie_word_embeddings: cfg.tie_word_embeddings,
        quantizer: quantize::Quantizer::for_model(options, &cfg),
    };
    let model =
        Llama::load(&source, &cfg).map_err(|e| Error::files(dir, format!("weights: {e}")))?;
    quantize::Quantizer::log_summary(&source.quantizer);
    Ok(model)
}

/// What a model path holds.
enum ModelFiles {
    /// A Hugging Face folder.
    Folder(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

/// A `.gguf` file, a folder with `config.json`, or a folder with exactly one
/// `.gguf` file; anything else is an error that says what was found.
fn model_files(path: &Path) -> Result<ModelFiles> {
    let is_gguf = |p: &Path| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    };
    if path.is_file() {
        return if is_gguf(path) {
            Ok(ModelFiles::Gguf(path.to_path_buf()))
        } else {
            Err(Error::files(path, "not a model folder nor a .gguf file"))
        };
    }
    if path.join("config.json").exists() {
        return Ok(ModelFiles::Folder(path.to_path_buf()));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_gguf(p))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelFiles::Gguf(one.clone())),
        [] => Err(Error::files(
            path,
            "neither a Hugging Face model (config.json and *.safetensors) nor a .gguf file",
        )),
        _ => Err(Error::files(
            path,
            format!("{} .gguf files; name the one to serve", ggufs.len()),
        )),
    }
}

/// Loads the model at `path` (a folder or a GGUF file) as `options` say.
pub fn load(path: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    let dir = match model_files(path)? {
        ModelFiles::Gguf(file) => return gguf::load(&file, options),
        ModelFiles::Folder(dir) => dir,
    };
    let dir = dir.as_path();
    let model = load_decoder(dir, options)?;
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
