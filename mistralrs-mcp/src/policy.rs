//! `[tool_forwarding.security]`: which forwarded names a caller may see and call.
//!
//! Deny wins: a name must pass the allowed namespaces, must not be blocked, and
//! must pass the caller's key scope. Names are compared exactly, as
//! [`crate::names::Namespacing::parse`] split them; a call is also only ever
//! routed to a tool its upstream listed under exactly that name, so an altered
//! spelling of a blocked tool matches nothing rather than slipping through.

use std::collections::BTreeSet;

use crate::config::SecurityConfig;
use crate::scope::CallerScope;

/// The global part of the policy; the per-caller part is the [`CallerScope`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    allowed_namespaces: Option<BTreeSet<String>>,
    blocked_tools: BTreeSet<String>,
}

impl Policy {
    pub(crate) fn new(config: &SecurityConfig) -> Self {
        Self {
            allowed_namespaces: config
                .allowed_namespaces
                .as_ref()
                .map(|n| n.iter().cloned().collect()),
            blocked_tools: config.blocked_tools.iter().cloned().collect(),
        }
    }

    /// Whether `caller` may see anything of `namespace` (prompts, resources).
    pub(crate) fn allows_namespace(&self, caller: &CallerScope, namespace: &str) -> bool {
        self.allowed_namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.contains(namespace))
            && caller.allows_namespace(namespace)
    }

    /// Whether `caller` may see and call the forwarded tool `name` of `namespace`.
    pub(crate) fn allows_tool(&self, caller: &CallerScope, namespace: &str, name: &str) -> bool {
        self.allows_namespace(caller, namespace)
            && !self.blocked_tools.contains(name)
            && caller.allows_tool(namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyScope;

    fn policy() -> Policy {
        Policy::new(&SecurityConfig {
            allowed_namespaces: Some(vec!["fs".into(), "web".into()]),
            blocked_tools: vec!["fs__write_file".into()],
            ..SecurityConfig::default()
        })
    }

    #[test]
    fn deny_wins_over_every_allow() {
        let p = policy();
        let anyone = CallerScope::unscoped();
        assert!(p.allows_tool(&anyone, "fs", "fs__read_file"));
        assert!(!p.allows_tool(&anyone, "fs", "fs__write_file"));
        assert!(!p.allows_tool(&anyone, "other", "other__x"));
        // A scope naming the blocked tool still cannot use it.
        let scoped = CallerScope::from_config(
            0,
            &KeyScope {
                key_env: "K".into(),
                namespaces: Some(vec!["fs".into(), "other".into()]),
                tools: Some(vec!["fs__write_file".into(), "fs__read_file".into()]),
            },
        );
        assert!(!p.allows_tool(&scoped, "fs", "fs__write_file"));
        assert!(p.allows_tool(&scoped, "fs", "fs__read_file"));
        assert!(!p.allows_tool(&scoped, "fs", "fs__list_directory"));
        assert!(
            !p.allows_namespace(&scoped, "other"),
            "not globally allowed"
        );
        assert!(
            !p.allows_namespace(&scoped, "web"),
            "not in the key's scope"
        );
    }

    #[test]
    fn names_match_exactly() {
        let p = policy();
        let anyone = CallerScope::unscoped();
        // Altered spellings are not the blocked name, and not any listed tool
        // either: the forwarder refuses them as unknown.
        assert!(p.allows_tool(&anyone, "fs", "fs__Write_File"));
        assert!(!p.allows_tool(&anyone, "FS", "FS__write_file"));
    }
}
