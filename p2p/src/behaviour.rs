//! The composed network behaviour and the swarm built around it.
//!
//! Protocols: connection limits (per address, per peer, in total), identify, ping, Kademlia
//! (peer discovery), gossipsub (offers) and request-response `/gpuflow/book/1` (paged book sync)
//! and `/gpuflow/lease/1` (quotes).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use gpuflow_protocol::wire::{BOOK_PROTOCOL, LEASE_PROTOCOL, OFFERS_TOPIC};
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, Transport, connection_limits, identify, kad, noise, ping,
    tcp, yamux,
};

use sha2::{Digest, Sha256};

use crate::codec::{BookCodec, LeaseCodec};
use crate::config::{Limits, P2pConfig};
use crate::error::P2pError;
use crate::ip_limits;

/// Identify protocol version: peers on another network id are still identified but never
/// added to our Kademlia table (they do not speak [`KAD_PROTOCOL`]).
const IDENTIFY_PROTOCOL: &str = "/gpuflow/id/1";
/// Our own DHT, apart from the public IPFS one, so discovery finds only GPUFlow nodes.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/gpuflow/kad/1");

/// Every protocol a GPUFlow node speaks.
///
/// The two limit behaviours come first, so a refused connection reaches no protocol; the
/// per-address one before the totals, so one address over its cap never takes a global slot.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) ip_limits: ip_limits::Behaviour,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) book: request_response::Behaviour<BookCodec>,
    pub(crate) lease: request_response::Behaviour<LeaseCodec>,
}

/// The gossip topic for offers.
pub(crate) fn offers_topic() -> IdentTopic {
    IdentTopic::new(OFFERS_TOPIC)
}

fn setup(what: &'static str) -> impl FnOnce(String) -> P2pError {
    move |e| P2pError::Setup {
        what,
        source: e.into(),
    }
}

impl Behaviour {
    fn new(key: &Keypair, config: &P2pConfig) -> Result<Self, P2pError> {
        let limits = &config.limits;
        let peer_id = key.public().to_peer_id();

        // Totals and per peer; the per-address caps are `ip_limits`. A connection over the
        // pending cap is closed at accept, before a byte is read, and each pending one is held
        // at most `inbound_handshake_timeout`; one over an established cap is closed right after
        // its handshake.
        let conn_limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending_incoming));

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(format!("gpuflow/{}", env!("CARGO_PKG_VERSION"))),
        );

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Hosts answer DHT queries; clients never enter anyone's routing table. Set explicitly:
        // automatic mode needs a confirmed external address, which loopback never gets.
        kad.set_mode(Some(if config.kad_server {
            kad::Mode::Server
        } else {
            kad::Mode::Client
        }));

        let gossipsub = gossipsub_behaviour(limits)?;

        let book = request_response::Behaviour::with_codec(
            BookCodec::default(),
            [(StreamProtocol::new(BOOK_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(limits.request_timeout)
                .with_max_concurrent_streams(limits.max_pending_requests),
        );

        // The stream stays open while the node prepares its answer (up to
        // `lease_answer_timeout`), then the usual transfer time.
        let lease = request_response::Behaviour::with_codec(
            LeaseCodec::default(),
            [(StreamProtocol::new(LEASE_PROTOCOL), ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(limits.lease_answer_timeout + limits.request_timeout)
                .with_max_concurrent_streams(limits.max_pending_requests),
        );

        Ok(Self {
            ip_limits: ip_limits::Behaviour::new(
                limits.max_pending_incoming_per_ip,
                limits.max_connections_per_ip,
            ),
            limits: connection_limits::Behaviour::new(conn_limits),
            identify,
            ping: ping::Behaviour::default(),
            kad,
            gossipsub,
            book,
            lease,
        })
    }
}

fn gossipsub_behaviour(limits: &Limits) -> Result<gossipsub::Behaviour, P2pError> {
    let topic = offers_topic().hash();
    let config = gossipsub::ConfigBuilder::default()
        // Manual validation: nothing is forwarded before the event loop has checked it.
        .validate_messages()
        // Offers and withdrawals are signed by their hosts and verified by the validator, so
        // gossipsub's own per-message signature would only cost a second ed25519 verification
        // per received copy (duplicates included) and reveal who published first. Anonymous
        // messages are identified by content: the same bytes from two paths are one message.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(content_id)
        // The global limit also covers control messages; the offers topic gets its own, lower
        // one, so an oversize offer counts as an invalid message (penalised) instead of
        // breaking the stream.
        .max_transmit_size(limits.gossip_message_bytes.saturating_mul(4))
        .max_transmit_size_for_topic(limits.gossip_message_bytes, topic.clone())
        .heartbeat_interval(limits.gossip_heartbeat)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .build()
        .map_err(|e| setup("gossipsub config")(e.to_string()))?;

    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .map_err(|e| setup("gossipsub")(e.to_owned()))?;
    behaviour
        .with_peer_score(peer_score_params(&topic), PeerScoreThresholds::default())
        .map_err(setup("gossipsub peer scoring"))?;
    Ok(behaviour)
}

/// SHA-256 of the message bytes, first 20 bytes: collision-resistant, so nobody can make a
/// message that suppresses someone else's offer as a "duplicate".
fn content_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let digest = Sha256::digest(&message.data);
    gossipsub::MessageId::from(&digest[..20])
}

/// Peer scoring tuned for a low-rate topic: no mesh-delivery quotas (an honest quiet peer must
/// not be punished), a strong penalty per invalid message. With the default thresholds
/// (gossip −10, publish −50, graylist −80) one invalid message stops gossip exchange with the
/// sender and two get everything it sends ignored; the penalty decays over about an hour.
fn peer_score_params(topic: &gossipsub::TopicHash) -> PeerScoreParams {
    let decay = |d| gossipsub::score_parameter_decay(d);
    let topic_params = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: decay(Duration::from_secs(600)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: decay(Duration::from_secs(3600)),
        ..TopicScoreParams::default()
    };
    let mut params = PeerScoreParams {
        topic_score_cap: 20.0,
        // Many nodes on one machine (tests, local clusters) must not look like a Sybil attack.
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        ..PeerScoreParams::default()
    };
    params.topics.insert(topic.clone(), topic_params);
    params
}

/// Builds the swarm: QUIC and TCP (noise + yamux), the behaviour above, idle timeout.
///
/// Timeouts from accept or dial to a usable connection: inbound TCP
/// [`Limits::inbound_handshake_timeout`] (the socket is then closed and its pending slot
/// freed), QUIC its 5 s handshake timeout both ways, and every dial the builder's 10 s.
pub(crate) fn build_swarm(config: &P2pConfig) -> Result<Swarm<Behaviour>, P2pError> {
    let behaviour = Behaviour::new(&config.keypair, config)?;
    let inbound_timeout = config.limits.inbound_handshake_timeout;
    // The TCP stack `SwarmBuilder::with_tcp` builds, plus the inbound timeout it has no knob for.
    let tcp_transport =
        move |key: &Keypair| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .inbound_timeout(inbound_timeout),
            )
        };
    let swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_quic()
        .with_other_transport(tcp_transport)
        .map_err(|e| P2pError::Setup {
            what: "TCP transport",
            source: e.into(),
        })?
        .with_behaviour(move |_| behaviour)
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(config.limits.idle_connection_timeout)
        })
        .build();
    Ok(swarm)
}
