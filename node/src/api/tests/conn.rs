//! The connection bounds against raw sockets (review D5, D10): header-read and idle timeouts,
//! per-address and total connection caps, the request head size limit, the body-read timeout.
//!
//! Every timeout is set short here; assertions only say "closed or answered within the
//! configured bound plus [`SLACK`]", never how fast. Traffic stays on 127.0.0.0/8 (all of it is
//! loopback on Linux, so 127.0.0.2 and 127.0.0.3 stand for other local addresses).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// Room for a loaded machine on top of a configured bound.
const SLACK: Duration = Duration::from_secs(5);

const HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn addr(api: &Api) -> SocketAddr {
    api.base.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to `to` from `from` (port chosen by the kernel).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// One response: its status, headers (lower-case names) and body; `None` if the connection
/// closed (or was reset) before a whole response came, or nothing came within `within`.
async fn read_response(
    stream: &mut TcpStream,
    within: Duration,
) -> Option<(u16, Vec<(String, String)>, String)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        Some((status, headers, body))
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// Sends `request` and reads the answer's status (`None`: closed or no answer in time).
async fn exchange(stream: &mut TcpStream, request: &str) -> Option<u16> {
    stream.write_all(request.as_bytes()).await.ok()?;
    read_response(stream, SLACK)
        .await
        .map(|(status, ..)| status)
}

/// `GET path` on a new connection from `from`.
async fn get_from(from: Ipv4Addr, to: SocketAddr, path: &str) -> Option<u16> {
    let mut s = connect_from(from, to).await;
    exchange(&mut s, &get(path)).await
}

/// How long until the peer closes (end of stream or reset), if it does within `within`; any
/// bytes it sends meanwhile are discarded.
async fn closed_within<R: AsyncRead + Unpin>(stream: &mut R, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test]
async fn api_closes_connections_that_do_not_send_a_request_head_in_time() {
    let header = Duration::from_millis(300);
    let api = start(ApiLimits {
        header_read_timeout: header,
        ..ApiLimits::default()
    })
    .await;
    let to = addr(&api);

    // Sends nothing at all.
    let mut silent = connect_from(HOME, to).await;
    let closed = closed_within(&mut silent, header + SLACK).await;
    assert!(closed.is_some(), "a silent connection was still open");

    // Slowloris: a head that never ends, one byte every 100 ms (at most 100 bytes).
    let slow = connect_from(HOME, to).await;
    let (mut rx, mut tx) = slow.into_split();
    let writer = tokio::spawn(async move {
        if tx
            .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
            .await
            .is_err()
        {
            return;
        }
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tx.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let closed = closed_within(&mut rx, header + SLACK).await;
    writer.abort();
    assert!(closed.is_some(), "a slow head was still being read");

    // A prompt client on a new connection is served as before.
    assert_eq!(get_from(HOME, to, "/health").await, Some(200));
}

#[tokio::test]
async fn api_closes_idle_keep_alive_connections_after_the_idle_timeout() {
    // The idle timeout, not the header timeout, governs a kept-alive connection between
    // requests; a new request's head is timed from its first byte.
    let header = Duration::from_millis(500);
    let idle = Duration::from_secs(3);
    let api = start(ApiLimits {
        header_read_timeout: header,
        idle_timeout: idle,
        ..ApiLimits::default()
    })
    .await;
    let mut s = connect_from(HOME, addr(&api)).await;
    assert_eq!(exchange(&mut s, &get("/health")).await, Some(200));
    // Idle for three header timeouts (half the idle one): still open, still served.
    tokio::time::sleep(header * 3).await;
    assert_eq!(exchange(&mut s, &get("/status")).await, Some(200));
    // Then nothing more: closed once the idle timeout has passed.
    let closed = closed_within(&mut s, idle + SLACK).await;
    assert!(
        closed.is_some(),
        "an idle keep-alive connection was still open"
    );
}

#[tokio::test]
async fn api_caps_connections_per_address_and_in_all() {
    let api = start(ApiLimits {
        max_connections_per_ip: 2,
        max_connections: 3,
        ..ApiLimits::default()
    })
    .await;
    let to = addr(&api);
    // Two kept-alive connections from 127.0.0.1, each answered (so the server holds them).
    let mut home = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(HOME, to).await;
        assert_eq!(exchange(&mut s, &get("/health")).await, Some(200));
        home.push(s);
    }
    // A third from the same address is closed at once, not queued.
    let mut third = connect_from(HOME, to).await;
    assert!(
        closed_within(&mut third, SLACK).await.is_some(),
        "a connection over the per-address cap was kept"
    );
    // Another address is still served, and that fills the total cap of 3.
    let mut other = connect_from(OTHER, to).await;
    assert_eq!(exchange(&mut other, &get("/health")).await, Some(200));
    let mut over = connect_from(THIRD, to).await;
    assert!(
        closed_within(&mut over, SLACK).await.is_some(),
        "a connection over the total cap was kept"
    );
    // A closed connection frees its slot (the server notices the close shortly).
    drop(home.pop());
    let mut served = None;
    for _ in 0..50 {
        served = get_from(HOME, to, "/health").await;
        if served.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, Some(200), "the freed slot was not given out again");
}

#[tokio::test]
async fn api_idle_sockets_from_one_address_do_not_lock_out_others() {
    // Review D5: 70 sockets that send nothing, from one address, under the default caps.
    let header = Duration::from_millis(500);
    let api = start(ApiLimits {
        header_read_timeout: header,
        ..ApiLimits::default()
    })
    .await;
    let to = addr(&api);
    let mut idle = Vec::new();
    for _ in 0..70 {
        idle.push(connect_from(HOME, to).await);
    }
    // Another address gets its answer at once.
    assert_eq!(get_from(OTHER, to, "/health").await, Some(200));
    // And the flooding address itself again once its idle sockets have been closed.
    let mut served = None;
    let deadline = Instant::now() + header + SLACK;
    while served.is_none() && Instant::now() < deadline {
        served = get_from(HOME, to, "/health").await;
        if served.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(served, Some(200));
    drop(idle);
}

#[tokio::test]
async fn api_refuses_request_heads_over_the_limit() {
    let api = start(ApiLimits::default()).await;
    let to = addr(&api);
    let header = |size: usize| {
        format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        )
    };
    // 8 KiB of headers are fine.
    let mut s = connect_from(HOME, to).await;
    assert_eq!(exchange(&mut s, &header(8 * 1024)).await, Some(200));
    // 32 KiB (twice the default limit): 431, or closed before the answer could be read (the
    // server closes with our unread bytes in its buffer, which resets the connection).
    let mut s = connect_from(HOME, to).await;
    let _ = s.write_all(header(32 * 1024).as_bytes()).await;
    match read_response(&mut s, SLACK).await {
        Some((431, ..)) | None => {}
        Some((status, _, body)) => panic!("a 32 KiB head got {status}: {body}"),
    }
    assert!(closed_within(&mut s, SLACK).await.is_some());
    assert_eq!(get_from(HOME, to, "/health").await, Some(200));
}

#[tokio::test]
async fn api_stalled_body_gets_408_and_oversized_declared_body_413_at_once() {
    let body_timeout = Duration::from_millis(300);
    let api = start(ApiLimits {
        body_read_timeout: body_timeout,
        ..ApiLimits::default()
    })
    .await;
    let to = addr(&api);
    let post = |len: u64, auth: bool| {
        let auth = if auth {
            format!("Authorization: Bearer {TOKEN}\r\n")
        } else {
            String::new()
        };
        format!(
            "POST /offers/pause HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };

    // Review D10: 100 bytes announced, 10 sent, then nothing.
    let mut s = connect_from(HOME, to).await;
    s.write_all(format!("{}{{\"reason\":", post(100, true)).as_bytes())
        .await
        .unwrap();
    let (status, headers, body) = read_response(&mut s, body_timeout + SLACK)
        .await
        .expect("no answer to a stalled body");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (408, Some("body_timeout")),
        "{body}"
    );
    assert!(
        headers.contains(&("connection".into(), "close".into())),
        "{headers:?}"
    );
    assert!(closed_within(&mut s, SLACK).await.is_some());

    // A Content-Length over the limit is refused before any body is read...
    let mut s = connect_from(HOME, to).await;
    s.write_all(post(1_000_000_000, true).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut s, SLACK).await.expect("no answer");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    // ...but only after the token check, as before.
    let mut s = connect_from(HOME, to).await;
    s.write_all(post(1_000_000_000, false).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, SLACK).await.map(|r| r.0), Some(401));
    assert_eq!(api.node.calls(), [], "no refused body reached the node");

    // A body that arrives in pieces within the timeout is taken.
    let api = start(ApiLimits {
        body_read_timeout: Duration::from_secs(20),
        ..ApiLimits::default()
    })
    .await;
    let body = r#"{"reason": "maintenance"}"#;
    let mut s = connect_from(HOME, addr(&api)).await;
    s.write_all(format!("{}{}", post(body.len() as u64, true), &body[..5]).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&body.as_bytes()[5..]).await.unwrap();
    assert_eq!(read_response(&mut s, SLACK).await.map(|r| r.0), Some(200));
    assert_eq!(api.node.calls(), [Call::Pause(true)]);
}
