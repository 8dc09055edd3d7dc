//! The command line, mirroring mistralrs-server: global flags, then `run -m <model>`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ModelEntry};

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
    /// Sequences running at once per model [default: 32].
    #[arg(long, global = true)]
    pub max_seqs: Option<usize>,
    /// KV cache blocks (16 tokens each) per model [default: 512].
    #[arg(long, global = true)]
    pub kv_cache_blocks: Option<usize>,
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
        /// model id in the local Hugging Face cache (e.g. Qwen/Qwen2.5-0.5B-Instruct),
        /// `smollm2` (after `scripts/get-model smollm2`), or `demo` (a small built-in
        /// model).
        #[arg(long, short = 'm')]
        model: String,
        /// Name clients use in `model` [default: the model's last path part].
        #[arg(long)]
        name: Option<String>,
    },
}

impl Cli {
    /// The config file's settings with these flags on top, and the `run` model
    /// added to the file's models.
    pub fn merge_into(&self, mut config: Config) -> Config {
        config.serve_ip = self.serve_ip.or(config.serve_ip);
        config.port = self.port.or(config.port);
        config.http_mcp.port = self.http_mcp_port.or(config.http_mcp.port);
        config
            .http_mcp
            .api_keys
            .extend(self.http_mcp_auth_keys.iter().cloned());
        config.max_seqs = self.max_seqs.or(config.max_seqs);
        config.kv_cache_blocks = self.kv_cache_blocks.or(config.kv_cache_blocks);
        config.log_level = self.log_level.clone().or(config.log_level);
        let Command::Run { model, name } = &self.command;
        let entry = ModelEntry {
            name: name.clone(),
            model: model.clone(),
        };
        config
            .models
            .retain(|m| m.model != entry.model || m.name != entry.name);
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
    fn help_explains_every_flag() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--serve-ip",
            "--port",
            "--config",
            "--max-seqs",
            "--kv-cache-blocks",
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
