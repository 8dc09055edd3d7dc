//! What a POST body must be before rmcp sees it: JSON (else -32700), one
//! JSON-RPC 2.0 message (else -32600), and, for the methods whose parameters
//! rmcp would otherwise misread as an unknown method, parameters of the right
//! shape (else -32602, answered to the request's id).
//!
//! rmcp alone answers a body it cannot read as a message with 415, which tells
//! the client to change its Content-Type, not its JSON. Nesting depth is bounded
//! by serde_json's recursion limit (128): deeper is a parse error.

use serde_json::{Map, Value};

use super::rejection::Rejection;

/// Levels of `logging/setLevel` (RFC 5424 names, as MCP defines them).
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A JSON-RPC message that passed the checks.
#[derive(Debug)]
pub(super) struct Message {
    /// The method of a request or notification; `None` for a response.
    pub(super) method: Option<String>,
    /// The id of a request or response.
    pub(super) id: Option<Value>,
    /// `params._meta` names a per-request protocol version (2026-07-28 style).
    pub(super) has_meta_protocol_version: bool,
}

impl Message {
    /// A request (a method and an id).
    pub(super) fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    /// The handshake that opens a session.
    pub(super) fn is_initialize(&self) -> bool {
        self.is_request() && self.method.as_deref() == Some("initialize")
    }
}

/// A body refused by the checks.
#[derive(Debug)]
pub(super) enum Refused {
    /// Not JSON, or not a JSON-RPC message.
    Rejected(Rejection),
    /// A request whose parameters do not fit its method: -32602 to its id.
    InvalidParams {
        /// The request's id.
        id: Value,
        /// What is wrong.
        message: String,
    },
}

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Self {
        Self::Rejected(rejection)
    }
}

/// Checks `body`.
pub(super) fn check(body: &[u8]) -> Result<Message, Refused> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Rejection::ParseError(e.to_string()))?;
    let invalid = |why: &str| Refused::Rejected(Rejection::InvalidRequest(why.to_owned()));
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(invalid(
                "batches are not supported; send one message per request",
            ));
        }
        _ => return Err(invalid("a JSON-RPC message is an object")),
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("`jsonrpc` must be \"2.0\""));
    }
    let id = match object.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n.clone())),
        Some(_) => return Err(invalid("`id` must be a string or an integer")),
    };
    let method = match object.get("method") {
        None => None,
        Some(Value::String(method)) => Some(method.clone()),
        Some(_) => return Err(invalid("`method` must be a string")),
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(params)) => Some(params),
        Some(_) => return Err(invalid("`params` must be an object")),
    };
    match &method {
        None => {
            let answers = usize::from(object.contains_key("result"))
                + usize::from(object.contains_key("error"));
            if id.is_none() || answers != 1 {
                return Err(invalid(
                    "a message without `method` is a response: an `id` and exactly one of `result` or `error`",
                ));
            }
        }
        Some(method) => {
            if let (Some(id), Err(message)) = (&id, check_params(method, params)) {
                return Err(Refused::InvalidParams {
                    id: id.clone(),
                    message,
                });
            }
        }
    }
    let has_meta_protocol_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .is_some();
    Ok(Message {
        method,
        id,
        has_meta_protocol_version,
    })
}

/// Parameter shapes of the methods rmcp would misreport; other methods pass.
fn check_params(method: &str, params: Option<&Map<String, Value>>) -> Result<(), String> {
    let empty = Map::new();
    let params = params.unwrap_or(&empty);
    let string = |key: &str| match params.get(key) {
        Some(Value::String(_)) => Ok(()),
        _ => Err(format!("{method}: `{key}` must be a string")),
    };
    let optional_object = |key: &str| match params.get(key) {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(_) => Err(format!("{method}: `{key}` must be an object")),
    };
    match method {
        "tools/call" | "prompts/get" => {
            string("name")?;
            optional_object("arguments")
        }
        "resources/read" => string("uri"),
        "initialize" => string("protocolVersion"),
        "logging/setLevel" => match params.get("level").and_then(Value::as_str) {
            Some(level) if LOG_LEVELS.contains(&level) => Ok(()),
            _ => Err(format!(
                "logging/setLevel: `level` must be one of {}",
                LOG_LEVELS.join(", ")
            )),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> i32 {
        match check(body.as_bytes()) {
            Ok(_) => 0,
            Err(Refused::Rejected(Rejection::ParseError(_))) => -32700,
            Err(Refused::Rejected(Rejection::InvalidRequest(_))) => -32600,
            Err(Refused::InvalidParams { .. }) => -32602,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_body_gets_its_code() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let cases: &[(&str, i32)] = &[
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, 0),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                0,
            ),
            (r#"{"jsonrpc":"2.0","id":"a","result":{}}"#, 0),
            ("{not json", -32700),
            ("\"\\ud800\"", -32700),
            (&deep, -32700),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, -32600),
            (r#"{"id":1,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
            ("42", -32600),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
                -32600,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1}"#, -32600),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"chat","arguments":"str"}}"#,
                -32602,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"loud"}}"#,
                -32602,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"notice"}}"#,
                0,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(code(body), *want, "{body}");
        }
        let invalid_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffng\"}";
        assert!(matches!(
            check(invalid_utf8),
            Err(Refused::Rejected(Rejection::ParseError(_)))
        ));
    }
}
