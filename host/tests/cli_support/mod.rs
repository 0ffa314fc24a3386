//! The real binary and an in-process server on `127.0.0.1:0`, shared by
//! the suites that drive the command line.

#![allow(dead_code)]

#[path = "../pg_support/mod.rs"]
mod pg_support;

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

/// The admin token of every test server.
pub const ADMIN: &str = "cli-admin-token";

/// What a run of the binary produced.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts success and parses stdout as JSON.
    pub fn json(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

pub fn stephost(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stephost"));
    cmd.args(args)
        .env_remove("STEPHOST_URL")
        .env_remove("STEPHOST_TOKEN")
        .env_remove("STEPHOST_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run stephost");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A server running on its own thread and runtime until dropped.
pub struct Server {
    pub url: String,
    pub token: String,
    pub data: tempfile::TempDir,
    /// The PostgreSQL schema of its data, when the suite runs there
    /// (dropped after the server stops).
    schema: Option<pg_support::Schema>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a server whose configuration `change` adjusts first.
    pub fn start_with(change: impl FnOnce(&mut stephost::config::Config)) -> Self {
        let data = tempfile::tempdir().expect("temporary directory");
        let schema = pg_support::Schema::for_run();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        let mut config = stephost::config::Config {
            data_dir: data.path().to_owned(),
            workers: 2,
            admin_token: Some(stephost::config::Secret::new(ADMIN)),
            ..Default::default()
        };
        if let Some(schema) = &schema {
            schema.configure(&mut config);
        }
        change(&mut config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let shutdown = async {
                    let _ = rx.await;
                };
                stephost::run(config, listener, shutdown)
                    .await
                    .expect("the server failed");
            });
        });
        let url = format!("http://{addr}");
        // The tenant comes over the API, as a user makes one.
        let created = stephost(
            &["tenant", "create", "acme"],
            &[("STEPHOST_URL", &url), ("STEPHOST_TOKEN", ADMIN)],
        );
        assert_eq!(created.code, 0, "{}", created.stderr);
        let token = created.stdout.trim().to_owned();
        Self {
            url,
            token,
            data,
            schema,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Runs the binary with this server's URL and token in the environment.
    pub fn cli(&self, args: &[&str]) -> Out {
        stephost(
            args,
            &[("STEPHOST_URL", &self.url), ("STEPHOST_TOKEN", &self.token)],
        )
    }

    pub fn path(&self, name: &str) -> String {
        self.data.path().join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.expect("the server thread panicked");
            }
        }
    }
}
