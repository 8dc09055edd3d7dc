//! The one error type of the engine.

/// What can go wrong in the engine, from loading a model to serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model folder is missing a file or holds one that cannot be read.
    #[error("model folder {path}: {message}")]
    ModelFiles {
        /// The folder or file concerned.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// `config.json` describes a model this engine does not implement.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be rendered.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A request parameter is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The prompt does not fit the model's context or the KV cache.
    #[error("prompt of {prompt} tokens does not fit: {limit}")]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt: usize,
        /// The limit it broke, in words.
        limit: String,
    },
    /// No model is served under this name.
    #[error("model `{0}` is not served")]
    UnknownModel(String),
    /// The waiting queue is full.
    #[error("too many requests waiting ({0}); try again later")]
    QueueFull(usize),
    /// The engine has stopped.
    #[error("the engine has shut down")]
    EngineStopped,
    /// An accepted request failed while it ran.
    #[error(transparent)]
    Failed(#[from] crate::request::Failure),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// The KV cache failed.
    #[error(transparent)]
    KvCache(#[from] mistralrs_paged_attn::Error),
    /// The GPU lacks the memory for a model or its KV cache.
    #[error("GPU memory: {0}")]
    DeviceMemory(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    pub(crate) fn files(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        Self::ModelFiles {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;
