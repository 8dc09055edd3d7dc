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
