//! The bounds and guards: `Host` check, node errors, timeout, panics, concurrency, shutdown.

use std::net::SocketAddr;

use super::*;

#[tokio::test]
async fn api_refuses_foreign_host_headers_unless_allowed() {
    let api = start(ApiLimits::default()).await;
    let r = api
        .call(
            Method::GET,
            "/status",
            &[("host", "evil.example:8686")],
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "forbidden_host");
    let r = api
        .call(Method::GET, "/status", &[("host", "localhost:8686")], None)
        .await;
    assert_eq!(r.status, 200);

    let open = start(ApiLimits {
        allow_any_host: true,
        ..ApiLimits::default()
    })
    .await;
    let r = open
        .call(
            Method::GET,
            "/status",
            &[("host", "evil.example:8686")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn api_node_errors_map_to_statuses() {
    let api = start(ApiLimits::default()).await;
    api.node.set(Behaviour::Unavailable);
    let r = api.send(Method::GET, "/status", &[], None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "node_unavailable")
    );
    api.node.set(Behaviour::Conflict);
    let r = api.post("/withdraw", Some(TOKEN)).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "conflict"));
}

#[tokio::test]
async fn api_slow_node_times_out_with_json_and_server_goes_on() {
    let api = start(ApiLimits {
        request_timeout: Duration::from_millis(200),
        ..ApiLimits::default()
    })
    .await;
    api.node.set(Behaviour::Hang);
    let r = api.send(Method::GET, "/status", &[], None).await;
    assert_eq!((r.status, r.error_code().as_str()), (503, "timeout"));
    assert_eq!(api.get("/health").await.status, 200);
}

#[tokio::test]
async fn api_handler_panic_is_a_json_500_and_server_goes_on() {
    let api = start(ApiLimits::default()).await;
    api.node.set(Behaviour::Panic);
    let r = api.send(Method::GET, "/earnings", &[], None).await;
    assert_eq!((r.status, r.error_code().as_str()), (500, "internal"));
    assert!(r.text.contains("fake node panicked"), "{}", r.text);
    assert_eq!(api.get("/health").await.status, 200);
}

#[tokio::test]
async fn api_concurrency_limit_holds() {
    let api = Arc::new(
        start(ApiLimits {
            max_concurrent_requests: 2,
            ..ApiLimits::default()
        })
        .await,
    );
    api.node.set(Behaviour::Gated);
    let mut in_flight = api.node.in_flight.subscribe();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let api = Arc::clone(&api);
            tokio::spawn(async move { api.get("/status").await.status })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), in_flight.wait_for(|n| *n >= 2))
        .await
        .unwrap()
        .unwrap();
    // A third request inside the node would mean the limit leaked.
    let leaked =
        tokio::time::timeout(Duration::from_millis(300), in_flight.wait_for(|n| *n > 2)).await;
    assert!(leaked.is_err(), "more than 2 requests reached the node");
    api.node.gate.add_permits(6);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(api.node.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn api_shutdown_drains_and_returns() {
    let api = start(ApiLimits {
        drain_timeout: Duration::from_secs(60),
        ..ApiLimits::default()
    })
    .await;
    // Leaves an idle keep-alive connection in the client's pool.
    assert_eq!(api.get("/health").await.status, 200);
    api.shutdown.cancel();
    // Well before the drain timeout: idle connections are closed at once.
    let done = tokio::time::timeout(Duration::from_secs(20), api.server).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    let addr = api.base.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn api_default_address_is_loopback() {
    let addr: SocketAddr = DEFAULT_API_ADDR.parse().unwrap();
    assert!(addr.ip().is_loopback());
}

#[tokio::test]
async fn api_token_debug_is_redacted() {
    let t = ApiToken::from_text(TOKEN);
    assert!(!format!("{t:?}").contains(&TOKEN[..8]));
    assert!(
        !format!(
            "{:?}",
            ApiState::new(Arc::new(FakeNode::new()), lazy_repo(), t)
        )
        .contains(&TOKEN[..8])
    );
}

/// A repository that never connects (for tests that only need an `ApiState`).
fn lazy_repo() -> LeaseRepo {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_lazy("sqlite::memory:")
        .unwrap();
    LeaseRepo::from_pool(pool)
}
