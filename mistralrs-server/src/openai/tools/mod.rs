//! Tool calling and structured output for chat completions: the request's
//! tool fields become a prompt (through the model's chat template), an output
//! constraint when a call or a JSON answer is required, and the tool-call
//! format that reads the answer back (docs/tool-calling.md).

mod definitions;
mod grammar;
mod parser;
mod stream;

use mistralrs_core::ModelInfo;
use mistralrs_core::constraint::OutputConstraint;
use mistralrs_core::request::Prompt;
use serde_json::Value;

pub use definitions::{FunctionDef, ToolChoice};
pub use parser::{ParsedCall, ParsedOutput, ToolParser};
pub use stream::{StreamPiece, ToolCallStream};

use super::ApiError;

/// How one chat request is run: its prompt, what its output must match, and
/// the tool-call format its answer is read with (when tools are offered).
#[derive(Debug)]
pub struct ChatPlan {
    /// The conversation, tool turns rewritten where the template can't show them.
    pub prompt: Prompt,
    /// A grammar for forced calls or `response_format`.
    pub constraint: Option<OutputConstraint>,
    /// The format calls are read in; `None` when no tools are offered.
    pub parser: Option<ToolParser>,
}

/// The request's tool and format fields, as sent.
#[derive(Debug, Clone, Copy)]
pub struct ToolFields<'a> {
    /// `tools`.
    pub tools: Option<&'a [Value]>,
    /// `tool_choice`.
    pub tool_choice: Option<&'a Value>,
    /// `parallel_tool_calls` (default true).
    pub parallel_tool_calls: Option<bool>,
    /// `response_format`.
    pub response_format: Option<&'a Value>,
}

/// Checks the tool fields and plans the request for `model`; `parser`
/// overrides the format the chat template suggests.
pub fn plan(
    messages: Vec<Value>,
    fields: ToolFields<'_>,
    model: &ModelInfo,
    parser: Option<ToolParser>,
) -> Result<ChatPlan, ApiError> {
    let functions = definitions::functions(fields.tools.unwrap_or_default())?;
    let choice = definitions::tool_choice(fields.tool_choice, &functions)?;
    definitions::check_tool_results(&messages)?;
    let answer_format = definitions::response_format(fields.response_format)?;
    let template = model.chat_template.as_ref().map(|t| t.source());
    let parser = parser.unwrap_or_else(|| ToolParser::detect(template));
    let template = template.unwrap_or_default();
    let messages = rewrite_tool_turns(messages, template, parser)?;
    let offered: Vec<&FunctionDef> = match &choice {
        ToolChoice::None => Vec::new(),
        ToolChoice::Function(name) => functions.iter().filter(|f| &f.name == name).collect(),
        ToolChoice::Auto | ToolChoice::Required => functions.iter().collect(),
    };
    let forced = matches!(choice, ToolChoice::Required | ToolChoice::Function(_));
    let constraint = match (forced, answer_format) {
        (true, Some(_)) => {
            return Err(ApiError::invalid(
                "response_format",
                "`response_format` can't be combined with a tool choice that forces a call",
            ));
        }
        (true, None) => Some(OutputConstraint::Lark(grammar::forced_calls(
            parser,
            &offered,
            fields.parallel_tool_calls.unwrap_or(true),
            |token| model.tokenizer.token_id(token),
        ))),
        (false, Some(Some(schema))) => Some(OutputConstraint::JsonSchema(schema)),
        (false, Some(None)) => Some(OutputConstraint::JsonObject),
        (false, None) => None,
    };
    let tools: Option<Vec<Value>> = (!offered.is_empty()).then(|| {
        let names: Vec<&str> = offered.iter().map(|f| f.name.as_str()).collect();
        fields
            .tools
            .unwrap_or_default()
            .iter()
            .filter(|t| names.contains(&t["function"]["name"].as_str().unwrap_or_default()))
            .cloned()
            .collect()
    });
    let (messages, tools) = match tools {
        Some(tools) if !template.contains("tools") => {
            (with_tool_instructions(messages, &tools, parser), None)
        }
        tools => (messages, tools),
    };
    Ok(ChatPlan {
        prompt: Prompt::Chat { messages, tools },
        constraint,
        parser: (!offered.is_empty()).then_some(parser),
    })
}

/// Assistant `tool_calls` written into the content in the model's format when
/// the template knows nothing of `tool_calls` (it would drop them, or fail on
/// the missing content).
fn rewrite_tool_turns(
    messages: Vec<Value>,
    template: &str,
    parser: ToolParser,
) -> Result<Vec<Value>, ApiError> {
    if template.contains("tool_calls") {
        return Ok(messages);
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, mut message)| {
            let calls = definitions::assistant_calls(i, &message)?;
            if calls.is_empty() {
                return Ok(message);
            }
            let calls: Vec<ParsedCall> = calls.into_iter().map(|(_, call)| call).collect();
            let text = message["content"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_owned();
            let rendered = parser.render(&calls);
            message["content"] = Value::String(if text.is_empty() {
                rendered
            } else {
                format!("{text}\n{rendered}")
            });
            if let Some(object) = message.as_object_mut() {
                object.remove("tool_calls");
            }
            Ok(message)
        })
        .collect()
}

/// The tools described in a system turn, in Qwen 2.5's words, for templates
/// that don't render `tools` themselves (SmolLM2's, for one).
fn with_tool_instructions(
    mut messages: Vec<Value>,
    tools: &[Value],
    parser: ToolParser,
) -> Vec<Value> {
    let listed: Vec<String> = tools.iter().map(Value::to_string).collect();
    let example = parser.render(&[ParsedCall {
        name: "<function-name>".into(),
        arguments: serde_json::json!({"<argument>": "<value>"}),
    }]);
    let instructions = format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\n\
         For each function call, return a JSON object with the function name and arguments in this format:\n{example}",
        listed.join("\n")
    );
    match messages.first_mut() {
        Some(first) if first["role"] == "system" => {
            let text = first["content"].as_str().unwrap_or_default().to_owned();
            first["content"] = Value::String(format!("{text}\n\n{instructions}"));
        }
        _ => messages.insert(
            0,
            serde_json::json!({"role": "system", "content": instructions}),
        ),
    }
    messages
}
