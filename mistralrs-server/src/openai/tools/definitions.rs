//! The tool fields of a chat request, checked: `tools`, `tool_choice`,
//! `parallel_tool_calls`, `response_format`, and the tool turns of the
//! conversation (assistant `tool_calls`, `tool` results).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::parser::ParsedCall;
use crate::openai::ApiError;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    /// Its name (`[a-zA-Z0-9_-]{1,64}`, as OpenAI requires).
    pub name: String,
    /// JSON schema of its arguments (an empty object schema when absent).
    pub parameters: Value,
}

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls; the tools are not shown to the model.
    None,
    /// The model decides.
    Auto,
    /// At least one call, enforced by a grammar.
    Required,
    /// A call of this function, enforced by a grammar.
    Function(String),
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A JSON schema that is itself valid (against its metaschema).
fn checked_schema(param: &'static str, what: &str, schema: &Value) -> Result<(), ApiError> {
    if !schema.is_object() {
        return Err(ApiError::invalid(
            param,
            format!("{what} must be a JSON schema object"),
        ));
    }
    jsonschema::meta::validate(schema)
        .map_err(|e| ApiError::invalid(param, format!("{what} is not a valid JSON schema: {e}")))
}

/// `tools`: function definitions with unique, valid names and valid schemas.
pub(super) fn functions(tools: &[Value]) -> Result<Vec<FunctionDef>, ApiError> {
    let mut seen = HashSet::new();
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool["type"] != "function" {
                return Err(ApiError::invalid(
                    "tools",
                    format!("tools[{i}].type must be \"function\""),
                ));
            }
            let function = &tool["function"];
            let name = function["name"].as_str().unwrap_or_default();
            if !valid_name(name) {
                return Err(ApiError::invalid(
                    "tools",
                    format!("tools[{i}].function.name must match [a-zA-Z0-9_-]{{1,64}}"),
                ));
            }
            if !seen.insert(name) {
                return Err(ApiError::invalid(
                    "tools",
                    format!("tools[{i}]: the function `{name}` is defined twice"),
                ));
            }
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(schema) => {
                    checked_schema("tools", &format!("tools[{i}].function.parameters"), schema)?;
                    schema.clone()
                }
            };
            Ok(FunctionDef {
                name: name.to_owned(),
                parameters,
            })
        })
        .collect()
}

/// `tool_choice` against the defined functions; absent means `auto` with
/// tools and `none` without.
pub(super) fn tool_choice(
    choice: Option<&Value>,
    functions: &[FunctionDef],
) -> Result<ToolChoice, ApiError> {
    let invalid = |message: String| Err(ApiError::invalid("tool_choice", message));
    let choice = match choice {
        None if functions.is_empty() => ToolChoice::None,
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return invalid(format!(
                    "`{other}` is not a tool choice: use none, auto, required or a function"
                ));
            }
        },
        Some(object) => match object["function"]["name"].as_str() {
            Some(name) if object["type"] == "function" => ToolChoice::Function(name.to_owned()),
            _ => {
                return invalid(
                    "a named choice is {\"type\": \"function\", \"function\": {\"name\": ...}}"
                        .to_owned(),
                );
            }
        },
    };
    match &choice {
        ToolChoice::Required | ToolChoice::Function(_) if functions.is_empty() => {
            invalid("a tool choice that calls a tool needs `tools`".to_owned())
        }
        ToolChoice::Function(name) if !functions.iter().any(|f| &f.name == name) => {
            invalid(format!("`{name}` is not one of the functions in `tools`"))
        }
        _ => Ok(choice),
    }
}

/// `response_format`: the JSON schema the answer must match, `Some(None)`
/// for any JSON object, `None` for free text.
pub(super) fn response_format(format: Option<&Value>) -> Result<Option<Option<Value>>, ApiError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(None)),
        Some("json_schema") => {
            let schema = &format["json_schema"]["schema"];
            if schema.is_null() {
                return Err(ApiError::invalid(
                    "response_format",
                    "`json_schema` needs a `schema`",
                ));
            }
            checked_schema(
                "response_format",
                "response_format.json_schema.schema",
                schema,
            )?;
            Ok(Some(Some(schema.clone())))
        }
        _ => Err(ApiError::invalid(
            "response_format",
            "`type` must be text, json_object or json_schema",
        )),
    }
}

/// The calls of an assistant message (`tool_calls`), checked: ids, names and
/// arguments that are JSON objects.
pub(super) fn assistant_calls(
    i: usize,
    message: &Value,
) -> Result<Vec<(String, ParsedCall)>, ApiError> {
    let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) else {
        return Ok(Vec::new());
    };
    let invalid =
        |what: &str| ApiError::invalid("messages", format!("messages[{i}].tool_calls: {what}"));
    calls
        .as_array()
        .ok_or_else(|| invalid("must be an array"))?
        .iter()
        .map(|call| {
            let id = call["id"]
                .as_str()
                .ok_or_else(|| invalid("each call needs an `id`"))?;
            let name = call["function"]["name"]
                .as_str()
                .ok_or_else(|| invalid("each call needs `function.name`"))?;
            let arguments = match &call["function"]["arguments"] {
                Value::String(s) => serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        invalid("`function.arguments` must be a JSON object in a string")
                    })?,
                Value::Object(_) => call["function"]["arguments"].clone(),
                _ => return Err(invalid("each call needs `function.arguments`")),
            };
            Ok((
                id.to_owned(),
                ParsedCall {
                    name: name.to_owned(),
                    arguments,
                },
            ))
        })
        .collect()
}

/// Every `tool` message answers a call an earlier assistant message made.
pub(super) fn check_tool_results(messages: &[Value]) -> Result<(), ApiError> {
    let mut ids = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        match message["role"].as_str() {
            Some("assistant") => {
                ids.extend(assistant_calls(i, message)?.into_iter().map(|(id, _)| id));
            }
            Some("tool") => {
                let id = message["tool_call_id"].as_str().ok_or_else(|| {
                    ApiError::invalid(
                        "messages",
                        format!("messages[{i}]: a tool message needs `tool_call_id`"),
                    )
                })?;
                if !ids.contains(id) {
                    return Err(ApiError::invalid(
                        "messages",
                        format!(
                            "messages[{i}]: `tool_call_id` {id:?} answers no earlier tool call"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, parameters: Value) -> Value {
        json!({"type": "function", "function": {"name": name, "parameters": parameters}})
    }

    fn message_of(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        result.unwrap_err().body()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn bad_tool_definitions_are_named() {
        for (tools, expect) in [
            (vec![json!({"type": "code"})], "tools[0].type"),
            (vec![tool("has space", json!({}))], "tools[0].function.name"),
            (
                vec![tool(&"x".repeat(65), json!({}))],
                "tools[0].function.name",
            ),
            (
                vec![tool("f", json!({})), tool("f", json!({}))],
                "defined twice",
            ),
            (
                vec![tool("f", json!({"type": "nonsense"}))],
                "not a valid JSON schema",
            ),
            (vec![tool("f", json!([1]))], "must be a JSON schema object"),
        ] {
            let message = message_of(functions(&tools));
            assert!(message.contains(expect), "{message}");
        }
        let ok = functions(&[json!({"type": "function", "function": {"name": "f"}})]).unwrap();
        assert_eq!(ok[0].parameters["type"], "object");
    }

    #[test]
    fn tool_choice_must_name_a_defined_function() {
        let defs = functions(&[tool("f", json!({"type": "object"}))]).unwrap();
        assert_eq!(tool_choice(None, &defs).unwrap(), ToolChoice::Auto);
        assert_eq!(tool_choice(None, &[]).unwrap(), ToolChoice::None);
        let named = json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(
            tool_choice(Some(&named), &defs).unwrap(),
            ToolChoice::Function("f".into())
        );
        let other = json!({"type": "function", "function": {"name": "g"}});
        assert!(message_of(tool_choice(Some(&other), &defs)).contains("`g` is not one of"));
        assert!(message_of(tool_choice(Some(&json!("required")), &[])).contains("needs `tools`"));
        assert!(message_of(tool_choice(Some(&json!("always")), &defs)).contains("`always`"));
    }

    #[test]
    fn tool_results_must_answer_a_call() {
        let call = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}
        ]});
        let result = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "4"});
        assert!(check_tool_results(&[call.clone(), result("call_1")]).is_ok());
        let message = message_of(check_tool_results(&[call.clone(), result("call_2")]));
        assert!(
            message.contains("\"call_2\" answers no earlier tool call"),
            "{message}"
        );
        assert!(message_of(check_tool_results(&[result("call_1"), call])).contains("messages[0]"));
        let bad_arguments = json!({"role": "assistant", "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": "not json"}}
        ]});
        assert!(message_of(check_tool_results(&[bad_arguments])).contains("JSON object"));
    }

    #[test]
    fn response_formats() {
        assert_eq!(response_format(None).unwrap(), None);
        assert_eq!(
            response_format(Some(&json!({"type": "json_object"}))).unwrap(),
            Some(None)
        );
        let schema = json!({"type": "object"});
        let format = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
        assert_eq!(response_format(Some(&format)).unwrap(), Some(Some(schema)));
        let bad =
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}});
        assert!(message_of(response_format(Some(&bad))).contains("not a valid JSON schema"));
        assert!(message_of(response_format(Some(&json!({"type": "yaml"})))).contains("`type`"));
        let missing = json!({"type": "json_schema", "json_schema": {"name": "x"}});
        assert!(message_of(response_format(Some(&missing))).contains("needs a `schema`"));
    }
}
