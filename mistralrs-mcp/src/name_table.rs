//! The names clients see for forwarded tools and prompts, by
//! `[tool_forwarding] namespace_strategy`:
//!
//! - `server_prefix` (default): every name is `<server><separator><name>`;
//! - `none`: names as the upstream gives them. A name two upstreams offer, or a
//!   name the server answers itself (`chat`), is a start-up error; when one
//!   appears later, the upstream that had the name keeps it and the newcomer's
//!   item is left out (warned, counted in `mcp_forwarded_names_left_out`, named
//!   on `/health`);
//! - `conditional`: plain names, except those two upstreams offer (or `chat`),
//!   which get the prefix, as agentgateway does. A name can therefore change
//!   when another upstream adds an item of the same name.
//!
//! Whatever the strategy, policy, cache and metrics know an item by its
//! prefixed (canonical) name, which never changes.

use std::collections::{BTreeMap, HashMap};

use crate::config::NamespaceStrategy;
use crate::names::Namespacing;

/// Tool names the server answers itself (the served models' `chat`): never
/// given to an upstream's item without its prefix.
const LOCAL_TOOL_NAMES: [&str; 1] = ["chat"];

/// An item's owner and its name there.
pub(crate) type Route = (String, String);

/// One kind of item (tools or prompts): exposed name -> owner.
#[derive(Debug, Default, Clone)]
struct Names {
    routes: HashMap<String, Route>,
    exposed: HashMap<Route, String>,
}

/// An item a collision kept out of the listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LeftOut {
    /// `tool` or `prompt`.
    pub(crate) kind: &'static str,
    pub(crate) server: String,
    pub(crate) name: String,
    /// Who has the name instead, or why nobody does.
    pub(crate) reason: String,
}

/// The names of every connected upstream's items at one moment.
#[derive(Debug, Default)]
pub(crate) struct NameTable {
    /// The upstreams' change counter this table was built at.
    pub(crate) generation: u64,
    tools: Names,
    prompts: Names,
    pub(crate) left_out: Vec<LeftOut>,
}

/// The items of one upstream, by name: `(server, tool names, prompt names)`.
pub(crate) type Offer<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>);

impl NameTable {
    /// A table no upstream's items are in yet, to be built on first use.
    pub(crate) fn unbuilt() -> Self {
        Self {
            generation: u64::MAX,
            ..Self::default()
        }
    }

    /// Names for `offers` (in server order) under a table-building strategy
    /// (`none` or `conditional`); `previous` decides who keeps a name under `none`.
    pub(crate) fn build(
        strategy: NamespaceStrategy,
        names: &Namespacing,
        offers: &[Offer<'_>],
        previous: &NameTable,
        generation: u64,
    ) -> Self {
        let mut left_out = Vec::new();
        let tool_offers: Vec<(&str, &str)> = offers
            .iter()
            .flat_map(|(server, tools, _)| tools.iter().map(move |t| (*server, *t)))
            .collect();
        let prompt_offers: Vec<(&str, &str)> = offers
            .iter()
            .flat_map(|(server, _, prompts)| prompts.iter().map(move |p| (*server, *p)))
            .collect();
        let tools = assign(
            strategy,
            names,
            "tool",
            &tool_offers,
            &LOCAL_TOOL_NAMES,
            &previous.tools,
            &mut left_out,
        );
        let prompts = assign(
            strategy,
            names,
            "prompt",
            &prompt_offers,
            &[],
            &previous.prompts,
            &mut left_out,
        );
        left_out.sort();
        Self {
            generation,
            tools,
            prompts,
            left_out,
        }
    }

    pub(crate) fn tool(&self, exposed: &str) -> Option<&Route> {
        self.tools.routes.get(exposed)
    }

    pub(crate) fn prompt(&self, exposed: &str) -> Option<&Route> {
        self.prompts.routes.get(exposed)
    }

    pub(crate) fn tool_name(&self, server: &str, tool: &str) -> Option<&str> {
        self.tools
            .exposed
            .get(&(server.to_owned(), tool.to_owned()))
            .map(String::as_str)
    }

    pub(crate) fn prompt_name(&self, server: &str, prompt: &str) -> Option<&str> {
        self.prompts
            .exposed
            .get(&(server.to_owned(), prompt.to_owned()))
            .map(String::as_str)
    }
}

/// Exposed names for one kind of item.
fn assign(
    strategy: NamespaceStrategy,
    names: &Namespacing,
    kind: &'static str,
    offers: &[(&str, &str)],
    reserved: &[&str],
    previous: &Names,
    left_out: &mut Vec<LeftOut>,
) -> Names {
    let mut claimants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (server, name) in offers {
        claimants.entry(name).or_default().push(server);
    }
    let mut out = Names::default();
    let mut add = |exposed: String, server: &str, name: &str| {
        let route = (server.to_owned(), name.to_owned());
        out.exposed.insert(route.clone(), exposed.clone());
        out.routes.insert(exposed, route);
    };
    match strategy {
        NamespaceStrategy::ServerPrefix => {
            for (server, name) in offers {
                add(names.join(server, name), server, name);
            }
        }
        NamespaceStrategy::None => {
            for (name, servers) in &claimants {
                let keeper = if reserved.contains(name) {
                    None
                } else if servers.len() == 1 {
                    Some(servers[0])
                } else {
                    // The upstream that had the name keeps it; a tie among
                    // newcomers leaves the name to nobody.
                    previous
                        .routes
                        .get(*name)
                        .map(|(owner, _)| owner.as_str())
                        .filter(|owner| servers.contains(owner))
                };
                for server in servers {
                    if Some(*server) == keeper {
                        add((*name).to_owned(), server, name);
                        continue;
                    }
                    let reason = match keeper {
                        Some(owner) => format!("`{owner}` has a {kind} of that name"),
                        None if reserved.contains(name) => "the server's own tool".to_owned(),
                        None => format!("offered by {}", join_names(servers)),
                    };
                    left_out.push(LeftOut {
                        kind,
                        server: (*server).to_owned(),
                        name: (*name).to_owned(),
                        reason,
                    });
                }
            }
        }
        NamespaceStrategy::Conditional => {
            let mut prefixed: Vec<(&str, &str)> = Vec::new();
            let mut plain: Vec<(&str, &str)> = Vec::new();
            for (name, servers) in &claimants {
                let target = if servers.len() > 1 || reserved.contains(name) {
                    &mut prefixed
                } else {
                    &mut plain
                };
                target.extend(servers.iter().map(|s| (*s, *name)));
            }
            // A plain name that reads like another item's prefixed one is
            // prefixed too, so every exposed name has one owner.
            loop {
                let taken: std::collections::HashSet<String> =
                    prefixed.iter().map(|(s, n)| names.join(s, n)).collect();
                let (clash, keep): (Vec<_>, Vec<_>) =
                    plain.into_iter().partition(|(_, n)| taken.contains(*n));
                plain = keep;
                if clash.is_empty() {
                    break;
                }
                prefixed.extend(clash);
            }
            for (server, name) in plain {
                add(name.to_owned(), server, name);
            }
            for (server, name) in prefixed {
                add(names.join(server, name), server, name);
            }
        }
    }
    out
}

fn join_names(servers: &[&str]) -> String {
    servers
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespacing {
        Namespacing::new("__").unwrap()
    }

    fn table(strategy: NamespaceStrategy, offers: &[Offer<'_>], previous: &NameTable) -> NameTable {
        NameTable::build(strategy, &ns(), offers, previous, 1)
    }

    fn route(server: &str, name: &str) -> Option<Route> {
        Some((server.to_owned(), name.to_owned()))
    }

    #[test]
    fn none_keeps_upstream_names_and_leaves_out_collisions() {
        let offers = [
            ("a", vec!["echo", "add", "chat"], vec!["greet"]),
            ("b", vec!["echo", "read"], vec!["greet2"]),
        ];
        let t = table(NamespaceStrategy::None, &offers, &NameTable::default());
        assert_eq!(t.tool("add").cloned(), route("a", "add"));
        assert_eq!(t.tool("read").cloned(), route("b", "read"));
        assert_eq!(t.prompt("greet").cloned(), route("a", "greet"));
        assert_eq!(t.tool("echo"), None, "two newcomers: nobody gets it");
        assert_eq!(t.tool("chat"), None, "the server's own tool");
        assert_eq!(t.tool("a__add"), None, "no prefixed names");
        let out: Vec<_> = t
            .left_out
            .iter()
            .map(|l| (l.server.as_str(), l.name.as_str()))
            .collect();
        assert_eq!(out, [("a", "chat"), ("a", "echo"), ("b", "echo")]);
        assert!(
            t.left_out[1].reason.contains("`a` and `b`"),
            "{:?}",
            t.left_out
        );

        // Later `b` adds `add`: `a` had it and keeps it.
        let offers = [
            ("a", vec!["add"], vec![]),
            ("b", vec!["add", "read"], vec![]),
        ];
        let before = table(
            NamespaceStrategy::None,
            &[("a", vec!["add"], vec![])],
            &NameTable::default(),
        );
        let after = table(NamespaceStrategy::None, &offers, &before);
        assert_eq!(after.tool("add").cloned(), route("a", "add"));
        assert_eq!(after.tool_name("b", "add"), None);
        assert_eq!(after.left_out[0].reason, "`a` has a tool of that name");
    }

    #[test]
    fn conditional_prefixes_only_what_collides() {
        let offers = [
            ("a", vec!["echo", "add", "chat"], vec!["p"]),
            ("b", vec!["echo", "a__add"], vec!["p"]),
        ];
        let t = table(
            NamespaceStrategy::Conditional,
            &offers,
            &NameTable::default(),
        );
        assert_eq!(t.tool("add").cloned(), route("a", "add"));
        assert_eq!(t.tool("a__echo").cloned(), route("a", "echo"));
        assert_eq!(t.tool("b__echo").cloned(), route("b", "echo"));
        assert_eq!(t.tool("a__chat").cloned(), route("a", "chat"));
        assert_eq!(t.tool("echo"), None);
        // `b`'s plain `a__add` is unique, and no prefixed name reads the same.
        assert_eq!(t.tool("a__add").cloned(), route("b", "a__add"));
        assert_eq!(t.tool_name("a", "echo"), Some("a__echo"));
        assert_eq!(t.prompt("a__p").cloned(), route("a", "p"));
        assert!(t.left_out.is_empty());

        // A plain name equal to another item's prefixed name gets its prefix too.
        let offers = [("a", vec!["x"], vec![]), ("b", vec!["x", "a__x"], vec![])];
        let t = table(
            NamespaceStrategy::Conditional,
            &offers,
            &NameTable::default(),
        );
        assert_eq!(t.tool("a__x").cloned(), route("a", "x"));
        assert_eq!(t.tool("b__a__x").cloned(), route("b", "a__x"));
        assert_eq!(t.tool("b__x").cloned(), route("b", "x"));
    }
}
