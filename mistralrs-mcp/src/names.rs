//! Forwarded names: `<server><separator><tool>`, and the one way to read them back.
//!
//! Every check on a forwarded name (listing, policy, routing, cache) goes through
//! [`Namespacing::parse`], which splits at the *first* separator. A server name is
//! accepted only if that split gives it back for any tool name, so two different
//! (server, tool) pairs can never print as the same name, and a name altered by
//! case, extra separators or look-alike characters parses to a pair that matches
//! nothing.

/// Characters the MCP specification allows in tool names.
fn is_mcp_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// How server and tool names are joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespacing {
    separator: String,
}

impl Namespacing {
    /// A separator; an error when it is empty. A separator outside the MCP
    /// name alphabet (`::`) works with this server but is warned about: OpenAI
    /// and Anthropic APIs reject such tool names.
    pub fn new(separator: &str) -> crate::Result<Self> {
        if separator.is_empty() {
            return Err(crate::Error::Config(
                "`tool_forwarding.namespace_separator` must not be empty".into(),
            ));
        }
        Ok(Self {
            separator: separator.to_owned(),
        })
    }

    /// Whether clients of the OpenAI or Anthropic APIs would reject the separator.
    pub fn separator_is_portable(&self) -> bool {
        self.separator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    /// The separator.
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// Accepts a server name if [`Self::parse`] gives it back from any
    /// forwarded name: it must not contain the separator, nor end with the
    /// start of one (`a_` with `__` would read `a___x` as server `a`).
    pub fn check_server_name(&self, server: &str) -> crate::Result<()> {
        if server.is_empty() || !server.chars().all(is_mcp_name_char) {
            return Err(crate::Error::Config(format!(
                "server name `{server}` must be 1 or more of A-Z a-z 0-9 _ - ."
            )));
        }
        let joined = format!("{server}{}", self.separator);
        match joined.find(&self.separator) {
            Some(at) if at == server.len() => Ok(()),
            _ => Err(crate::Error::Config(format!(
                "server name `{server}` contains or runs into the separator `{}`: \
                 `{}` would not read back as server `{server}`",
                self.separator,
                self.join(server, "tool")
            ))),
        }
    }

    /// `<server><separator><tool>`.
    pub fn join(&self, server: &str, tool: &str) -> String {
        format!("{server}{}{tool}", self.separator)
    }

    /// `(server, tool)`, split at the first separator; `None` when there is none
    /// or either side is empty.
    pub fn parse<'a>(&self, name: &'a str) -> Option<(&'a str, &'a str)> {
        let (server, tool) = name.split_once(&self.separator)?;
        (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespacing {
        Namespacing::new("__").unwrap()
    }

    #[test]
    fn join_and_parse_round_trip() {
        let ns = ns();
        let name = ns.join("filesystem", "read_file");
        assert_eq!(name, "filesystem__read_file");
        assert_eq!(ns.parse(&name), Some(("filesystem", "read_file")));
        // A tool name may itself hold the separator: only the first one splits.
        assert_eq!(ns.parse("fs__a__b"), Some(("fs", "a__b")));
        assert_eq!(ns.parse("fs__"), None);
        assert_eq!(ns.parse("__x"), None);
        assert_eq!(ns.parse("plain"), None);
    }

    #[test]
    fn server_names_that_would_not_read_back_are_refused() {
        let ns = ns();
        assert!(ns.check_server_name("my_fs").is_ok());
        assert!(ns.check_server_name("everything-2").is_ok());
        let err = ns.check_server_name("a__b").unwrap_err().to_string();
        assert!(err.contains("`a__b`"), "{err}");
        // `a_` + `__` + `x` = `a___x`, which reads as server `a`.
        assert!(ns.check_server_name("a_").is_err());
        assert!(ns.check_server_name("").is_err());
        assert!(ns.check_server_name("white space").is_err());
        let colons = Namespacing::new("::").unwrap();
        assert!(colons.check_server_name("a_").is_ok());
        assert!(colons.check_server_name("a:").is_err());
    }

    #[test]
    fn only_portable_separators_pass_without_warning() {
        assert!(ns().separator_is_portable());
        assert!(Namespacing::new("-").unwrap().separator_is_portable());
        assert!(!Namespacing::new("::").unwrap().separator_is_portable());
        assert!(!Namespacing::new(".").unwrap().separator_is_portable());
        assert!(Namespacing::new("").is_err());
    }
}
