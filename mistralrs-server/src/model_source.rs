//! Where `-m <model>` points: `demo`, a model `scripts/get-model` fetched
//! (`smollm2`), a local folder or `.gguf` file, or a model id on the Hugging
//! Face Hub (from its local cache, else downloaded: `hub`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::hub::Hub;

/// The folder or file holding the model named by `spec`; `gguf_file` picks the
/// file of a Hub repo holding several.
pub fn resolve(spec: &str, gguf_file: Option<&str>, hub: &Hub) -> anyhow::Result<PathBuf> {
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
    if !is_repo_id(spec) {
        bail!(
            "model `{spec}` not found: it is not `demo`, a known model, a folder, a file, nor a Hub id (org/name)"
        );
    }
    if let Some(snapshot) = hub.cached(spec) {
        return Ok(match gguf_file {
            Some(file) => snapshot.join(file),
            None => snapshot,
        });
    }
    hub.download(spec, gguf_file)
}

/// `org/name`: two non-empty parts of the characters the Hub allows.
fn is_repo_id(spec: &str) -> bool {
    let allowed = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(spec.split_once('/'), Some((org, name)) if allowed(org) && allowed(name))
}

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
    fn names_come_from_the_last_path_part() {
        assert_eq!(default_name("Qwen/Qwen2.5-0.5B"), "Qwen2.5-0.5B");
        assert_eq!(default_name("/models/llama/"), "llama");
        assert_eq!(default_name("demo"), "demo");
    }

    #[test]
    fn unknown_models_get_a_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let offline = Hub {
            endpoint: Some("http://127.0.0.1:9".into()),
            cache: Some(cache.path().to_path_buf()),
            token: None,
            offline: true,
        };
        let err = resolve("no/such-model-anywhere", None, &offline)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no/such-model-anywhere") && err.contains("HF_HUB_OFFLINE"),
            "{err}"
        );
        let err = resolve("not a model", None, &offline)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not found"), "{err}");
    }

    #[test]
    fn repo_ids_are_two_parts_of_the_hubs_characters() {
        assert!(is_repo_id("Qwen/Qwen2.5-0.5B-Instruct"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("/abs"));
        assert!(!is_repo_id("demo"));
        assert!(!is_repo_id("org/na me"));
    }
}
