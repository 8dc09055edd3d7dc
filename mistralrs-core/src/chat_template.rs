//! The model's own Jinja chat template, rendered with minijinja the way
//! transformers' `apply_chat_template` renders it with jinja2.
//!
//! transformers adds a few things to the Jinja environment that templates rely on:
//! `raise_exception`, Python string methods (`.strip()`, `.startswith()`, via
//! minijinja-contrib's pycompat), `tojson` with Python's `json.dumps` spacing,
//! and the `bos_token` / `eos_token` variables. They are added here too.

use std::path::Path;

use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

use crate::tokenizer::{Tokenizer, TokenizerConfig};
use crate::{Error, Result};

const TEMPLATE_NAME: &str = "chat";

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

fn template_err(e: impl std::fmt::Display) -> Error {
    Error::ChatTemplate(e.to_string())
}

impl ChatTemplate {
    /// The template of `tokenizer_config.json` (the `default` one when the file
    /// names several), or `None` when the folder has none.
    pub fn from_folder(dir: &Path, tokenizer: &Tokenizer) -> Result<Option<Self>> {
        let config = TokenizerConfig::from_folder(dir)?;
        let source = match config.chat_template {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t["name"] == "default")
                .or_else(|| named.first())
                .and_then(|t| t["template"].as_str().map(str::to_owned)),
            _ => None,
        };
        let jinja = dir.join("chat_template.jinja");
        let source = match source {
            Some(s) => Some(s),
            None => std::fs::read_to_string(&jinja).ok(),
        };
        source
            .map(|s| Self::new(s, tokenizer.bos_token(), tokenizer.eos_token()))
            .transpose()
    }

    /// Compiles `source`.
    pub fn new(source: String, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_filter("tojson", python_tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(template_err)?;
        Ok(Self {
            env,
            source,
            bos_token: bos_token.map(str::to_owned),
            eos_token: eos_token.map(str::to_owned),
        })
    }

    /// The template's text (callers look for the tool-call format it uses).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` (OpenAI chat messages) and `tools` (OpenAI tool
    /// definitions), ending with the assistant's turn when `add_generation_prompt`.
    pub fn render<M: Serialize, T: Serialize>(
        &self,
        messages: &[M],
        tools: Option<&[T]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_err)?;
        template
            .render(context! {
                messages => messages,
                tools => tools,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(template_err)
    }
}

/// `tojson` as transformers defines it: `json.dumps(value, ensure_ascii=False)`,
/// i.e. `", "` and `": "` separators and keys in insertion order.
fn python_tojson(value: Value) -> std::result::Result<Value, minijinja::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    let text = String::from_utf8(out)
        .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    Ok(Value::from_safe_string(text))
}

/// serde_json formatting with Python's default separators.
struct PythonFormatter;

/// `", "` before every element but the first.
fn separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separator(w, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separator(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}
