//! The outbound layer against real sockets on 127.0.0.1: every internal
//! target is refused before a connection is made (the receiver counts its
//! connections and must see none), the same targets are reached once the
//! operator opens their network, names connect to the address that was
//! checked, and redirects are answers, not followed.

#[path = "receiver_support/mod.rs"]
mod receiver_support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use receiver_support::{Answer, Receiver};
use stephost::outbound::{Failure, Lookup, Outbound, Refusal, Request, Settings};
use tokio::net::TcpListener;

fn port(r: &Receiver) -> u16 {
    r.addr.port()
}

/// Names the test resolves itself: `receiver.test` is loopback only,
/// `rebind.test` has a public address and a loopback one; other names go
/// to the system's resolver.
#[derive(Debug)]
struct TestNames(HashMap<&'static str, Vec<IpAddr>>);

impl Lookup for TestNames {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        match self.0.get(host.as_str()).cloned() {
            Some(found) => Box::pin(async move { Ok(found) }),
            // Anything else (`localhost`) as the system resolves it.
            None => stephost::outbound::SystemLookup.lookup(host),
        }
    }
}

fn names() -> Arc<TestNames> {
    Arc::new(TestNames(HashMap::from([
        ("receiver.test", vec!["127.0.0.1".parse().unwrap()]),
        (
            "rebind.test",
            vec![
                "93.184.216.34".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ],
        ),
        ("private.test", vec!["10.1.2.3".parse().unwrap()]),
        ("metadata.test", vec!["169.254.169.254".parse().unwrap()]),
    ])))
}

fn client(allow: &[&str]) -> Outbound {
    let settings = Settings {
        allow_networks: allow.iter().map(|n| n.parse().unwrap()).collect(),
        ..Settings::default()
    };
    Outbound::with_lookup(&settings, names()).unwrap()
}

fn get(url: &str) -> Request {
    Request {
        method: reqwest::Method::GET,
        url: url.parse().unwrap(),
        headers: Default::default(),
        body: Bytes::new(),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1024,
    }
}

/// At least 25 targets, each refused by the layer before it connects.
fn ssrf_table(port: u16) -> Vec<String> {
    let p = port;
    [
        "http://127.0.0.1:{p}/",
        "http://localhost:{p}/",
        "http://LOCALHOST.:{p}/",
        "http://api.localhost:{p}/",
        "http://[::1]:{p}/",
        "http://0x7f000001:{p}/",
        "http://2130706433:{p}/",
        "http://0177.0.0.1:{p}/",
        "http://127.1:{p}/",
        "http://0x7f.0.0.1:{p}/",
        "http://[::ffff:127.0.0.1]:{p}/",
        "http://[::ffff:7f00:1]:{p}/",
        "http://[64:ff9b::7f00:1]:{p}/",
        "http://[2002:7f00:1::]:{p}/",
        "http://0.0.0.0:{p}/",
        "http://0:{p}/",
        "http://[::]:{p}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "https://127.0.0.1:{p}/",
        "http://receiver.test:{p}/",
        "http://rebind.test:{p}/",
        "http://private.test/",
        "http://metadata.test/latest/meta-data/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{p}/_x",
        "ftp://example.com/",
        "http://user:pw@127.0.0.1:{p}/",
        "http://user:pw@example.com/",
        "http://token@example.com/",
    ]
    .iter()
    .map(|u| u.replace("{p}", &p.to_string()))
    .collect()
}

#[tokio::test]
async fn every_internal_target_is_refused_without_a_connection() {
    let receiver = Receiver::start().await;
    let outbound = client(&[]);
    let table = ssrf_table(port(&receiver));
    assert!(table.len() >= 25);
    for url in &table {
        let request = match url.parse() {
            Ok(u) => Request {
                url: u,
                ..get("http://x/")
            },
            Err(e) => panic!("{url}: {e}"),
        };
        match outbound.send(request).await {
            Err(Failure::Refused(r)) => {
                assert!(!r.to_string().is_empty(), "{url}");
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
    assert_eq!(receiver.connections(), 0, "the receiver saw a connection");
}

#[tokio::test]
async fn the_refusal_says_what_and_why() {
    let outbound = client(&[]);
    let refused = |url: &str| match outbound.check(url) {
        Err(r) => r.to_string(),
        Ok(u) => panic!("{url} passed as {u}"),
    };
    let msg = refused("http://2130706433:8080/");
    assert!(msg.contains("127.0.0.1 is a loopback address"), "{msg}");
    assert!(msg.contains("outbound-allow-networks"), "{msg}");
    let msg = refused("http://169.254.169.254/");
    assert!(msg.contains("metadata"), "{msg}");
    let msg = refused("http://[::ffff:10.0.0.1]/");
    assert!(msg.contains("RFC 1918"), "{msg}");
    let msg = refused("file:///etc/passwd");
    assert!(msg.contains("`file:` URLs are refused"), "{msg}");
    let msg = refused("http://a:b@example.com/");
    assert!(msg.contains("credentials"), "{msg}");
    let msg = refused("not a url");
    assert!(msg.contains("is not a URL"), "{msg}");
    // Names are judged when they are resolved, not before.
    assert!(outbound.check("https://api.example.com/hook").is_ok());
    assert!(outbound.check("http://receiver.test/").is_ok());

    let resolved = outbound.send(get("http://rebind.test/")).await;
    match resolved {
        Err(Failure::Refused(Refusal::Address { host, addr, .. })) => {
            assert_eq!(host, "rebind.test");
            assert_eq!(addr.to_string(), "127.0.0.1");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_allowed_network_is_reached_and_names_connect_where_they_were_checked() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(Answer::status(200).body("ok"));
    let outbound = client(&["127.0.0.0/8"]);
    let p = port(&receiver);
    for (n, url) in [
        format!("http://127.0.0.1:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://localhost:{p}/"),
        // Only the test's resolver knows this name: reaching the receiver
        // shows that the connection goes to the address it returned.
        format!("http://receiver.test:{p}/"),
    ]
    .into_iter()
    .enumerate()
    {
        let got = outbound
            .send(get(&url))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(got.status, 200, "{url}");
        assert_eq!(&got.body[..], b"ok");
        assert_eq!(receiver.connections(), n + 1, "{url}");
    }
    // Opening loopback opens nothing else.
    for url in [
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://private.test/",
        "http://metadata.test/",
    ] {
        assert!(
            matches!(outbound.send(get(url)).await, Err(Failure::Refused(_))),
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_the_answer_and_is_not_followed() {
    let target = Receiver::start().await;
    let redirecting = Receiver::start().await;
    redirecting.answer_by_default(Answer::status(302).header("location", &target.url()));
    let outbound = client(&["127.0.0.0/8"]);
    let got = outbound.send(get(&redirecting.url())).await.unwrap();
    assert_eq!(got.status, 302);
    assert_eq!(redirecting.connections(), 1);
    assert_eq!(target.connections(), 0, "the redirect was followed");
}

#[tokio::test]
async fn answers_are_bounded_in_time_and_size() {
    let outbound = client(&["127.0.0.0/8"]);
    let silent = Receiver::start().await;
    silent.answer_by_default(Answer::hang());
    let mut request = get(&silent.url());
    request.timeout = Duration::from_millis(200);
    match outbound.send(request).await {
        Err(Failure::Timeout(t)) => assert_eq!(t, Duration::from_millis(200)),
        other => panic!("{other:?}"),
    }

    let big = Receiver::start().await;
    big.answer_by_default(Answer::status(500).body(&"x".repeat(10_000)));
    let mut request = get(&big.url());
    request.max_response_bytes = 100;
    let got = outbound.send(request).await.unwrap();
    assert_eq!(got.status, 500);
    assert_eq!(got.body.len(), 100);
    assert!(got.truncated);

    // Nothing listens on a port just closed.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    match outbound
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
    {
        // The message leaves the URL out: its query may hold a secret.
        Err(Failure::Unreachable(msg)) => assert!(!msg.contains("http://"), "{msg}"),
        other => panic!("{other:?}"),
    }
}
