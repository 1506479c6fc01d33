use super::spec::PROCESS_HTTP_PORT;
use super::*;
use alloy::primitives::B256;
use gpuflow_protocol::offer::fixture::TestHost;

const NOW: u64 = 1_800_000_000;
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0d3JlbnRlcmtleWJ5dGVzMTIzNDU2Nzg5MDEy renter@laptop";

/// A desk with one 4-GPU offer at 400_000 base units per GPU-hour and templates `pytorch`.
fn desk() -> (QuoteDesk, TestHost, OfferId) {
    let host = TestHost::from_seed(41);
    let mut offer = host.offer("a", NOW);
    offer.gpu.count = 4;
    let id = OfferId::derive(&host.peer_id(), "a");
    let devices = (0..4).map(|i| i.to_string()).collect();
    let desk = QuoteDesk::new(
        host.wallet.clone(),
        31_337,
        Address::repeat_byte(0xee),
        vec![DeskOffer { id, offer, devices }],
    );
    (desk, host, id)
}

/// The wallet of test renter `n` (1 to 9).
fn key(n: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(n)).unwrap()
}

/// The address of test renter `n`.
fn renter(n: u8) -> Address {
    key(n).address()
}

/// Each signature is made a second earlier than the last, so no two are the same (a host
/// accepts each signed request once) while all stay fresh.
static SIGNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `req` signed by its renter (one of the test renters; others are left unsigned) for `desk`'s
/// host at about `now`.
fn signed(desk: &QuoteDesk, req: &QuoteRequest, now: u64) -> QuoteRequest {
    let mut req = req.clone();
    let back = SIGNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        % request_auth::MAX_REQUEST_AGE_SECS;
    if let Some(k) = (1..=9).map(key).find(|k| k.address() == req.renter) {
        request_auth::sign(&mut req, &k, &desk.host_peer, now - back, &desk.domain).unwrap();
    }
    req
}

/// [`QuoteDesk::quote`] of `req` signed by its renter.
fn ask(desk: &mut QuoteDesk, req: &QuoteRequest, now: u64) -> Result<SignedQuote, QuoteError> {
    let req = signed(desk, req, now);
    desk.quote(&req, now)
}

/// [`QuoteDesk::quote_around`] of `req` signed by its renter.
fn ask_around(
    desk: &mut QuoteDesk,
    req: &QuoteRequest,
    now: u64,
    busy: &HashSet<String>,
) -> Result<SignedQuote, QuoteError> {
    let req = signed(desk, req, now);
    desk.quote_around("", &req, now, busy)
}

fn request(id: OfferId, gpus: u32) -> QuoteRequest {
    QuoteRequest {
        offer_id: id,
        renter: renter(2),
        duration_secs: 3600,
        image_or_template: "pytorch".into(),
        ssh_public_key: KEY.into(),
        gpus,
        env: Default::default(),
        ports: Vec::new(),
        auth: Default::default(),
    }
}

#[test]
fn valid_request_gives_a_quote_signed_by_the_host_wallet() {
    let (mut desk, host, id) = desk();
    let q = ask(&mut desk, &request(id, 2), NOW).unwrap();
    let quote = Quote::from(q.quote.clone());
    let signer = escrow::recover_quote_signer(&quote, &q.signature, desk.domain()).unwrap();
    assert_eq!(signer, host.wallet.address());
    assert_eq!(quote.host, host.wallet.address());
    assert_eq!(quote.renter, renter(2));
    // floor(400_000 * 2 / 3600) = 222
    assert_eq!(quote.pricePerSecond, U256::from(222u64));
    assert_eq!(quote.maxDuration, U256::from(3600u64));
    assert_eq!(quote.expiry, U256::from(NOW + RESERVATION_SECS));
    // The GPUs are held only briefly unless the renter says it is opening the quote.
    assert_eq!(q.reserved_until, NOW + DEFAULT_QUOTE_HOLD_SECS);
    // The spec travels with the quote and is what the hash commits to.
    assert_eq!(quote.specHash, keccak256(q.spec.as_bytes()));
    let spec: LeaseSpec = serde_json::from_str(&q.spec).unwrap();
    assert_eq!(spec.gpus, vec!["0".to_owned(), "1".to_owned()]);
    // The template name became its pinned image; the process runtime (the default) gets no
    // container command, and its stand-in HTTP port ahead of SSH.
    let pytorch = gpuflow_protocol::templates::find("pytorch").unwrap();
    assert_eq!(spec.image.as_deref(), Some(pytorch.image));
    assert!(spec.command.is_empty());
    assert_eq!(spec.ports, vec![PROCESS_HTTP_PORT, 22]);
    assert_eq!(spec.ssh_public_key.as_deref(), Some(KEY));
    assert_eq!(desk.reserved(id, NOW), 2);
}

#[test]
fn nonces_strictly_increase() {
    let (mut desk, _, id) = desk();
    let a = ask(&mut desk, &request(id, 1), NOW).unwrap();
    let b = ask(&mut desk, &request(id, 1), NOW).unwrap();
    assert!(b.quote.nonce > a.quote.nonce);
    // Two quotes of the same terms are two different leases.
    assert_ne!(
        escrow::lease_id(&Quote::from(a.quote), desk.domain()),
        escrow::lease_id(&Quote::from(b.quote), desk.domain())
    );
}

#[test]
fn each_invalid_request_gets_its_own_error() {
    let (mut desk, _, id) = desk();
    let with = |f: &dyn Fn(&mut QuoteRequest)| {
        let mut r = request(id, 1);
        f(&mut r);
        r
    };
    type IsExpected = fn(&QuoteError) -> bool;
    let cases: Vec<(QuoteRequest, IsExpected)> = vec![
        (with(&|r| r.offer_id = OfferId([9; 16])), |e| {
            matches!(e, QuoteError::UnknownOffer { .. })
        }),
        (with(&|r| r.renter = Address::ZERO), |e| {
            matches!(e, QuoteError::ZeroRenter)
        }),
        (with(&|r| r.duration_secs = 59), |e| {
            matches!(e, QuoteError::Duration { asked: 59, .. })
        }),
        (with(&|r| r.duration_secs = 8 * 86_400), |e| {
            matches!(e, QuoteError::Duration { .. })
        }),
        (with(&|r| r.gpus = 0), |e| {
            matches!(
                e,
                QuoteError::Gpus {
                    asked: 0,
                    offered: 4
                }
            )
        }),
        (with(&|r| r.gpus = 5), |e| {
            matches!(
                e,
                QuoteError::Gpus {
                    asked: 5,
                    offered: 4
                }
            )
        }),
        (
            with(&|r| r.image_or_template = "ubuntu:24.04".into()),
            |e| matches!(e, QuoteError::Template { .. }),
        ),
        (with(&|r| r.ssh_public_key = "hello".into()), |e| {
            matches!(e, QuoteError::SshKey { .. })
        }),
        (
            with(&|r| r.ssh_public_key = KEY.replace("ssh-ed25519", "ssh-foo")),
            |e| {
                matches!(
                    e,
                    QuoteError::SshKey {
                        why: "unknown key type"
                    }
                )
            },
        ),
        (
            with(&|r| r.ssh_public_key = format!("{KEY}\nssh-rsa AAAA")),
            |e| {
                matches!(
                    e,
                    QuoteError::SshKey {
                        why: "must be one line"
                    }
                )
            },
        ),
        (
            with(&|r| r.ssh_public_key = "ssh-ed25519 not*base64*at*all!!".into()),
            |e| matches!(e, QuoteError::SshKey { .. }),
        ),
    ];
    for (req, is_expected) in cases {
        let err = ask(&mut desk, &req, NOW).unwrap_err();
        assert!(is_expected(&err), "{req:?} gave {err:?}");
        assert!(matches!(err.to_response(), LeaseResponse::Error { .. }));
    }
    // Nothing was reserved by the refused requests.
    assert_eq!(desk.reserved(id, NOW), 0);
}

#[test]
fn any_image_is_allowed_when_the_offer_lists_no_templates() {
    let (mut desk, _, id) = desk();
    if let Some(o) = desk.offers.get_mut(&id) {
        o.offer.templates.clear();
    }
    let mut req = request(id, 1);
    req.image_or_template = "ghcr.io/org/img:1.0@sha256:abc".into();
    ask(&mut desk, &req, NOW).unwrap();
    req.image_or_template = "img; rm -rf /".into();
    assert!(matches!(
        ask(&mut desk, &req, NOW),
        Err(QuoteError::Image { .. })
    ));
    req.image_or_template = "i".repeat(MAX_IMAGE_BYTES + 1);
    assert!(matches!(
        ask(&mut desk, &req, NOW),
        Err(QuoteError::Image { .. })
    ));
}

#[test]
fn price_that_floors_to_zero_is_refused() {
    let (mut desk, _, id) = desk();
    if let Some(o) = desk.offers.get_mut(&id) {
        o.offer.price_per_gpu_hour = 3599;
    }
    let err = ask(&mut desk, &request(id, 1), NOW).unwrap_err();
    assert!(matches!(
        err,
        QuoteError::PriceTooLow {
            per_gpu_hour: 3599,
            gpus: 1
        }
    ));
    assert_eq!(err.code(), code::INVALID_REQUEST);
    // Two GPUs at the same price make 7198 / 3600 = 1 per second.
    let q = ask(&mut desk, &request(id, 2), NOW).unwrap();
    assert_eq!(q.quote.price_per_second, U256::from(1u64));
}

#[test]
fn overlapping_reservations_beyond_capacity_are_refused() {
    let (mut desk, _, id) = desk();
    let first = ask(&mut desk, &request(id, 3), NOW).unwrap();
    let err = ask(&mut desk, &request(id, 2), NOW + 10).unwrap_err();
    assert!(
        matches!(err, QuoteError::NoCapacity { free: 1, asked: 2 }),
        "{err:?}"
    );
    assert_eq!(err.code(), code::NO_CAPACITY);
    // The one free GPU can still be quoted, and it is a different one.
    let second = ask(&mut desk, &request(id, 1), NOW + 10).unwrap();
    let a: LeaseSpec = serde_json::from_str(&first.spec).unwrap();
    let b: LeaseSpec = serde_json::from_str(&second.spec).unwrap();
    assert!(b.gpus.iter().all(|g| !a.gpus.contains(g)), "{a:?} {b:?}");
    assert_eq!(desk.reserved(id, NOW + 10), 4);
}

#[test]
fn capacity_is_free_again_after_the_hold_ends() {
    let (mut desk, _, id) = desk();
    ask(&mut desk, &request(id, 4), NOW).unwrap();
    let until = NOW + DEFAULT_QUOTE_HOLD_SECS;
    assert!(matches!(
        ask(&mut desk, &request(id, 1), until - 1),
        Err(QuoteError::NoCapacity { free: 0, .. })
    ));
    assert_eq!(desk.reserved(id, until), 0);
    let q = ask(&mut desk, &request(id, 4), until).unwrap();
    assert_eq!(q.reserved_until, until + DEFAULT_QUOTE_HOLD_SECS);
    // Expired reservations were dropped, not just ignored.
    assert_eq!(desk.reservations.len(), 1);
}

#[test]
fn leased_gpus_are_not_quoted_again_after_their_reservation_ends() {
    let (desk, _, id) = desk();
    let mut desk = desk.with_quote_ttl(30);
    let first = ask(&mut desk, &request(id, 3), NOW).unwrap();
    assert_eq!(first.reserved_until, NOW + 30);
    let leased: LeaseSpec = serde_json::from_str(&first.spec).unwrap();
    let busy: HashSet<String> = leased.gpus.iter().cloned().collect();
    // The quote's reservation is over, but its lease runs: its GPUs stay taken.
    let later = NOW + 31;
    let err = ask_around(&mut desk, &request(id, 2), later, &busy).unwrap_err();
    assert!(
        matches!(err, QuoteError::NoCapacity { free: 1, asked: 2 }),
        "{err:?}"
    );
    let second = ask_around(&mut desk, &request(id, 1), later, &busy).unwrap();
    let b: LeaseSpec = serde_json::from_str(&second.spec).unwrap();
    assert!(b.gpus.iter().all(|g| !busy.contains(g)), "{b:?}");
    // Without the lease, all four are free again.
    let (desk, _, id) = self::desk();
    let mut desk = desk.with_quote_ttl(30);
    ask(&mut desk, &request(id, 3), NOW).unwrap();
    assert!(ask(&mut desk, &request(id, 4), NOW + 30).is_ok());
}

#[test]
fn from_plans_numbers_gpus_across_offers() {
    let host = TestHost::from_seed(42);
    let plans: Vec<OfferPlan> = ["a", "b"]
        .iter()
        .map(|name| {
            let mut offer = host.offer(name, NOW);
            offer.gpu.count = 2;
            OfferPlan {
                id: OfferId::derive(&host.peer_id(), name),
                offer,
            }
        })
        .collect();
    let chain = ChainConfig {
        chain_id: 31_337,
        escrow: Address::repeat_byte(0xee),
        token: Address::repeat_byte(0x70),
        token_decimals: 6,
        deploy_block: 0,
    };
    let mut desk = QuoteDesk::from_plans(host.wallet, &chain, &plans);
    let q = ask(&mut desk, &request(plans[1].id, 2), NOW).unwrap();
    let spec: LeaseSpec = serde_json::from_str(&q.spec).unwrap();
    assert_eq!(spec.gpus, vec!["2".to_owned(), "3".to_owned()]);
    assert_eq!(
        desk.domain(),
        &escrow::domain(31_337, Address::repeat_byte(0xee))
    );
}

/// `serve` over real p2p: a renter node asks for a quote and gets one signed by the host
/// wallet; a status request is answered `unsupported`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_quote_reaches_the_renter_over_p2p() {
    use gpuflow_p2p::{P2pConfig, keypair_from_dalek};
    use gpuflow_protocol::book::OfferBook;
    use gpuflow_protocol::wire::LeaseRequest;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    let (desk, host, id) = desk();
    let domain = desk.domain().clone();
    let req = signed(&desk, &request(id, 1), crate::offers::unix_now());
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let (host_client, host_loop, _) = gpuflow_p2p::new(
        P2pConfig::loopback(keypair_from_dalek(&host.key)),
        OfferBook::new(),
    )
    .unwrap();
    tokio::spawn(host_loop.run(stop.clone()));
    let inbound = host_client.serve_leases().await.unwrap();
    tokio::spawn(serve(desk, host_client.clone(), inbound, None));
    let (renter, renter_loop, _) = gpuflow_p2p::new(
        P2pConfig::new(gpuflow_p2p::Keypair::generate_ed25519()),
        OfferBook::new(),
    )
    .unwrap();
    tokio::spawn(renter_loop.run(stop.clone()));

    let ask = async {
        let addr = host_client.listen_addrs().await.unwrap()[0].clone();
        let peer = host_client.peer_id();
        let quote = renter
            .request_lease(peer, Some(addr.clone()), LeaseRequest::Quote(req))
            .await
            .unwrap();
        let status = renter
            .request_lease(
                peer,
                Some(addr),
                LeaseRequest::Status {
                    lease_id: Default::default(),
                },
            )
            .await
            .unwrap();
        (quote, status)
    };
    let (quote, status) = tokio::time::timeout(Duration::from_secs(30), ask)
        .await
        .unwrap();
    let LeaseResponse::Quote(q) = quote else {
        panic!("expected a quote, got {quote:?}");
    };
    let signer =
        escrow::recover_quote_signer(&Quote::from(q.quote), &q.signature, &domain).unwrap();
    assert_eq!(signer, host.wallet.address());
    assert!(
        matches!(&status, LeaseResponse::Error { code: c, .. } if c == code::UNSUPPORTED),
        "{status:?}"
    );
}

#[test]
fn templates_expand_into_image_ports_and_command_for_docker() {
    let (desk, _, id) = desk();
    let mut desk = desk.with_runtime(RuntimeKind::Docker);
    if let Some(o) = desk.offers.get_mut(&id) {
        o.offer.templates = vec!["pytorch".into(), "ollama".into(), "ubuntu:24.04".into()];
    }
    let mut req = request(id, 1);
    req.image_or_template = "ollama".into();
    req.env = [("OLLAMA_MODELS".to_owned(), "/data".to_owned())].into();
    req.ports = vec![11434, 9000];
    let q = ask(&mut desk, &req, NOW).unwrap();
    let spec: LeaseSpec = serde_json::from_str(&q.spec).unwrap();
    let ollama = gpuflow_protocol::templates::find("ollama").unwrap();
    assert_eq!(spec.image.as_deref(), Some(ollama.image));
    assert_eq!(spec.command, vec!["ollama".to_owned(), "serve".to_owned()]);
    // The template's port once, then the renter's extra one.
    assert_eq!(spec.ports, vec![11434, 9000]);
    assert_eq!(spec.env["OLLAMA_HOST"], "0.0.0.0:11434");
    assert_eq!(spec.env["OLLAMA_MODELS"], "/data");

    req.image_or_template = "pytorch".into();
    req.ports.clear();
    req.env.clear();
    let spec: LeaseSpec = serde_json::from_str(&ask(&mut desk, &req, NOW).unwrap().spec).unwrap();
    assert_eq!(spec.ports, vec![22], "SSH under Docker");
    assert!(spec.command.is_empty());

    // A listed name that is no built-in template is an image, used as it is. (Another wallet:
    // this one holds the most live quotes a wallet may.)
    req.image_or_template = "ubuntu:24.04".into();
    req.renter = renter(3);
    let spec: LeaseSpec = serde_json::from_str(&ask(&mut desk, &req, NOW).unwrap().spec).unwrap();
    assert_eq!(spec.image.as_deref(), Some("ubuntu:24.04"));
    assert!(spec.ports.is_empty() && spec.command.is_empty());
}

#[test]
fn process_runtime_specs_keep_ssh_behind_the_http_port_and_no_command() {
    // A fresh desk per request: each quote reserves a GPU.
    let spec_of = |req: &QuoteRequest| -> LeaseSpec {
        let (mut desk, _, id) = desk();
        if let Some(o) = desk.offers.get_mut(&id) {
            o.offer.templates = vec!["jupyter".into(), "pytorch".into(), "ubuntu:24.04".into()];
        }
        serde_json::from_str(&ask(&mut desk, req, NOW).unwrap().spec).unwrap()
    };
    let (_, _, id) = desk();
    let mut req = request(id, 1);
    req.image_or_template = "jupyter".into();
    req.ports = vec![22];
    let spec = spec_of(&req);
    assert!(
        spec.command.is_empty(),
        "the engine runs its default workload"
    );
    // The app's port stays first (the stand-in serves HTTP there); SSH comes after it.
    assert_eq!(spec.ports, vec![8888, 22]);

    // SSH is the template's only port: the stand-in's HTTP port goes in front.
    req.image_or_template = "pytorch".into();
    req.ports.clear();
    assert_eq!(spec_of(&req).ports, vec![PROCESS_HTTP_PORT, 22]);
    // A port of the renter's own is first instead, and 22 is not published twice.
    req.ports = vec![9000, 22];
    assert_eq!(spec_of(&req).ports, vec![9000, 22]);
    // The same for a plain image asked to publish only 22.
    req.image_or_template = "ubuntu:24.04".into();
    req.ports = vec![22];
    assert_eq!(spec_of(&req).ports, vec![PROCESS_HTTP_PORT, 22]);
    // No SSH asked for: nothing is added.
    req.ports = vec![7000];
    assert_eq!(spec_of(&req).ports, vec![7000]);
}

#[test]
fn bad_env_and_ports_are_refused_naming_the_field() {
    let (mut desk, _, id) = desk();
    let cases: Vec<(QuoteRequest, &str)> = vec![
        {
            let mut r = request(id, 1);
            r.env = [("PORT".to_owned(), "1".to_owned())].into();
            (r, "env: PORT is set by the host")
        },
        {
            let mut r = request(id, 1);
            r.env = [("GPUFLOW_X".to_owned(), "1".to_owned())].into();
            (r, "env: GPUFLOW_X is set by the host")
        },
        {
            let mut r = request(id, 1);
            r.env = [("A-B".to_owned(), "1".to_owned())].into();
            (r, "env: name \"A-B\"")
        },
        {
            let mut r = request(id, 1);
            r.env = [("1A".to_owned(), "1".to_owned())].into();
            (r, "env: name \"1A\"")
        },
        {
            let mut r = request(id, 1);
            r.env = [("A".to_owned(), "x\0y".to_owned())].into();
            (r, "env: A contains a NUL")
        },
        {
            let mut r = request(id, 1);
            r.env = (0..=gpuflow_protocol::wire::MAX_REQUEST_ENV)
                .map(|i| (format!("V{i}"), String::new()))
                .collect();
            (r, "env: 33 variables, at most 32")
        },
        {
            let mut r = request(id, 1);
            r.ports = vec![8080, 8080];
            (r, "ports: port 8080 listed twice")
        },
        {
            let mut r = request(id, 1);
            r.ports = vec![0];
            (r, "ports: port 0")
        },
        {
            let mut r = request(id, 1);
            r.ports = (1..=17).collect();
            (r, "ports: 17 ports, at most 16")
        },
    ];
    for (req, want) in cases {
        let err = ask(&mut desk, &req, NOW).unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{err} should start with {want}"
        );
        assert_eq!(err.code(), code::INVALID_REQUEST);
    }
    assert_eq!(desk.reserved(id, NOW), 0);
}

#[test]
fn released_reservations_free_their_gpus_before_the_quote_expires() {
    let (mut desk, _, id) = desk();
    let q = ask(&mut desk, &request(id, 4), NOW).unwrap();
    let lease = escrow::lease_id(&Quote::from(q.quote), desk.domain());
    assert_eq!(desk.reserved_leases(), vec![lease]);
    assert!(ask(&mut desk, &request(id, 1), NOW + 1).is_err());
    // The quote was opened and its lease ended: the GPUs are free at once.
    desk.release(lease);
    assert!(desk.reserved_leases().is_empty());
    assert!(ask(&mut desk, &request(id, 4), NOW + 2).is_ok());
}

#[test]
fn the_quote_carries_the_offers_minimum_so_the_escrow_refuses_dust() {
    let (mut desk, _, id) = desk();
    let q = ask(&mut desk, &request(id, 1), NOW).unwrap();
    // The fixture offer's shortest lease is 60 s.
    assert_eq!(q.quote.min_duration, U256::from(60u64));
    // It is signed: changing it changes the digest the host signed, so the signature no longer
    // recovers to the host.
    let mut cheaper = Quote::from(q.quote.clone());
    cheaper.minDuration = U256::from(1u64);
    let signer = escrow::recover_quote_signer(&cheaper, &q.signature, desk.domain()).unwrap();
    assert_ne!(signer, Quote::from(q.quote).host);
}

#[test]
fn one_renter_wallet_holds_at_most_a_few_live_quotes() {
    let (mut desk, _, id) = desk();
    for _ in 0..MAX_QUOTES_PER_RENTER {
        ask(&mut desk, &request(id, 1), NOW).unwrap();
    }
    let err = ask(&mut desk, &request(id, 1), NOW + 10).unwrap_err();
    assert_eq!(err.code(), code::RATE_LIMITED);
    // Retry once the first hold ends.
    assert!(
        err.to_string()
            .contains(&format!("try again in {}s", DEFAULT_QUOTE_HOLD_SECS - 10)),
        "{err}"
    );
    // Another wallet still gets the remaining GPUs.
    let mut other = request(id, 1);
    other.renter = renter(3);
    ask(&mut desk, &other, NOW + 10).unwrap();
    // Once the holds end the wallet is quoted again.
    ask(&mut desk, &request(id, 1), NOW + DEFAULT_QUOTE_HOLD_SECS).unwrap();
}

#[test]
fn a_wallet_that_keeps_cancelling_is_paused_for_the_window() {
    let renter = Address::repeat_byte(2);
    let below: Vec<u64> = (0..MAX_CANCELS_PER_RENTER as u64 - 1)
        .map(|i| NOW - 100 + i)
        .collect();
    check_cancels(renter, &below, NOW).unwrap();
    let at_limit: Vec<u64> = (0..MAX_CANCELS_PER_RENTER as u64)
        .map(|i| NOW - 100 + i)
        .collect();
    let err = check_cancels(renter, &at_limit, NOW).unwrap_err();
    assert_eq!(err.code(), code::RATE_LIMITED);
    // The first of the cancellations that count leaves the window 3500 s from now.
    assert!(err.to_string().contains("try again in 3500s"), "{err}");
    // Cancellations older than the window no longer count.
    check_cancels(renter, &at_limit, NOW - 100 + CANCEL_WINDOW_SECS).unwrap();
}

#[test]
fn only_a_fresh_request_signed_by_its_renter_for_this_host_holds_gpus() {
    let (mut desk, _, id) = desk();
    // Unsigned: refused, nothing held.
    let err = desk.quote(&request(id, 4), NOW).unwrap_err();
    assert_eq!(err.code(), code::UNAUTHORIZED, "{err}");
    // Signed by someone else's wallet, or for another host.
    let mut squat = signed(&desk, &request(id, 4), NOW);
    squat.renter = renter(5);
    assert_eq!(
        desk.quote(&squat, NOW).unwrap_err().code(),
        code::UNAUTHORIZED
    );
    let mut elsewhere = request(id, 4);
    request_auth::sign(&mut elsewhere, &key(2), "12D3KooWOther", NOW, &desk.domain).unwrap();
    assert_eq!(
        desk.quote(&elsewhere, NOW).unwrap_err().code(),
        code::UNAUTHORIZED
    );
    // Stale.
    let old = signed(&desk, &request(id, 4), NOW);
    let late = NOW + request_auth::MAX_REQUEST_AGE_SECS + 60;
    assert_eq!(
        desk.quote(&old, late).unwrap_err().code(),
        code::UNAUTHORIZED
    );
    assert_eq!(desk.reserved(id, NOW), 0);

    // A good one is quoted once; the same signed request again is refused.
    let good = signed(&desk, &request(id, 1), NOW);
    desk.quote(&good, NOW).unwrap();
    let again = desk.quote(&good, NOW + 1).unwrap_err();
    assert!(matches!(again, QuoteError::Replayed), "{again}");
    assert_eq!(desk.reserved(id, NOW + 1), 1);
}

#[test]
fn one_peer_holds_at_most_a_few_quotes_whatever_wallets_it_signs_with() {
    let (mut desk, _, id) = desk();
    let peer = "12D3KooWAskingPeer";
    for n in 1..=u8::try_from(MAX_QUOTES_PER_PEER).unwrap() {
        let mut r = request(id, 1);
        r.renter = renter(n);
        let r = signed(&desk, &r, NOW);
        desk.quote_around(peer, &r, NOW, &HashSet::new()).unwrap();
    }
    let mut r = request(id, 1);
    r.renter = renter(9);
    let r = signed(&desk, &r, NOW);
    let err = desk
        .quote_around(peer, &r, NOW, &HashSet::new())
        .unwrap_err();
    assert_eq!(err.code(), code::RATE_LIMITED, "{err}");
    assert!(err.to_string().contains(peer), "{err}");
}

#[test]
fn opening_holds_until_the_quote_expires_and_release_frees_at_once() {
    let (mut desk, _, id) = desk();
    let (a, b) = ("12D3KooWRenterA", "12D3KooWRenterB");
    let first = signed(&desk, &request(id, 4), NOW);
    let q = desk.quote_around(a, &first, NOW, &HashSet::new()).unwrap();
    let lease = escrow::lease_id(&Quote::from(q.quote), desk.domain());
    let expiry = NOW + RESERVATION_SECS;

    // Only the peer it was issued to can extend it, and only while it is held.
    assert_eq!(desk.opening(b, lease, NOW + 1), None);
    assert_eq!(desk.opening(a, lease, NOW + 1), Some(expiry));
    // Held past the short hold now: another renter finds no GPU.
    let mut other = request(id, 1);
    other.renter = renter(3);
    let other = signed(&desk, &other, NOW + DEFAULT_QUOTE_HOLD_SECS + 5);
    let err = desk
        .quote_around(
            b,
            &other,
            NOW + DEFAULT_QUOTE_HOLD_SECS + 5,
            &HashSet::new(),
        )
        .unwrap_err();
    assert!(matches!(err, QuoteError::NoCapacity { .. }), "{err}");

    // Released (by its own peer only): free at once.
    assert!(!desk.release_from(b, lease));
    assert!(desk.release_from(a, lease));
    assert_eq!(desk.reserved(id, NOW + DEFAULT_QUOTE_HOLD_SECS + 5), 0);
    assert_eq!(desk.opening(a, lease, NOW + 40), None, "released is gone");

    // A hold that lapsed cannot be revived.
    let late = signed(&desk, &request(id, 1), NOW + 100);
    let q = desk
        .quote_around(a, &late, NOW + 100, &HashSet::new())
        .unwrap();
    let lease = escrow::lease_id(&Quote::from(q.quote), desk.domain());
    assert_eq!(
        desk.opening(a, lease, NOW + 100 + DEFAULT_QUOTE_HOLD_SECS),
        None
    );
}
