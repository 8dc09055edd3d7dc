//! The `[mcp_client]` and `[tool_forwarding]` sections of `mistralrs.toml`.
//!
//! They live here, beside the code that reads them, and the server's config file
//! embeds them. Unknown keys are errors, as everywhere in the file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Environment variable with extra API keys of the MCP endpoint, comma-separated.
pub const API_KEYS_ENV: &str = "MISTRALRS_MCP_API_KEYS";

/// `[mcp_client]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct McpClientConfig {
    /// Connect to the servers below. Default false.
    pub enabled: bool,
    /// `[[mcp_client.servers]]`.
    pub servers: Vec<McpServerConfig>,
}

/// One upstream MCP server: a child process (`command`) or a URL.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct McpServerConfig {
    /// Namespace of its tools (`<name>__<tool>`).
    pub name: String,
    /// Program to start, spoken to over stdio.
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables for it.
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP endpoint, instead of a command.
    pub url: Option<String>,
    /// Extra HTTP headers.
    pub headers: BTreeMap<String, String>,
    /// Environment variable holding a bearer token for `url`.
    pub bearer_token_env: Option<String>,
    /// PEM file of root certificates trusted for an `https` `url` besides the
    /// system's (a private CA, a self-signed upstream).
    pub ca_file: Option<PathBuf>,
    /// Seconds to connect and per call. Default 30.
    pub timeout_secs: Option<u64>,
    /// Who answers this upstream's `sampling/createMessage`: `client` (the
    /// client whose call it is, when it declared sampling, else a served
    /// model; the default), `local` (always a served model) or `deny` (the
    /// capability is not declared).
    pub sampling: SamplingPolicy,
    /// This upstream's `elicitation/create`: `client` (asked of the client
    /// whose call it is, declined when it can't answer; the default) or `deny`
    /// (not declared).
    pub elicitation: RelayPolicy,
    /// This upstream's `roots/list`: `client` (the roots of the client whose
    /// call it is, none when it has none; the default) or `deny` (not declared).
    pub roots: RelayPolicy,
    /// `shared` (one upstream session for all clients; the default) or
    /// `per_client` (calls of each client session go through an upstream
    /// session of its own, opened at its first call and closed with it).
    pub session_mode: SessionMode,
    /// Upstream sessions `per_client` mode holds at most at once. Default 64.
    pub max_upstream_sessions: Option<usize>,
}

/// `[[mcp_client.servers]] session_mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// One upstream session, opened at start-up, for every client.
    #[default]
    Shared,
    /// One upstream session per client session (one child process per client
    /// for a `command`), besides the shared one that lists what it offers.
    PerClient,
}

/// `[[mcp_client.servers]] sampling`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SamplingPolicy {
    /// The calling client answers when it declared sampling, else a served model.
    #[default]
    Client,
    /// Answered by one of the served models.
    Local,
    /// Not offered: the upstream sees no `sampling` capability.
    Deny,
}

/// `[[mcp_client.servers]] elicitation` and `roots`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RelayPolicy {
    /// Relayed to the client whose call is in flight, when it declared the capability.
    #[default]
    Client,
    /// Not offered: the upstream does not see the capability.
    Deny,
}

/// `[tool_forwarding]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolForwardingConfig {
    /// Re-export upstream tools. Default true (when upstreams are configured).
    pub enabled: bool,
    /// How forwarded tools and prompts are named: `server_prefix` (default),
    /// `none` or `conditional`.
    pub namespace_strategy: NamespaceStrategy,
    /// Between server and tool name. Default `__`: valid in MCP, OpenAI and
    /// Anthropic tool names alike.
    pub namespace_separator: String,
    /// `[tool_forwarding.security]`.
    pub security: SecurityConfig,
    /// `[tool_forwarding.cache]`.
    pub cache: CacheConfig,
}

impl Default for ToolForwardingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            namespace_strategy: NamespaceStrategy::ServerPrefix,
            namespace_separator: "__".into(),
            security: SecurityConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

/// `[tool_forwarding] namespace_strategy`: what clients see for forwarded
/// tools and prompts (the forwarder's `name_table`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceStrategy {
    /// `<server><separator><name>` for everything.
    #[default]
    ServerPrefix,
    /// Upstream names unchanged; collisions refused.
    None,
    /// Upstream names unchanged unless they collide.
    Conditional,
}

/// `[tool_forwarding.security]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Namespaces that may be listed and called; unset means all.
    pub allowed_namespaces: Option<Vec<String>>,
    /// Forwarded tool names that are never listed nor callable.
    pub blocked_tools: Vec<String>,
    /// Per-key limits: `[[tool_forwarding.security.key_scopes]]`.
    pub key_scopes: Vec<KeyScope>,
    /// Largest tool arguments, as JSON bytes, forwarded upstream. Default 1 MiB:
    /// well above any real tool call, well below what could hurt an upstream.
    pub max_argument_bytes: Option<usize>,
}

/// What one API key may see and call.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeyScope {
    /// Environment variable holding the key (keys stay out of the file).
    pub key_env: String,
    /// Namespaces the key may use; unset means all.
    pub namespaces: Option<Vec<String>>,
    /// Tools the key may use; unset means all in its namespaces.
    pub tools: Option<Vec<String>>,
}

/// `[tool_forwarding.cache]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Default false: only tools listed below are ever cached.
    pub enabled: bool,
    /// Seconds a result stays fresh. Default 60.
    pub ttl_seconds: u64,
    /// Most cached results. Default 1000.
    pub max_size: u64,
    /// Tools whose results may be replayed (no side effects!).
    pub cacheable_tools: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl_seconds: 60,
            max_size: 1000,
            cacheable_tools: Vec::new(),
        }
    }
}

/// Environment variables that hold secrets of this server (API keys, scoped
/// keys, upstream bearer tokens): removed from the environment of upstream
/// child processes, which could otherwise read them (server-everything even
/// has a `get-env` tool).
pub fn secret_env_vars(client: &McpClientConfig, forwarding: &ToolForwardingConfig) -> Vec<String> {
    let mut vars = vec![API_KEYS_ENV.to_owned()];
    vars.extend(
        forwarding
            .security
            .key_scopes
            .iter()
            .map(|s| s.key_env.clone()),
    );
    vars.extend(
        client
            .servers
            .iter()
            .filter_map(|s| s.bearer_token_env.clone()),
    );
    vars
}

impl ToolForwardingConfig {
    /// Reads tool names written `server::tool` in `blocked_tools`,
    /// `cacheable_tools` and key scopes' `tools` as `server<separator>tool` (the
    /// spelling of older templates). Returns a warning per name rewritten,
    /// showing the spelling to use.
    pub fn respell_tool_names(&mut self) -> Vec<String> {
        let separator = self.namespace_separator.clone();
        if separator == "::" {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        let mut respell = |key: String, names: &mut Vec<String>| {
            for name in names.iter_mut() {
                if let Some((server, tool)) = name.split_once("::") {
                    let spelled = format!("{server}{separator}{tool}");
                    warnings.push(format!(
                        "`{key}`: `{name}` is read as `{spelled}`; write it that way (the separator is `{separator}`)"
                    ));
                    *name = spelled;
                }
            }
        };
        respell(
            "tool_forwarding.security.blocked_tools".into(),
            &mut self.security.blocked_tools,
        );
        respell(
            "tool_forwarding.cache.cacheable_tools".into(),
            &mut self.cache.cacheable_tools,
        );
        for (i, scope) in self.security.key_scopes.iter_mut().enumerate() {
            if let Some(tools) = &mut scope.tools {
                respell(
                    format!("tool_forwarding.security.key_scopes[{i}].tools"),
                    tools,
                );
            }
        }
        warnings
    }
}

impl McpClientConfig {
    /// The configured upstreams when the client is enabled, else none.
    pub fn active_servers(&self) -> &[McpServerConfig] {
        if self.enabled { &self.servers } else { &[] }
    }
}

/// Checks what serde cannot: each server is a command or a URL, names are
/// unique and parse back from `<server><separator><tool>`, policy names are
/// well-formed. The message names the key.
pub fn validate(client: &McpClientConfig, forwarding: &ToolForwardingConfig) -> crate::Result<()> {
    check(client, forwarding).map_err(crate::Error::Config)
}

/// [`validate`], with the message as text.
fn check(client: &McpClientConfig, forwarding: &ToolForwardingConfig) -> Result<(), String> {
    let names = crate::names::Namespacing::new(&forwarding.namespace_separator)
        .map_err(|e| e.to_string())?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, server) in client.servers.iter().enumerate() {
        if server.name.is_empty() {
            return Err(format!("`mcp_client.servers[{i}].name` is required"));
        }
        if server.command.is_some() == server.url.is_some() {
            return Err(format!(
                "`mcp_client.servers[{i}]` ({}) needs exactly one of `command` and `url`",
                server.name
            ));
        }
        if !seen.insert(server.name.as_str()) {
            return Err(format!(
                "`mcp_client.servers[{i}].name`: two servers are named `{}`; their tools would collide",
                server.name
            ));
        }
        names
            .check_server_name(&server.name)
            .map_err(|e| format!("`mcp_client.servers[{i}].name`: {e}"))?;
        if server.timeout_secs == Some(0) {
            return Err(format!(
                "`mcp_client.servers[{i}].timeout_secs` must be positive"
            ));
        }
        if server.ca_file.is_some() && server.url.is_none() {
            return Err(format!(
                "`mcp_client.servers[{i}].ca_file` applies only to a `url`"
            ));
        }
        match (server.max_upstream_sessions, server.session_mode) {
            (Some(0), _) => {
                return Err(format!(
                    "`mcp_client.servers[{i}].max_upstream_sessions` must be positive"
                ));
            }
            (Some(_), SessionMode::Shared) => {
                return Err(format!(
                    "`mcp_client.servers[{i}].max_upstream_sessions` applies only to `session_mode = \"per_client\"`"
                ));
            }
            _ => {}
        }
    }
    let security = &forwarding.security;
    for (i, tool) in security.blocked_tools.iter().enumerate() {
        if names.parse(tool).is_none() {
            return Err(format!(
                "`tool_forwarding.security.blocked_tools[{i}]`: `{tool}` is not `<server>{}<tool>`",
                names.separator()
            ));
        }
    }
    for (i, scope) in security.key_scopes.iter().enumerate() {
        if scope.key_env.is_empty() {
            return Err(format!(
                "`tool_forwarding.security.key_scopes[{i}].key_env` is required"
            ));
        }
    }
    if security.max_argument_bytes == Some(0) {
        return Err("`tool_forwarding.security.max_argument_bytes` must be positive".into());
    }
    if forwarding.cache.enabled && forwarding.cache.ttl_seconds == 0 {
        return Err("`tool_forwarding.cache.ttl_seconds` must be positive".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(McpClientConfig, ToolForwardingConfig), String> {
        #[derive(Deserialize)]
        struct Sections {
            #[serde(default)]
            mcp_client: McpClientConfig,
            #[serde(default)]
            tool_forwarding: ToolForwardingConfig,
        }
        let sections: Sections = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&sections.mcp_client, &sections.tool_forwarding).map_err(|e| e.to_string())?;
        Ok((sections.mcp_client, sections.tool_forwarding))
    }

    #[test]
    fn errors_have_kinds_callers_can_match() {
        let bad = McpClientConfig {
            enabled: true,
            servers: vec![McpServerConfig {
                name: "x".into(),
                ..McpServerConfig::default()
            }],
        };
        assert!(matches!(
            validate(&bad, &ToolForwardingConfig::default()),
            Err(crate::Error::Config(_))
        ));
        assert!(matches!(
            crate::names::Namespacing::new(""),
            Err(crate::Error::Config(_))
        ));
    }

    #[test]
    fn names_that_would_collide_are_errors_naming_them() {
        let duplicate = "[[mcp_client.servers]]\nname = \"fs\"\ncommand = \"a\"\n\
                         [[mcp_client.servers]]\nname = \"fs\"\nurl = \"http://127.0.0.1:1/mcp\"\n";
        let err = parse(duplicate).unwrap_err();
        assert!(err.contains("servers[1]") && err.contains("`fs`"), "{err}");
        let holds_separator = "[[mcp_client.servers]]\nname = \"my__fs\"\ncommand = \"a\"\n";
        let err = parse(holds_separator).unwrap_err();
        assert!(
            err.contains("`my__fs`") && err.contains("separator"),
            "{err}"
        );
        let runs_into_it = "[[mcp_client.servers]]\nname = \"fs_\"\ncommand = \"a\"\n";
        assert!(parse(runs_into_it).is_err());
        let other_separator =
            format!("{runs_into_it}[tool_forwarding]\nnamespace_separator = \"::\"\n");
        assert!(parse(&other_separator).is_ok());
    }

    #[test]
    fn each_key_is_checked() {
        for (text, key) in [
            ("[[mcp_client.servers]]\nname = \"a\"", "command"),
            ("[[mcp_client.servers]]\ncommand = \"a\"", "name"),
            (
                "[[mcp_client.servers]]\nname = \"a\"\ncommand = \"x\"\ntimeout_secs = 0",
                "timeout_secs",
            ),
            (
                "[[mcp_client.servers]]\nname = \"a\"\ncommand = \"x\"\nca_file = \"ca.pem\"",
                "ca_file",
            ),
            (
                "[[mcp_client.servers]]\nname = \"a\"\ncommand = \"x\"\nsession_mode = \"per_client\"\nmax_upstream_sessions = 0",
                "max_upstream_sessions",
            ),
            (
                "[[mcp_client.servers]]\nname = \"a\"\ncommand = \"x\"\nmax_upstream_sessions = 4",
                "per_client",
            ),
            (
                "[tool_forwarding]\nnamespace_strategy = \"flat\"",
                "namespace_strategy",
            ),
            (
                "[tool_forwarding]\nnamespace_separator = \"\"",
                "namespace_separator",
            ),
            (
                "[tool_forwarding.security]\nblocked_tools = [\"nosep\"]",
                "blocked_tools[0]",
            ),
            (
                "[[tool_forwarding.security.key_scopes]]\nnamespaces = [\"a\"]",
                "key_env",
            ),
            (
                "[tool_forwarding.security]\nmax_argument_bytes = 0",
                "max_argument_bytes",
            ),
            (
                "[tool_forwarding.cache]\nenabled = true\nttl_seconds = 0",
                "ttl_seconds",
            ),
            ("[tool_forwarding.cache]\nenabled = true\nttl = 5", "ttl"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }
}
