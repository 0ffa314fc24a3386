//! A webhook receiver for the suites: a raw HTTP/1.1 server on 127.0.0.1
//! that counts connections, records every request and answers from a
//! script, and a Standard Webhooks verifier written from the specification
//! (not by calling stephost's signer).

#![allow(dead_code, reason = "each suite uses part of the support")]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One answer of the receiver.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// Never answer: hold the connection open.
    pub hang: bool,
}

impl Answer {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            hang: false,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With this body.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// An answer that never comes.
    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::status(200)
        }
    }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST /hook`.
    pub method: String,
    /// The path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
    /// When it arrived.
    pub at: std::time::Instant,
    /// When it arrived, by the wall clock (to compare with the server's
    /// times).
    pub received_at: jiff::Timestamp,
}

impl Received {
    /// The header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

#[derive(Default)]
struct Shared {
    connections: AtomicUsize,
    requests: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    default: Mutex<Option<Answer>>,
    arrived: Notify,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver that answers 200 unless scripted otherwise.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, s.clone()));
            }
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next requests get these answers, in order; then the default.
    pub fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.script.lock().unwrap().extend(answers);
    }

    /// What requests get once the script is used up (200 at first).
    pub fn answer_by_default(&self, answer: Answer) {
        *self.shared.default.lock().unwrap() = Some(answer);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived (at most `within`) and
    /// returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.shared.arrived.notified();
            if self.shared.requests.lock().unwrap().len() >= n {
                return self.requests();
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let got = self.requests();
                panic!(
                    "the receiver got {} requests within {within:?}, not {n}: {:?}",
                    got.len(),
                    got.iter().map(|r| &r.body).collect::<Vec<_>>()
                );
            }
        }
    }
}

async fn serve(mut socket: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let answer = {
        let next = shared.script.lock().unwrap().pop_front();
        next.or_else(|| shared.default.lock().unwrap().clone())
            .unwrap_or_else(|| Answer::status(200))
    };
    shared.requests.lock().unwrap().push(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: std::time::Instant::now(),
        received_at: jiff::Timestamp::now(),
    });
    shared.arrived.notify_waiters();
    if answer.hang {
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (n, v) in &answer.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&answer.body);
    let _ = socket.write_all(out.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Standard Webhooks verification, from the specification: the signed
/// content is `{webhook-id}.{webhook-timestamp}.{body}`, the key the bytes
/// of the base64 after `whsec_`, and `webhook-signature` a space-separated
/// list of `v1,<base64 HMAC-SHA256>`; one match verifies. The timestamp
/// must be within five minutes of `now` (seconds since the epoch).
pub fn verify(secret: &str, r: &Received, now: i64) -> bool {
    let (Some(id), Some(ts), Some(sigs)) = (
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts_secs) = ts.parse::<i64>() else {
        return false;
    };
    if (now - ts_secs).abs() > 300 {
        return false;
    }
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("a base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    sigs.split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(version, sig)| version == "v1" && sig == expected)
}
