//! Where `-m <model>` points: `demo`, a model `scripts/get-model` fetched
//! (`smollm2`), a local folder or `.gguf` file, or a model id in the local
//! Hugging Face cache. Nothing is downloaded here.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The folder holding the model named by `spec`.
pub fn resolve(spec: &str) -> anyhow::Result<PathBuf> {
    if spec == "demo" {
        return mistralrs_core::demo::ensure_demo_model().context("writing the demo model");
    }
    if let Some(known) = KNOWN_MODELS.iter().find(|m| m.name == spec) {
        return known.cached();
    }
    let path = Path::new(spec);
    if path.is_dir() || path.is_file() {
        return Ok(path.to_path_buf());
    }
    let cache = hub_cache_dir();
    if let Some(snapshot) = cache.as_deref().and_then(|c| cached_snapshot(c, spec)) {
        return Ok(snapshot);
    }
    bail!(
        "model `{spec}` not found: it is not `demo`, not a folder, and not in the Hugging Face cache{}",
        cache
            .map(|c| format!(" ({})", c.display()))
            .unwrap_or_default()
    )
}

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
/// A model `scripts/get-model` fetches, served by its short name.
struct KnownModel {
    /// What `-m` and `scripts/get-model` call it.
    name: &'static str,
    /// The file `scripts/get-model` unpacks into the models cache.
    file: &'static str,
}

/// Models one command away (`scripts/get-model NAME`).
const KNOWN_MODELS: [KnownModel; 1] = [KnownModel {
    name: "smollm2",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
}];

impl KnownModel {
    /// The file in the models cache, or an error with the command that fetches it.
    fn cached(&self) -> anyhow::Result<PathBuf> {
        let dir = models_cache_dir().context("no home folder for the models cache")?;
        let path = dir.join(self.file);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "model `{}` is not downloaded yet ({} is missing); run: scripts/get-model {}",
            self.name,
            path.display(),
            self.name
        )
    }
}

/// `$MISTRALRS_MODELS_DIR`, else `~/.cache/mistralrs/models` (where
/// `scripts/get-model` puts files).
fn models_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MISTRALRS_MODELS_DIR") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mistralrs/models"))
}

fn hub_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// The snapshot of `org/name` that `refs/main` points to, else the newest one.
fn cached_snapshot(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// The name a model is served under when none is given: the last part of its spec.
pub fn default_name(spec: &str) -> String {
    spec.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(spec)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_model_id_in_the_hub_cache() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--org--tiny");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(
            cached_snapshot(cache.path(), "org/tiny"),
            Some(repo.join("snapshots/abc123"))
        );
        assert_eq!(cached_snapshot(cache.path(), "org/other"), None);
    }

    #[test]
    fn names_come_from_the_last_path_part() {
        assert_eq!(default_name("Qwen/Qwen2.5-0.5B"), "Qwen2.5-0.5B");
        assert_eq!(default_name("/models/llama/"), "llama");
        assert_eq!(default_name("demo"), "demo");
    }

    #[test]
    fn unknown_models_get_a_clear_error() {
        let err = resolve("no/such-model-anywhere").unwrap_err().to_string();
        assert!(
            err.contains("no/such-model-anywhere") && err.contains("not found"),
            "{err}"
        );
    }
}
