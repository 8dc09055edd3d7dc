//! Grammars that force a tool call in the parser's own format
//! (`tool_choice: "required"` or a named function): the name must be one
//! offered and the arguments must match that function's parameter schema.

use serde_json::{Value, json};

use super::definitions::FunctionDef;
use super::parser::ToolParser;

/// llguidance's JSON options: Python's separators and no free whitespace, so
/// even a weak model can't pad a call until `max_tokens`.
fn json_options() -> Value {
    json!({"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": false})
}

/// One call object of `function`, its arguments under `arguments_key`.
fn call_schema(function: &FunctionDef, arguments_key: &str) -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"const": function.name},
            arguments_key: function.parameters,
        },
        "required": ["name", arguments_key],
        "additionalProperties": false,
    })
}

/// Any one call of `functions`.
fn any_call_schema(functions: &[&FunctionDef], arguments_key: &str) -> Value {
    match functions {
        [one] => call_schema(one, arguments_key),
        many => {
            json!({"anyOf": many.iter().map(|f| call_schema(f, arguments_key)).collect::<Vec<_>>()})
        }
    }
}

/// `schema` with the JSON options (read at the top level only).
fn top_level(mut schema: Value) -> Value {
    schema["x-guidance"] = json_options();
    schema
}

/// A Lark grammar for one call of `functions` (several when `parallel`) in
/// `parser`'s format. `special_token` finds a special token's id (Mistral's
/// `[TOOL_CALLS]` is one).
pub(super) fn forced_calls(
    parser: ToolParser,
    functions: &[&FunctionDef],
    parallel: bool,
    special_token: impl Fn(&str) -> Option<u32>,
) -> String {
    let repeat = |separator: &str| {
        if parallel {
            format!("start: call ({separator} call)*\n")
        } else {
            "start: call\n".to_owned()
        }
    };
    match parser {
        ToolParser::Hermes => format!(
            "{}call: \"<tool_call>\\n\" %json {} \"\\n</tool_call>\"\n",
            repeat("\"\\n\""),
            top_level(any_call_schema(functions, "arguments"))
        ),
        ToolParser::Llama3Json => format!(
            "{}call: %json {}\n",
            repeat("\"; \""),
            top_level(any_call_schema(functions, "parameters"))
        ),
        ToolParser::Mistral => {
            let marker = match special_token("[TOOL_CALLS]") {
                Some(id) => format!("<[{id}]>"),
                None => "\"[TOOL_CALLS]\"".to_owned(),
            };
            let mut list = top_level(json!({
                "type": "array",
                "items": any_call_schema(functions, "arguments"),
                "minItems": 1,
            }));
            if !parallel {
                list["maxItems"] = json!(1);
            }
            format!("start: {marker} %json {list}\n")
        }
    }
}
