//! POSTs and refusals: the token, request bodies, unknown routes and wrong methods.

use super::*;

#[tokio::test]
async fn api_post_needs_the_token() {
    let api = start(ApiLimits::default()).await;
    for path in ["/offers/pause", "/offers/resume", "/withdraw"] {
        for (headers, what) in [
            (vec![], "no header"),
            (vec![("authorization", "Bearer nope")], "wrong token"),
            (vec![("authorization", TOKEN)], "no scheme"),
            (
                vec![("authorization", &*format!("Basic {TOKEN}"))],
                "wrong scheme",
            ),
            (
                vec![("authorization", &*format!("Bearer {}", &TOKEN[..63]))],
                "prefix of the token",
            ),
        ] {
            let r = api.call(Method::POST, path, &headers, None).await;
            assert_eq!(r.status, 401, "{path} {what}");
            assert_eq!(r.error_code(), "unauthorized");
            assert_eq!(r.headers["www-authenticate"], "Bearer", "{path} {what}");
        }
    }
    assert_eq!(api.node.calls(), [], "no refused request reached the node");

    let r = api.post("/offers/pause", Some(TOKEN)).await;
    assert_eq!((r.status, r.json()), (200, json!({ "paused": true })));
    let r = api.post("/offers/resume", Some(TOKEN)).await;
    assert_eq!((r.status, r.json()), (200, json!({ "paused": false })));
    let r = api.post("/withdraw", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({
            "outcome": "withdrawn",
            "tx_hash": hex(B256::repeat_byte(0xab)),
            "leases": [hex(B256::repeat_byte(1))],
            "amount": "5000",
        })
    );
    // The scheme is case-insensitive (RFC 9110).
    let r = api
        .call(
            Method::POST,
            "/offers/pause",
            &[("authorization", &format!("bearer {TOKEN}"))],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.node.calls(),
        [
            Call::Pause(true),
            Call::Pause(false),
            Call::Withdraw,
            Call::Pause(true)
        ]
    );
}

#[tokio::test]
async fn api_bad_bodies_are_4xx_json() {
    let api = start(ApiLimits {
        max_body_bytes: 1024,
        ..ApiLimits::default()
    })
    .await;
    let auth = format!("Bearer {TOKEN}");
    let json_ct = ("content-type", "application/json");
    let a = ("authorization", auth.as_str());
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(2048));
    let cases = [
        (
            "/offers/pause",
            vec![a, json_ct],
            "{not json",
            400,
            "invalid_json",
        ),
        (
            "/offers/pause",
            vec![a, ("content-type", "text/plain")],
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "/offers/pause",
            vec![a],
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "/offers/pause",
            vec![a, json_ct],
            r#"{"reason": 5}"#,
            422,
            "invalid_body",
        ),
        (
            "/offers/pause",
            vec![a, json_ct],
            r#"{"paused": false}"#,
            422,
            "invalid_body",
        ),
        (
            "/withdraw",
            vec![a, json_ct],
            r#"{"amount": "1"}"#,
            422,
            "invalid_body",
        ),
        (
            "/offers/pause",
            vec![a, json_ct],
            &big,
            413,
            "body_too_large",
        ),
    ];
    for (path, headers, body, status, code) in cases {
        let r = api.call(Method::POST, path, &headers, Some(body)).await;
        assert_eq!(r.status, status, "{path} {body:.40}: {}", r.text);
        assert_eq!(r.error_code(), code, "{path} {body:.40}");
    }
    assert_eq!(api.node.calls(), [], "no bad body reached the node");

    // The accepted bodies: none, `{}`, and a reason.
    for body in [None, Some("{}"), Some(r#"{"reason": "maintenance"}"#)] {
        let r = api
            .call(Method::POST, "/offers/pause", &[a, json_ct], body)
            .await;
        assert_eq!(r.status, 200, "{body:?}: {}", r.text);
    }
    assert_eq!(api.node.calls(), [Call::Pause(true); 3]);
}

#[tokio::test]
async fn api_unknown_route_and_wrong_method_are_json() {
    let api = start(ApiLimits::default()).await;
    for path in ["/nope", "/leases/", "/offers", "/status/extra", "/"] {
        let r = api.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_code(), "not_found", "{path}");
    }
    let r = api.post("/nope", Some(TOKEN)).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));

    for (method, path) in [
        (Method::GET, "/withdraw"),
        (Method::GET, "/offers/pause"),
        (Method::POST, "/status"),
        (Method::PUT, "/health"),
        (Method::DELETE, "/leases"),
        (Method::PATCH, "/metrics"),
    ] {
        let r = api.call(method.clone(), path, &[], None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.error_code(), "method_not_allowed", "{method} {path}");
        let allowed = if path.contains("pause") || path == "/withdraw" {
            "POST"
        } else {
            "GET"
        };
        assert!(r.text.contains(&format!("accepts {allowed}")), "{}", r.text);
        assert!(
            r.headers["allow"].to_str().unwrap().contains(allowed),
            "{method} {path}"
        );
    }
    let id = hex(api.running.id);
    let r = api
        .call(Method::DELETE, &format!("/leases/{id}"), &[], None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(api.node.calls(), []);
}
