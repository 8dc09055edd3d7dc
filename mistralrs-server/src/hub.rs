//! Models from the Hugging Face Hub: the local cache first, a download
//! (hf-hub's blocking client, into the same cache) otherwise. Honours
//! `HF_ENDPOINT`, `HF_TOKEN` (else the cache's `token` file), `HF_HUB_CACHE` /
//! `HF_HOME` and `HF_HUB_OFFLINE`. The token is sent, never logged.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// The files of a Hugging Face model folder worth fetching besides the weights.
const FOLDER_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors.index.json",
];

/// How to reach the Hub and where its cache is.
#[derive(Debug, Clone)]
pub struct Hub {
    /// The Hub's URL; `None` for huggingface.co.
    pub endpoint: Option<String>,
    /// The hub cache folder (`models--org--name/...` inside).
    pub cache: Option<PathBuf>,
    /// Sent as a bearer token.
    pub token: Option<String>,
    /// Never download; only the cache counts.
    pub offline: bool,
}

impl Hub {
    /// The Hub as the environment describes it.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let cache = cache_dir();
        let token = var("HF_TOKEN").or_else(|| {
            let file = cache.as_ref()?.parent()?.join("token");
            let text = std::fs::read_to_string(file).ok()?;
            Some(text.trim().to_owned()).filter(|t| !t.is_empty())
        });
        Self {
            endpoint: var("HF_ENDPOINT").map(|e| e.trim_end_matches('/').to_owned()),
            cache,
            token,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| v != "0" && v != "false"),
        }
    }

    /// The cached snapshot of `repo` (`org/name`), where `refs/main` points,
    /// else the newest one.
    pub fn cached(&self, repo: &str) -> Option<PathBuf> {
        let dir = self
            .cache
            .as_ref()?
            .join(format!("models--{}", repo.replace('/', "--")));
        let snapshots = dir.join("snapshots");
        if let Ok(rev) = std::fs::read_to_string(dir.join("refs/main")) {
            let snapshot = snapshots.join(rev.trim());
            if snapshot.is_dir() {
                return Some(snapshot);
            }
        }
        std::fs::read_dir(&snapshots)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path())
    }

    /// Downloads `repo` into the cache: a Hugging Face folder (config,
    /// tokenizer, safetensors), or one GGUF file (`gguf_file`, or the only one).
    /// Returns the snapshot folder, or the GGUF file.
    pub fn download(&self, repo: &str, gguf_file: Option<&str>) -> anyhow::Result<PathBuf> {
        let where_ = self.endpoint.as_deref().unwrap_or("https://huggingface.co");
        if self.offline {
            bail!("model `{repo}` is not in the Hugging Face cache and HF_HUB_OFFLINE is set");
        }
        let mut builder = ApiBuilder::from_cache(Cache::new(
            self.cache
                .clone()
                .context("no folder for the Hugging Face cache")?,
        ))
        .with_progress(std::io::stderr().is_terminal())
        .with_token(self.token.clone());
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let api = builder.build().context("starting the Hub client")?;
        let remote = api.repo(Repo::new(repo.to_owned(), RepoType::Model));
        let files: Vec<String> = remote
            .info()
            .map_err(|e| explain(e, repo, where_))?
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .collect();
        let fetch = |file: &str| -> anyhow::Result<PathBuf> {
            tracing::info!(repo, file, "downloading");
            remote.get(file).map_err(|e| explain(e, repo, where_))
        };
        if files.iter().any(|f| f == "config.json") {
            let config = fetch("config.json")?;
            for file in files.iter().filter(|f| {
                (FOLDER_FILES.contains(&f.as_str()) && f.as_str() != "config.json")
                    || f.ends_with(".safetensors")
            }) {
                fetch(file)?;
            }
            return Ok(config.parent().unwrap_or(Path::new(".")).to_path_buf());
        }
        let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
        let chosen = match (gguf_file, ggufs.as_slice()) {
            (Some(name), _) if ggufs.iter().any(|f| *f == name) => name.to_owned(),
            (Some(name), _) => bail!(
                "`{repo}` has no GGUF file `{name}`; it has: {}",
                list(&ggufs)
            ),
            (None, [one]) => (*one).clone(),
            (None, []) => {
                bail!("`{repo}` holds neither a Hugging Face model (config.json) nor a .gguf file")
            }
            (None, _) => bail!(
                "`{repo}` has {} GGUF files; name one with --gguf-file: {}",
                ggufs.len(),
                list(&ggufs)
            ),
        };
        fetch(&chosen)
    }
}

fn list(files: &[&String]) -> String {
    files
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a failed Hub request means, in words.
fn explain(error: ApiError, repo: &str, endpoint: &str) -> anyhow::Error {
    if let ApiError::RequestError(inner) = &error
        && let ureq::Error::Status(code, _) = inner.as_ref()
    {
        return match code {
            401 | 403 => anyhow::anyhow!(
                "`{repo}` at {endpoint}: access denied ({code}); a gated or private model \
                 needs HF_TOKEN"
            ),
            404 => anyhow::anyhow!("`{repo}` at {endpoint}: no such model or file (404)"),
            _ => anyhow::anyhow!("`{repo}` at {endpoint}: the Hub answered {code}"),
        };
    }
    anyhow::anyhow!("`{repo}` at {endpoint}: {error}")
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(cache: &Path) -> Hub {
        Hub {
            endpoint: Some("http://127.0.0.1:9".into()),
            cache: Some(cache.to_path_buf()),
            token: None,
            offline: true,
        }
    }

    #[test]
    fn finds_a_model_id_in_the_hub_cache() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--org--tiny");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        let hub = hub(cache.path());
        assert_eq!(hub.cached("org/tiny"), Some(repo.join("snapshots/abc123")));
        assert_eq!(hub.cached("org/other"), None);
    }

    #[test]
    fn offline_never_downloads() {
        let cache = tempfile::tempdir().unwrap();
        let err = hub(cache.path()).download("org/tiny", None).unwrap_err();
        assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    }
}
