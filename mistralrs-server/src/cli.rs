//! The command line, mirroring mistralrs-server: global flags, then `run -m <model>`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use mistralrs_core::KvDtype;
use mistralrs_core::model::{FloatType, Quantization};

use crate::config::{Config, ModelEntry};
use crate::device::DeviceSpec;
use crate::openai::tools::ToolParser;

/// An OpenAI-compatible LLM inference server with Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "mistralrs-server", version, about)]
pub struct Cli {
    /// Address to bind [default: 127.0.0.1; use 0.0.0.0 to serve other machines].
    #[arg(long, global = true)]
    pub serve_ip: Option<IpAddr>,
    /// Port of the OpenAI API, /health and /metrics [default: 1234; 0 picks a free
    /// port and prints it].
    #[arg(long, short = 'p', global = true)]
    pub port: Option<u16>,
    /// Config file (TOML); its settings are overridden by these flags.
    #[arg(long, short = 'c', global = true, env = "MISTRALRS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Port of the MCP endpoint /mcp/stream (Streamable HTTP); off when not given.
    #[arg(long, global = true)]
    pub http_mcp_port: Option<u16>,
    /// An API key MCP clients must send as `Authorization: Bearer <key>`;
    /// repeatable; like any configured key, turns on `api_key` auth. Keys on the command line show in
    /// `ps`: prefer MISTRALRS_MCP_API_KEYS or `[http_mcp] api_keys_file`.
    #[arg(long = "http-mcp-auth-key", global = true, value_name = "KEY")]
    pub http_mcp_auth_keys: Vec<String>,
    /// This replica's name among several behind a load balancer: MCP session ids
    /// start with `<id>.`, so the balancer can send a session's requests to the
    /// replica that holds it (deploy/nginx).
    #[arg(long, global = true, env = "MISTRALRS_REPLICA_ID", value_name = "ID")]
    pub replica_id: Option<String>,
    /// Sequences running at once per model [default: 32].
    #[arg(long, global = true)]
    pub max_seqs: Option<usize>,
    /// KV cache blocks (16 tokens each) per model [default: 512].
    #[arg(long, global = true, conflicts_with = "kv_cache_mem")]
    pub kv_cache_blocks: Option<usize>,
    /// KV cache size per model as memory, e.g. 512MiB or 2GiB (instead of
    /// --kv-cache-blocks).
    #[arg(long, global = true, value_name = "SIZE")]
    pub kv_cache_mem: Option<bytesize::ByteSize>,
    /// Type of cached keys and values: f32, f16, bf16 or q8_0 [default: f16 on
    /// the CPU, bf16 on a GPU].
    #[arg(long, global = true, value_name = "TYPE")]
    pub kv_cache_dtype: Option<KvDtype>,
    /// Tool-call format of the served models: hermes, llama3_json or mistral
    /// [default: the one each chat template shows, else hermes].
    #[arg(long, global = true, value_name = "FORMAT")]
    pub tool_parser: Option<ToolParser>,
    /// Where the models run: cpu, cuda or cuda:N [default: cpu].
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<DeviceSpec>,
    /// On a GPU, the share of its memory to fill: the KV cache gets what it
    /// leaves after the weights, unless --kv-cache-blocks or --kv-cache-mem
    /// size it [default: 0.9].
    #[arg(long, global = true, value_name = "SHARE")]
    pub gpu_memory_utilization: Option<f64>,
    /// Threads for the model's matrix work [default: the machine's physical
    /// cores, or RAYON_NUM_THREADS].
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// error, warn, info, debug or trace [default: info]; RUST_LOG overrides it.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a model.
    Run {
        /// A GGUF file (or a folder with one), a local Hugging Face style folder, a
        /// Hugging Face Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct: from the local cache,
        /// else downloaded; HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE apply), `smollm2`
        /// (after `scripts/get-model smollm2`), or `demo` (a small built-in model).
        #[arg(long, short = 'm')]
        model: String,
        /// Name clients use in `model` [default: the model's last path part].
        #[arg(long)]
        name: Option<String>,
        /// Dtype of dense weights and activations: f32, f16 or bf16 [default:
        /// f32]; for a GGUF file, dequantizes every tensor to it.
        #[arg(long, value_name = "TYPE")]
        dtype: Option<FloatType>,
        /// Quantize a safetensors checkpoint's projections while loading:
        /// q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k or q6_k.
        #[arg(long, value_name = "TYPE")]
        quantize: Option<Quantization>,
        /// For a Hub repo holding several GGUF files: the one to serve.
        #[arg(long, value_name = "FILE")]
        gguf_file: Option<String>,
    },
}

impl Cli {
    /// The config file's settings with these flags on top, and the `run` model
    /// added to the file's models.
    pub fn merge_into(&self, mut config: Config) -> Config {
        config.serve_ip = self.serve_ip.or(config.serve_ip);
        config.port = self.port.or(config.port);
        config.http_mcp.port = self.http_mcp_port.or(config.http_mcp.port);
        config.http_mcp.replica_id = self.replica_id.clone().or(config.http_mcp.replica_id);
        config
            .http_mcp
            .api_keys
            .extend(self.http_mcp_auth_keys.iter().cloned());
        config.max_seqs = self.max_seqs.or(config.max_seqs);
        if self.kv_cache_blocks.is_some() || self.kv_cache_mem.is_some() {
            config.kv_cache_blocks = self.kv_cache_blocks;
            config.kv_cache_mem = self.kv_cache_mem;
        }
        config.kv_cache_dtype = self.kv_cache_dtype.or(config.kv_cache_dtype);
        config.threads = self.threads.or(config.threads);
        config.device = self.device.or(config.device);
        config.gpu_memory_utilization = self
            .gpu_memory_utilization
            .or(config.gpu_memory_utilization);
        config.tool_parser = self.tool_parser.or(config.tool_parser);
        config.log_level = self.log_level.clone().or(config.log_level);
        let Command::Run {
            model,
            name,
            dtype,
            quantize,
            gguf_file,
        } = &self.command;
        let mut entry = ModelEntry {
            name: name.clone(),
            model: model.clone(),
            dtype: *dtype,
            quantize: *quantize,
            gguf_file: gguf_file.clone(),
            mcp_tools: Vec::new(),
        };
        // The same model in the file: its settings stay unless a flag says otherwise.
        if let Some(at) = config
            .models
            .iter()
            .position(|m| m.model == entry.model && m.name == entry.name)
        {
            let file_entry = config.models.remove(at);
            entry.dtype = entry.dtype.or(file_entry.dtype);
            entry.quantize = entry.quantize.or(file_entry.quantize);
            entry.gguf_file = entry.gguf_file.or(file_entry.gguf_file);
            entry.mcp_tools = file_entry.mcp_tools;
        }
        config.models.insert(0, entry);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_run_adds_the_first_model() {
        let cli = Cli::parse_from(["mistralrs-server", "--port", "9", "run", "-m", "demo"]);
        let file =
            Config::from_toml("port = 1\nmax_seqs = 3\n[[models]]\nmodel = \"other\"").unwrap();
        let merged = cli.merge_into(file);
        assert_eq!((merged.port, merged.max_seqs), (Some(9), Some(3)));
        assert_eq!(
            merged
                .models
                .iter()
                .map(|m| m.model.as_str())
                .collect::<Vec<_>>(),
            ["demo", "other"]
        );
    }

    #[test]
    fn run_flags_override_the_same_model_in_the_file_and_keep_the_rest() {
        let file =
            Config::from_toml("[[models]]\nmodel = \"m\"\nquantize = \"q4_k\"\ndtype = \"bf16\"")
                .unwrap();
        let cli = Cli::parse_from(["mistralrs-server", "run", "-m", "m", "--quantize", "q8_0"]);
        let merged = cli.merge_into(file);
        assert_eq!(merged.models.len(), 1);
        assert_eq!(merged.models[0].quantize, Some(Quantization::Q8_0));
        assert_eq!(merged.models[0].dtype, Some(FloatType::Bf16));
    }

    #[test]
    fn help_explains_every_flag() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let mut help = command.render_long_help().to_string();
        let run = command.find_subcommand_mut("run").unwrap();
        help.push_str(&run.render_long_help().to_string());
        for flag in [
            "--serve-ip",
            "--port",
            "--config",
            "--max-seqs",
            "--kv-cache-blocks",
            "--kv-cache-mem",
            "--kv-cache-dtype",
            "--threads",
            "--dtype",
            "--quantize",
            "--gguf-file",
            "--log-level",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn flags_are_validated_with_the_file() {
        let cli = Cli::parse_from(["mistralrs-server", "--max-seqs", "0", "run", "-m", "demo"]);
        let merged = cli.merge_into(Config::default());
        let err = merged.validate().unwrap_err();
        assert!(err.contains("max_seqs"), "{err}");
    }
}
