//! Inbound connection limits per remote address.
//!
//! `connection_limits` counts per peer and in total, but a pending connection has no peer id
//! yet and a peer id costs nothing to make, so one address holding idle sockets could take
//! every pending slot and lock everyone else out (review D3). This behaviour counts inbound
//! connections by the remote IP taken from the send-back address: an IPv4 address, or an IPv6
//! /64 (one subscriber's usual allocation, so rotating the low bits gains nothing), with
//! IPv4-mapped IPv6 addresses counted as their IPv4 address.
//!
//! When a bound is hit the connection is refused with [`ConnectionDenied`] at accept (the swarm
//! drops the socket before reading a byte): when the address already has
//! [`Limits::max_pending_incoming_per_ip`] handshakes in flight, or
//! [`Limits::max_connections_per_ip`] inbound connections pending and established together.
//! Counting the pending ones against the second cap means a connection admitted at accept is
//! never over a cap once its handshake completes, so a refused dialer sees its dial fail
//! rather than a connection that closes right after it opened. Outbound connections are not
//! counted. An address without an IP (none of our transports gives one) is not limited here;
//! the totals in `connection_limits` still apply.
//!
//! [`Limits::max_pending_incoming_per_ip`]: crate::Limits::max_pending_incoming_per_ip
//! [`Limits::max_connections_per_ip`]: crate::Limits::max_connections_per_ip

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};
use tracing::debug;

/// Which per-address bound refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Inbound connections still in their handshake.
    Pending,
    /// Inbound connections, pending and established.
    Connections,
}

/// Why a connection was refused; the cause inside the swarm's [`ConnectionDenied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpLimitExceeded {
    pub(crate) ip: IpAddr,
    pub(crate) kind: Kind,
    pub(crate) limit: u32,
}

impl fmt::Display for IpLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Pending => "inbound connections in their handshake",
            Kind::Connections => "inbound connections (pending or established)",
        };
        write!(f, "{} already has {} {what}", self.ip, self.limit)
    }
}

impl std::error::Error for IpLimitExceeded {}

/// Connections of one address, pending and established.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    pending: u32,
    established: u32,
}

/// The per-address inbound limits; see the module documentation.
///
/// Its maps are bounded by the totals of `connection_limits`, composed after it: a pending
/// entry is added only when this behaviour accepts, and removed again on the
/// [`FromSwarm::ListenFailure`] the swarm reports when a later behaviour refuses, so there are at
/// most `max_pending_incoming` (plus the one being refused). Established entries are added on
/// [`FromSwarm::ConnectionEstablished`], which only comes when every behaviour accepted (at most
/// `max_connections`). An address's counts are dropped when both reach zero.
#[derive(Debug)]
pub(crate) struct Behaviour {
    max_pending_per_ip: u32,
    max_connections_per_ip: u32,
    pending: HashMap<ConnectionId, IpAddr>,
    established: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, Counts>,
}

impl Behaviour {
    pub(crate) fn new(max_pending_per_ip: u32, max_connections_per_ip: u32) -> Self {
        Self {
            max_pending_per_ip,
            max_connections_per_ip,
            pending: HashMap::new(),
            established: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    fn counts(&self, ip: &IpAddr) -> Counts {
        self.per_ip.get(ip).copied().unwrap_or_default()
    }

    /// Applies `change` to the counts of `ip`, forgetting the address once both are zero.
    fn update(&mut self, ip: IpAddr, change: impl FnOnce(&mut Counts)) {
        match self.per_ip.entry(ip) {
            Entry::Occupied(mut e) => {
                change(e.get_mut());
                if e.get().pending == 0 && e.get().established == 0 {
                    e.remove();
                }
            }
            Entry::Vacant(e) => {
                let mut counts = Counts::default();
                change(&mut counts);
                if counts.pending != 0 || counts.established != 0 {
                    e.insert(counts);
                }
            }
        }
    }

    fn forget_pending(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id) {
            self.update(ip, |c| c.pending = c.pending.saturating_sub(1));
        }
    }

    fn deny(&self, ip: IpAddr, kind: Kind) -> ConnectionDenied {
        let limit = match kind {
            Kind::Pending => self.max_pending_per_ip,
            Kind::Connections => self.max_connections_per_ip,
        };
        debug!(target: "p2p", %ip, ?kind, limit, "inbound connection refused: address at its limit");
        ConnectionDenied::new(IpLimitExceeded { ip, kind, limit })
    }

    /// Inbound connections from `ip` being counted now: (pending, established).
    #[cfg(test)]
    fn usage(&self, ip: IpAddr) -> (u32, u32) {
        let c = self.counts(&ip);
        (c.pending, c.established)
    }
}

/// The address a remote is counted under: its IPv4 address, or its IPv6 /64.
pub(crate) fn ip_key(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(ip) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        }),
        _ => None,
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_key(remote_addr) else {
            return Ok(());
        };
        let counts = self.counts(&ip);
        if counts.pending.saturating_add(counts.established) >= self.max_connections_per_ip {
            return Err(self.deny(ip, Kind::Connections));
        }
        if counts.pending >= self.max_pending_per_ip {
            return Err(self.deny(ip, Kind::Pending));
        }
        self.pending.insert(connection_id, ip);
        self.update(ip, |c| c.pending += 1);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Admitted at accept, so within the caps. Counted as established on
        // `ConnectionEstablished`, which the swarm sends right after this call when every
        // behaviour accepted (else it sends `ListenFailure`, and the slot is simply gone).
        self.forget_pending(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint: ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) => {
                if let Some(ip) = ip_key(send_back_addr) {
                    self.established.insert(connection_id, ip);
                    self.update(ip, |c| c.established += 1);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(ip) = self.established.remove(&connection_id) {
                    self.update(ip, |c| c.established = c.established.saturating_sub(1));
                }
            }
            // Refused by another behaviour, failed or timed out during the handshake.
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget_pending(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use libp2p::swarm::ListenError;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    const LOCAL: &str = "/ip4/127.0.0.1/tcp/4001";

    fn pending(b: &mut Behaviour, n: usize, remote: &str) -> Result<(), ConnectionDenied> {
        b.handle_pending_inbound_connection(id(n), &addr(LOCAL), &addr(remote))
    }

    /// The handshake of connection `n` completes and every behaviour accepts it.
    fn establish(b: &mut Behaviour, n: usize, remote: &str) -> Result<(), ConnectionDenied> {
        let peer = PeerId::random();
        b.handle_established_inbound_connection(id(n), peer, &addr(LOCAL), &addr(remote))?;
        let endpoint = ConnectedPoint::Listener {
            local_addr: addr(LOCAL),
            send_back_addr: addr(remote),
        };
        b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: id(n),
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        Ok(())
    }

    fn fail(b: &mut Behaviour, n: usize, remote: &str) {
        b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
            local_addr: &addr(LOCAL),
            send_back_addr: &addr(remote),
            error: &ListenError::Aborted,
            connection_id: id(n),
            peer_id: None,
        }));
    }

    fn close(b: &mut Behaviour, n: usize, remote: &str) {
        let endpoint = ConnectedPoint::Listener {
            local_addr: addr(LOCAL),
            send_back_addr: addr(remote),
        };
        b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: PeerId::random(),
            connection_id: id(n),
            endpoint: &endpoint,
            cause: None,
            remaining_established: 0,
        }));
    }

    fn kind_of(denied: ConnectionDenied) -> Kind {
        denied.downcast::<IpLimitExceeded>().unwrap().kind
    }

    #[test]
    fn addresses_are_counted_per_ipv4_and_per_ipv6_slash_64() {
        assert_eq!(ip_key(&addr("/ip4/10.1.2.3/tcp/9")), Some(ip("10.1.2.3")));
        assert_eq!(
            ip_key(&addr("/ip6/2001:db8:1:2:aaaa:bbbb:cccc:dddd/udp/9/quic-v1")),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            ip_key(&addr("/ip6/::ffff:192.0.2.7/tcp/9")),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(ip_key(&addr("/dns4/example.com/tcp/9")), None);
    }

    #[test]
    fn pending_connections_are_capped_per_address_and_freed_when_they_end() {
        let mut b = Behaviour::new(2, 16);
        let a = "/ip4/192.0.2.1/tcp/1000";
        pending(&mut b, 1, a).unwrap();
        pending(&mut b, 2, "/ip4/192.0.2.1/tcp/1001").unwrap();
        assert_eq!(kind_of(pending(&mut b, 3, a).unwrap_err()), Kind::Pending);
        // Another address is not affected; IPv6 addresses in one /64 share one count.
        pending(&mut b, 4, "/ip4/192.0.2.2/tcp/1000").unwrap();
        pending(&mut b, 5, "/ip6/2001:db8::1/tcp/1").unwrap();
        pending(&mut b, 6, "/ip6/2001:db8::2/tcp/1").unwrap();
        assert_eq!(
            kind_of(pending(&mut b, 7, "/ip6/2001:db8::3/tcp/1").unwrap_err()),
            Kind::Pending
        );

        // A handshake that fails or times out frees its slot; a refused one never held one.
        fail(&mut b, 1, a);
        fail(&mut b, 3, a);
        assert_eq!(b.usage(ip("192.0.2.1")), (1, 0));
        pending(&mut b, 8, a).unwrap();
        // A completed handshake moves from pending to established.
        establish(&mut b, 8, a).unwrap();
        assert_eq!(b.usage(ip("192.0.2.1")), (1, 1));
        close(&mut b, 8, a);
        fail(&mut b, 2, a);
        assert_eq!(b.usage(ip("192.0.2.1")), (0, 0));
        assert!(
            !b.per_ip.contains_key(&ip("192.0.2.1")),
            "forgotten at zero"
        );
    }

    #[test]
    fn connections_are_capped_per_address_pending_and_established_together() {
        let mut b = Behaviour::new(8, 2);
        let a = "/ip4/198.51.100.9/tcp/1";
        for n in 0..2 {
            pending(&mut b, n, a).unwrap();
            establish(&mut b, n, a).unwrap();
        }
        // At the cap: refused at accept, before any handshake.
        assert_eq!(
            kind_of(pending(&mut b, 10, a).unwrap_err()),
            Kind::Connections
        );

        // A closed connection frees its slot; a handshake in flight holds one, so a second
        // connection cannot start and then find the cap reached when it completes.
        close(&mut b, 0, a);
        pending(&mut b, 11, a).unwrap();
        assert_eq!(
            kind_of(pending(&mut b, 12, a).unwrap_err()),
            Kind::Connections
        );
        establish(&mut b, 11, a).unwrap();
        assert_eq!(b.usage(ip("198.51.100.9")), (0, 2));

        // Outbound connections are not counted.
        let mut out = Behaviour::new(8, 0);
        assert!(
            out.handle_established_outbound_connection(
                id(1),
                PeerId::random(),
                &addr(a),
                Endpoint::Dialer,
                PortUse::New,
            )
            .is_ok()
        );
        assert_eq!(out.usage(ip("198.51.100.9")), (0, 0));
    }
}
