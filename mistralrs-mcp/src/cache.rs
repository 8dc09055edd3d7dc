//! `[tool_forwarding.cache]`: results of tools declared cacheable, on moka.
//!
//! Opt-in per tool, because a proxy must never replay a side-effecting call.
//! The key is the caller's scope, the forwarded tool name and the arguments as
//! canonical JSON (object keys sorted), so the same call spelled with keys in
//! another order hits, and two scopes never share an entry. Error results are
//! never stored.

use std::collections::BTreeSet;
use std::time::Duration;

use rmcp::model::CallToolResult;
use serde_json::Value;

use crate::config::CacheConfig;

/// Cached results by call.
#[derive(Debug)]
pub(crate) struct ToolCache {
    entries: moka::future::Cache<String, CallToolResult>,
    cacheable: BTreeSet<String>,
}

impl ToolCache {
    /// `None` when caching is off or no tool is cacheable.
    pub(crate) fn new(config: &CacheConfig) -> Option<Self> {
        if !config.enabled || config.cacheable_tools.is_empty() {
            return None;
        }
        Some(Self {
            entries: moka::future::Cache::builder()
                .max_capacity(config.max_size)
                .time_to_live(Duration::from_secs(config.ttl_seconds))
                .build(),
            cacheable: config.cacheable_tools.iter().cloned().collect(),
        })
    }

    /// The cache key of a call, when the tool is cacheable.
    pub(crate) fn key(&self, scope_id: usize, tool: &str, arguments: &Value) -> Option<String> {
        self.cacheable.contains(tool).then(|| {
            let mut key = format!("{scope_id}\u{0}{tool}\u{0}");
            write_canonical(&mut key, arguments);
            key
        })
    }

    pub(crate) async fn get(&self, key: &str) -> Option<CallToolResult> {
        self.entries.get(key).await
    }

    /// Stores a successful result; error results are dropped.
    pub(crate) async fn insert(&self, key: String, result: &CallToolResult) {
        if result.is_error != Some(true) {
            self.entries.insert(key, result.clone()).await;
        }
    }
}

/// JSON with object keys in sorted order, whatever order they arrived in.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(out, &map[key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock;
    use serde_json::json;

    fn cache() -> ToolCache {
        ToolCache::new(&CacheConfig {
            enabled: true,
            ttl_seconds: 60,
            max_size: 10,
            cacheable_tools: vec!["fs__read_file".into()],
        })
        .unwrap()
    }

    fn args(value: Value) -> Value {
        assert!(value.is_object(), "test arguments are objects");
        value
    }

    #[test]
    fn keys_ignore_key_order_but_not_scope_or_values() {
        let c = cache();
        let a = c.key(
            0,
            "fs__read_file",
            &args(json!({"path": "/a", "opts": {"x": 1, "y": [2, {"b": 1, "a": 2}]}})),
        );
        let b = c.key(
            0,
            "fs__read_file",
            &args(json!({"opts": {"y": [2, {"a": 2, "b": 1}], "x": 1}, "path": "/a"})),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            c.key(
                1,
                "fs__read_file",
                &args(json!({"path": "/a", "opts": {"x": 1, "y": [2, {"b": 1, "a": 2}]}}))
            )
        );
        assert_ne!(a, c.key(0, "fs__read_file", &args(json!({"path": "/b"}))));
        assert_eq!(
            c.key(0, "fs__write_file", &args(json!({}))),
            None,
            "not cacheable"
        );
    }

    #[tokio::test]
    async fn errors_are_never_stored() {
        let c = cache();
        c.insert(
            "e".into(),
            &CallToolResult::error(vec![ContentBlock::text("no")]),
        )
        .await;
        assert!(c.get("e").await.is_none());
        c.insert(
            "ok".into(),
            &CallToolResult::success(vec![ContentBlock::text("yes")]),
        )
        .await;
        assert!(c.get("ok").await.is_some());
    }

    #[test]
    fn off_unless_enabled_with_cacheable_tools() {
        assert!(ToolCache::new(&CacheConfig::default()).is_none());
        let no_tools = CacheConfig {
            enabled: true,
            ..CacheConfig::default()
        };
        assert!(ToolCache::new(&no_tools).is_none());
    }
}
