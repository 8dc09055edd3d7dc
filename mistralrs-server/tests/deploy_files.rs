//! The deployment files in `deploy/` checked without a cluster or a Docker
//! daemon (neither runs here): Kubernetes manifests against the Kubernetes
//! schemas, the compose file against the Compose specification, the files
//! against each other (`tests/python/check_deploy.py`), both mistralrs.toml
//! files through the server's own config checks, the nginx config through
//! `nginx -t`, and the Dockerfile's ports, user and health check.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mistralrs_server::config::Config;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn valid_config(text: &str, what: &str) -> Config {
    let config = Config::from_toml(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    config.validate().unwrap_or_else(|e| panic!("{what}: {e}"));
    config
}

#[test]
fn kubernetes_and_compose_files_validate_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let configmap_toml = dir.path().join("configmap.toml");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = common::run_python(
        "check_deploy.py",
        &[root.to_str().unwrap(), configmap_toml.to_str().unwrap()],
    );
    assert!(out.contains("deploy files ok"), "{out}");
    for (what, text) in [
        (
            "the ConfigMap's mistralrs.toml",
            std::fs::read_to_string(&configmap_toml).unwrap(),
        ),
        (
            "deploy/mistralrs.toml",
            std::fs::read_to_string(deploy().join("mistralrs.toml")).unwrap(),
        ),
    ] {
        let config = valid_config(&text, what);
        let rates = &config.http_mcp.rate_limit;
        assert!(
            rates.redis_url.is_some(),
            "{what}: limits shared through Redis"
        );
        assert!(
            !config.trusted_proxies.is_empty(),
            "{what}: the proxy in front is trusted"
        );
    }
}

#[test]
fn the_shipped_nginx_config_passes_nginx_t() {
    let dir = tempfile::tempdir().unwrap();
    // Compose's service names don't resolve here: the same file with loopback.
    let conf = std::fs::read_to_string(deploy().join("nginx/nginx.conf"))
        .unwrap()
        .replace("replica-1:", "127.0.0.1:")
        .replace("replica-2:", "127.0.0.2:")
        .replace("replica-3:", "127.0.0.3:")
        .replace(
            "/etc/nginx/mistralrs-locations.conf",
            deploy()
                .join("nginx/mistralrs-locations.conf")
                .to_str()
                .unwrap(),
        );
    let d = dir.path().display();
    let conf = format!("pid {d}/nginx.pid;\nerror_log {d}/error.log;\n{conf}").replace(
        "http {",
        &format!(
            "http {{\n    client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n    access_log off;"
        ),
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| Path::new(b).exists())
        .unwrap_or("nginx");
    let out = Command::new(nginx)
        .args(["-t", "-p", &d.to_string(), "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("test is successful"),
        "{stderr}"
    );
}

#[test]
fn the_dockerfile_runs_unprivileged_with_a_health_check_on_the_ports_it_serves() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let line = |prefix: &str| {
        dockerfile
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line"))
            .to_owned()
    };
    assert_eq!(line("EXPOSE"), "EXPOSE 1234 4322");
    assert_eq!(line("USER"), "USER 10001");
    assert!(dockerfile.contains("CMD curl -fsS http://127.0.0.1:1234/health"));
    let entrypoint = line("ENTRYPOINT");
    for flag in [
        "\"--port\", \"1234\"",
        "\"--http-mcp-port\", \"4322\"",
        "\"0.0.0.0\"",
    ] {
        assert!(entrypoint.contains(flag), "{entrypoint}");
    }
    // The build context leaves out what would make the image build slow or leak.
    let ignore = std::fs::read_to_string(deploy().join("../.dockerignore")).unwrap();
    for entry in ["target", "node_modules"] {
        assert!(
            ignore.lines().any(|l| l.contains(entry)),
            "{entry} not in .dockerignore"
        );
    }
}
