//! [`LeaseFront`]: the lease engine's face to the p2p lease protocol, used by the quote desk's
//! task ([`crate::quote::serve`]): issued quotes recorded with their holds, which GPUs the lease
//! table says are taken, renters' balances, and the answers to `Opened` and `Status`.

use super::*;

/// The lease engine's face to the p2p lease protocol. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaseFront {
    pub(super) repo: LeaseRepo,
    pub(super) domain: Eip712Domain,
    pub(super) engine: EngineHandle,
    pub(super) public_host: String,
    /// Reads renters' balances before a quote holds GPUs for them.
    pub(super) reader: DynProvider,
    /// The escrow's token.
    pub(super) token: Address,
    /// What the runtime is doing for leases it is getting ready.
    pub(super) board: Option<crate::runtime::progress::LaunchBoard>,
    /// Where workloads' output is read for `gpuflow logs`.
    pub(super) logs: crate::runtime::logs::LogReader,
}

/// A renter wallet's money, as [`LeaseFront::funds`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funds {
    /// Token base units.
    pub token: U256,
    /// Native balance (gas), wei.
    pub gas: U256,
    /// The chain's gas price now, wei.
    pub gas_price: u128,
}

impl LeaseFront {
    /// Stores the `Quoted` record of a quote just issued, so the engine knows the lease when it
    /// is opened.
    pub async fn record_quote(
        &self,
        q: &SignedQuote,
        now: u64,
        held_until: u64,
    ) -> Result<(), EngineError> {
        // The spec JSON was produced by the desk from a `LeaseSpec`; it parses back.
        let spec: LeaseSpec = serde_json::from_str(&q.spec).unwrap_or_default();
        let rec = LeaseRecord::quoted(
            q.quote.clone().into(),
            q.signature.clone(),
            spec,
            &self.domain,
            now,
        );
        self.repo.insert(&rec).await?;
        self.repo.set_hold(rec.id, held_until).await?;
        Ok(())
    }

    /// The quote that becomes `lease` holds its GPUs until `until` (0: not at all).
    pub async fn hold(&self, lease: B256, until: u64) -> Result<(), EngineError> {
        Ok(self.repo.set_hold(lease, until).await?)
    }

    /// `renter`'s token and gas balances and the gas price, read concurrently.
    pub async fn funds(&self, renter: Address) -> Result<Funds, EngineError> {
        let token = MockStablecoin::new(self.token, self.reader.clone());
        let bal = token.balanceOf(renter);
        let (tokens, gas, price) = tokio::join!(
            bal.call(),
            self.reader.get_balance(renter),
            self.reader.get_gas_price()
        );
        let chain = |what| move |source| EngineError::Chain { what, source };
        Ok(Funds {
            token: tokens.map_err(|source| EngineError::Escrow {
                what: "the renter's token balance",
                source,
            })?,
            gas: gas.map_err(chain("the renter's gas balance"))?,
            gas_price: price.map_err(chain("the gas price"))?,
        })
    }

    /// GPUs that must not be quoted at `now`: those of leases that are open or running (until
    /// their workload is stopped) and of quotes that still hold them (their hold may predate a
    /// restart of the node, which forgets the desk's in-memory reservations).
    pub async fn busy_devices(&self, now: u64) -> Result<HashSet<String>, EngineError> {
        let mut busy = HashSet::new();
        for rec in self.repo.in_states(&ACTIVE).await? {
            busy.extend(rec.spec.gpus);
        }
        let holds = self.repo.holds().await?;
        for rec in self.repo.in_states(&[State::Quoted]).await? {
            // Held until its hold ends (never past its expiry: it cannot be opened then).
            let expiry = u64::try_from(rec.quote.expiry).unwrap_or(u64::MAX);
            let until = holds.get(&rec.id).copied().unwrap_or(expiry).min(expiry);
            if until > now {
                busy.extend(rec.spec.gpus);
            }
        }
        Ok(busy)
    }

    /// When `renter`'s pending leases on this host were cancelled since `since` (oldest first).
    pub async fn cancelled_by(&self, renter: Address, since: u64) -> Result<Vec<u64>, EngineError> {
        Ok(self.repo.cancelled_by(renter, since).await?)
    }

    /// Whether the quote that becomes `lease` was opened (or has ended): its GPUs are then
    /// accounted for by [`LeaseFront::busy_devices`], not by the quote's reservation.
    pub async fn opened_or_done(&self, lease: B256) -> Result<bool, EngineError> {
        Ok(self
            .repo
            .get(lease)
            .await?
            .is_some_and(|r| r.state != State::Quoted))
    }

    /// The answer to `Opened`: Ack for a lease this host quoted, and a nudge to the engine.
    pub async fn opened(&self, lease: B256) -> LeaseResponse {
        match self.repo.get(lease).await {
            Ok(Some(_)) => {
                if !self.engine.nudge(lease) {
                    tracing::debug!(target: "lease", %lease, "engine busy; the watcher will pick the lease up");
                }
                LeaseResponse::Ack
            }
            Ok(None) => unknown(lease),
            Err(e) => LeaseResponse::error(code::INTERNAL, e.to_string()),
        }
    }

    /// The answer to `Status`: the state, and where to connect once the workload runs.
    pub async fn status(&self, lease: B256) -> LeaseResponse {
        match self.repo.get(lease).await {
            Ok(Some(rec)) => {
                let ports: Vec<PortMap> = rec
                    .workload
                    .as_ref()
                    .filter(|_| rec.state == State::Running)
                    .map(|w| {
                        w.ports
                            .iter()
                            .map(|p| PortMap {
                                container: p.workload,
                                host: p.host,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let port = ports.first().map(|p| p.host);
                // The SSH login: root in a container; the node's own user for a process.
                let user = rec
                    .workload
                    .as_ref()
                    .filter(|_| ports.iter().any(|p| p.container == SSH_PORT))
                    .and_then(|w| match w.kind {
                        RuntimeKind::Docker => Some("root".to_owned()),
                        RuntimeKind::Process => crate::runtime::process::login_user(),
                    });
                let preparing = self.board.as_ref().and_then(|b| b.get(lease));
                LeaseResponse::Status(LeaseStatus {
                    lease_id: lease,
                    state: rec.state.as_str().to_owned(),
                    host: port.map(|_| self.public_host.clone()),
                    port,
                    ports,
                    user,
                    phase: preparing.map(|p| p.phase.to_owned()),
                    pull: preparing
                        .filter(|p| p.phase == "pulling")
                        .map(|p| PullProgress {
                            done: p.done,
                            total: p.total,
                        }),
                    error: rec.last_error.map(cut_message),
                })
            }
            Ok(None) => unknown(lease),
            Err(e) => LeaseResponse::error(code::INTERNAL, e.to_string()),
        }
    }
}

impl LeaseFront {
    /// The answer to `Logs`: a chunk of the workload's output, for the lease's renter only
    /// (signed for this host, `host_peer`, recently at `now`).
    pub async fn logs(&self, req: &LogsRequest, host_peer: &str, now: u64) -> LeaseResponse {
        if let Err(e) =
            gpuflow_protocol::request_auth::verify_logs(req, host_peer, now, &self.domain)
        {
            return LeaseResponse::error(code::UNAUTHORIZED, e.to_string());
        }
        if req.tail > MAX_LOG_TAIL {
            return LeaseResponse::error(
                code::INVALID_REQUEST,
                format!(
                    "tail {} is over the limit of {MAX_LOG_TAIL} lines",
                    req.tail
                ),
            );
        }
        let rec = match self.repo.get(req.lease_id).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return unknown(req.lease_id),
            Err(e) => return LeaseResponse::error(code::INTERNAL, e.to_string()),
        };
        if rec.quote.renter != req.renter {
            return LeaseResponse::error(
                code::UNAUTHORIZED,
                "only the lease's renter may read its workload's output",
            );
        }
        let Some(workload) = &rec.workload else {
            return LeaseResponse::error(
                code::INVALID_REQUEST,
                format!(
                    "lease {} has no workload now (state {}); output is kept while it runs",
                    req.lease_id,
                    rec.state.as_str()
                ),
            );
        };
        // Escaping can grow text up to six-fold: shrink until the answer fits the wire limit.
        let mut max = MAX_LOG_CHUNK_BYTES;
        loop {
            let chunk = match self.logs.read(workload, req.cursor, req.tail, max).await {
                Ok(c) => c,
                Err(e) => return LeaseResponse::error(code::INTERNAL, e.to_string()),
            };
            let answer = LeaseResponse::Logs(chunk);
            if answer.encode().len() <= MAX_LEASE_RESPONSE_BYTES || max <= 64 {
                return answer;
            }
            max /= 2;
        }
    }
}

fn unknown(lease: B256) -> LeaseResponse {
    LeaseResponse::error(
        code::INVALID_REQUEST,
        format!("lease {lease} was not quoted by this host; check the lease id"),
    )
}
