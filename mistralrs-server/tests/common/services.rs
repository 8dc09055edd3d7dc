//! Real services the multi-replica tests run beside the server: redis-server
//! (Debian's `redis-server`, installed by scripts/test-all), on loopback ports.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `child` listens on `port` of 127.0.0.1, for at most
/// `within`; says why not if it exits first or the time runs out.
pub fn wait_until_listening(child: &mut Child, port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "exited ({status}) before it listened on port {port}"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("did not listen on port {port} within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A redis-server on 127.0.0.1 without persistence, killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    password: String,
}

impl Redis {
    /// Starts one that asks for `password`, and waits until it answers.
    pub fn start(password: &str) -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            password: password.to_owned(),
        };
        redis.restart();
        redis
    }

    /// `redis://:password@127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port)
    }

    /// Kills it (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        self.child = Some(
            Command::new("redis-server")
                .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no", "--requirepass", &self.password])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (Debian package redis-server; scripts/test-all installs it)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command through `redis-cli`; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "-a",
                &self.password,
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx (Debian's `nginx`) in front of replicas with the shipped proxy
/// settings (`deploy/nginx/mistralrs-locations.conf`) and the routing of
/// `deploy/nginx/nginx.conf`, killed on drop. It connects to the replicas from
/// `bind`, so a test can tell its clients (127.0.0.1) from the proxy.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// One replica as nginx sees it.
pub struct Upstream {
    /// Its `--replica-id`.
    pub id: String,
    /// `host:port` of its OpenAI port.
    pub openai: String,
    /// `host:port` of its MCP port.
    pub mcp: String,
}

impl Nginx {
    /// Listens on a free port of 127.0.0.1 and routes to `replicas` as
    /// deploy/nginx/nginx.conf does (each replica's backup is the next one).
    pub fn start(replicas: &[Upstream], bind: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let locations = format!(
            "{}/../deploy/nginx/mistralrs-locations.conf",
            env!("CARGO_MANIFEST_DIR")
        );
        let servers = |addrs: Vec<&str>| {
            addrs
                .iter()
                .map(|a| format!("server {a};"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut routing = format!(
            "upstream mistralrs_openai {{ least_conn; {} keepalive 32; }}\n\
             upstream mistralrs_mcp {{ least_conn; {} keepalive 32; }}\n",
            servers(replicas.iter().map(|r| r.openai.as_str()).collect()),
            servers(replicas.iter().map(|r| r.mcp.as_str()).collect()),
        );
        let mut map =
            String::from("map $http_mcp_session_id $mcp_pool { default \"mistralrs_mcp\";\n");
        for (i, replica) in replicas.iter().enumerate() {
            let backup = &replicas[(i + 1) % replicas.len()];
            routing.push_str(&format!(
                "upstream mcp_{i} {{ server {}; server {} backup; keepalive 16; }}\n",
                replica.mcp, backup.mcp
            ));
            map.push_str(&format!("  \"~^{}\\.\" \"mcp_{i}\";\n", replica.id));
        }
        map.push_str("}\n");
        let d = dir.path().display();
        // One process: no workers to outlive a killed master, none that drops
        // root for `nobody`, who could not use the temp dir.
        let conf = format!(
            "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{routing}{map}
  server {{
    listen 127.0.0.1:{port};
    proxy_bind {bind};
    include {locations};
  }}
}}
"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let binary = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .unwrap_or("nginx");
        let mut child = Command::new(binary)
            .args(["-p", &d.to_string(), "-c", &path.display().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx; scripts/test-all installs it)");
        if let Err(why) = wait_until_listening(&mut child, port, Duration::from_secs(10)) {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx {why}: {log}");
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
