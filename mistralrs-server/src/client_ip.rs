//! The client's address behind load balancers: `trusted_proxies` lists the
//! addresses (or networks) of proxies in front of the server. A connection from
//! one of them is not held to `max_connections_per_ip` (it carries many clients),
//! and the MCP port takes the client's address from `X-Forwarded-For`: the
//! right-most entry that is not itself a trusted proxy, since each proxy appends
//! the address it saw and only the entries trusted proxies wrote can be believed.
//! From any other peer the header is ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The address per-IP limits count a request against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The `trusted_proxies` setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses each entry: an address (`10.0.0.5`) or a network (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("`trusted_proxies`: `{entry}` is not an address or a network")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted proxy and
    /// `X-Forwarded-For` names someone else (an unreadable entry stops the walk
    /// at the proxy that passed it on).
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        if !self.contains(peer) {
            return client;
        }
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for entry in entries.into_iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(ip) if self.contains(ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
        client
    }
}

/// Middleware: puts the request's [`ClientIp`] into its extensions.
pub async fn resolve(
    axum::extract::State(proxies): axum::extract::State<std::sync::Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let client = proxies.client_of(peer, request.headers());
        request.extensions_mut().insert(ClientIp(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_entry_from_a_trusted_peer() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let nginx = ip("127.0.0.1");
        // A client's own X-Forwarded-For (spoofed) is left of what nginx appended.
        let spoofed = headers(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(proxies.client_of(nginx, &spoofed), ip("203.0.113.7"));
        // Two proxies: the inner one (10.1.2.3) is trusted too; headers may repeat.
        let chained = headers(&["203.0.113.7", "10.1.2.3"]);
        assert_eq!(proxies.client_of(nginx, &chained), ip("203.0.113.7"));
        // From an untrusted peer the header means nothing.
        assert_eq!(
            proxies.client_of(ip("198.51.100.1"), &spoofed),
            ip("198.51.100.1")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(proxies.client_of(nginx, &HeaderMap::new()), nginx);
        assert_eq!(proxies.client_of(nginx, &headers(&["not-an-ip"])), nginx);
        // IPv4-mapped IPv6 peers match IPv4 entries.
        assert!(proxies.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8".into(), "nginx".into()]).unwrap_err();
        assert!(err.contains("`nginx`"), "{err}");
        assert!(TrustedProxies::parse(&["::1".into(), "fd00::/8".into()]).is_ok());
    }
}
