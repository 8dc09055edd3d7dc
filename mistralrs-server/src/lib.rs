//! mistralrs-server: the binary's pieces. `main.rs` only calls [`run`].

pub mod app;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod model_source;
pub mod openai;
mod serve;

pub use serve::run;
