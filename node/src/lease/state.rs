//! The lease state machine: one table of allowed transitions.
//!
//! Every change of a lease's state goes through [`next`], which looks the pair (state, event) up
//! in [`TRANSITIONS`]; anything not in the table is refused with a [`TransitionError`]. Keeping
//! the rules in one table (instead of `if`s spread over the engine) is what lets one test check
//! that *every* other pair is refused.
//!
//! The happy path is `New → Quoted → Opened → Starting → Launching → Running → Ending → Closed`.
//! `Launching` sits between the chain `start` (billing runs from here) and the workload being up,
//! because the two can fail separately and need different clean-up. A lease the renter closes
//! while it runs goes through `Stopping` (chain already closed, workload still to stop) instead of
//! `Ending` (host stops the workload, then closes on chain).
//!
//! The chain is the source of truth for money: events named `…Seen`/`…Confirmed` come from the
//! chain watcher, the others from the engine's own actions or timers. A chain reorg that removes
//! an event the engine already applied is not a transition: the engine re-reads the lease from
//! the chain and rebuilds the record.

use std::fmt;
use std::str::FromStr;

/// Where a lease is in its life, as this host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// A quote request was accepted and GPUs reserved; the quote is not signed yet. Never stored.
    New,
    /// The host signed and sent a quote; waiting for the renter to `open` it on chain.
    Quoted,
    /// The renter opened the lease on chain (deposit held); the host has to `start` it.
    Opened,
    /// The host's `start` transaction is in flight.
    Starting,
    /// Started on chain (billing runs); the workload is being launched.
    Launching,
    /// The workload is up and the lease is funded.
    Running,
    /// The host is ending the lease: stop the workload, then `close` on chain.
    Ending,
    /// The lease was closed on chain by the other party; the workload is being stopped.
    Stopping,
    /// Done: closed on chain and the workload stopped. Terminal.
    Closed,
    /// The quote expired without being opened; the reservation is released. Terminal.
    QuoteExpired,
    /// The renter closed the lease before the host started it (full refund). Terminal.
    Cancelled,
    /// The host let the accept timeout pass without starting (full refund to the renter; hurts
    /// the host's reliability score). Terminal.
    NeverStarted,
    /// `start` would revert or reverted (e.g. the lease was closed meanwhile). Terminal.
    StartFailed,
}

/// Something that happened to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// The host signed and sent the quote.
    QuoteIssued,
    /// The quote's expiry passed and no `LeaseOpened` was seen.
    QuoteExpiryPassed,
    /// The chain watcher saw `LeaseOpened` for the quote.
    LeaseOpenedSeen,
    /// The host sent its `start` transaction (persisted before sending).
    StartSent,
    /// `LeaseStarted` was seen on chain (or the `start` receipt succeeded).
    StartConfirmed,
    /// The `start` transaction was not mined and did not revert (RPC failure, dropped); the
    /// engine may try again after simulating the call.
    StartTxLost,
    /// `start` reverted, or its simulation said it would (decoded custom error).
    StartRejected,
    /// The accept timeout passed before the host started the lease.
    AcceptTimeoutPassed,
    /// The workload is up and reachable.
    WorkloadUp,
    /// The workload could not be launched.
    LaunchFailed,
    /// The running workload exited or vanished.
    WorkloadDied,
    /// The deposit is used up (accrued == deposit).
    DepositExhausted,
    /// `LeaseClosed` was seen on chain.
    CloseSeen,
    /// The runtime confirmed the workload is stopped and removed.
    WorkloadStopped,
}

/// The allowed transitions: `(from, event, to)`. Every pair not listed is refused.
pub const TRANSITIONS: &[(State, Event, State)] = {
    use Event as E;
    use State as S;
    &[
        (S::New, E::QuoteIssued, S::Quoted),
        (S::Quoted, E::LeaseOpenedSeen, S::Opened),
        (S::Quoted, E::QuoteExpiryPassed, S::QuoteExpired),
        (S::Opened, E::StartSent, S::Starting),
        // The chain is the source of truth: a start seen there (e.g. sent before a crash that
        // lost the `StartSent` write) moves the lease on.
        (S::Opened, E::StartConfirmed, S::Launching),
        (S::Opened, E::StartRejected, S::StartFailed),
        (S::Opened, E::AcceptTimeoutPassed, S::NeverStarted),
        (S::Opened, E::CloseSeen, S::Cancelled),
        (S::Starting, E::StartConfirmed, S::Launching),
        (S::Starting, E::StartTxLost, S::Opened),
        (S::Starting, E::StartRejected, S::StartFailed),
        (S::Starting, E::CloseSeen, S::Cancelled),
        (S::Launching, E::WorkloadUp, S::Running),
        (S::Launching, E::LaunchFailed, S::Ending),
        (S::Launching, E::CloseSeen, S::Stopping),
        (S::Running, E::DepositExhausted, S::Ending),
        (S::Running, E::WorkloadDied, S::Ending),
        (S::Running, E::CloseSeen, S::Stopping),
        // The engine stops the workload before it sends `close`, so the close seen on chain
        // ends the lease.
        (S::Ending, E::CloseSeen, S::Closed),
        (S::Stopping, E::WorkloadStopped, S::Closed),
    ]
};

/// An event that is not allowed in the lease's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "lease event {event} is not allowed in state {from}; the lease record is unchanged (a \
     duplicate or out-of-order event, or a bug in the engine)"
)]
pub struct TransitionError {
    /// The state the lease was in.
    pub from: State,
    /// The refused event.
    pub event: Event,
}

/// The state after `event` happens in `state`, or an error if the table does not allow it.
pub fn next(state: State, event: Event) -> Result<State, TransitionError> {
    TRANSITIONS
        .iter()
        .find(|(from, ev, _)| *from == state && *ev == event)
        .map(|(_, _, to)| *to)
        .ok_or(TransitionError { from: state, event })
}

impl State {
    /// Every state, for exhaustive checks.
    pub const ALL: [State; 13] = [
        State::New,
        State::Quoted,
        State::Opened,
        State::Starting,
        State::Launching,
        State::Running,
        State::Ending,
        State::Stopping,
        State::Closed,
        State::QuoteExpired,
        State::Cancelled,
        State::NeverStarted,
        State::StartFailed,
    ];

    /// No transition leaves this state.
    pub fn is_terminal(self) -> bool {
        !TRANSITIONS.iter().any(|(from, _, _)| *from == self)
    }

    /// The name stored in the database and shown in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::New => "new",
            State::Quoted => "quoted",
            State::Opened => "opened",
            State::Starting => "starting",
            State::Launching => "launching",
            State::Running => "running",
            State::Ending => "ending",
            State::Stopping => "stopping",
            State::Closed => "closed",
            State::QuoteExpired => "quote_expired",
            State::Cancelled => "cancelled",
            State::NeverStarted => "never_started",
            State::StartFailed => "start_failed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`State::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lease state {0:?} in the database (written by a newer node version?)")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl Event {
    /// Every event, for exhaustive checks.
    pub const ALL: [Event; 14] = [
        Event::QuoteIssued,
        Event::QuoteExpiryPassed,
        Event::LeaseOpenedSeen,
        Event::StartSent,
        Event::StartConfirmed,
        Event::StartTxLost,
        Event::StartRejected,
        Event::AcceptTimeoutPassed,
        Event::WorkloadUp,
        Event::LaunchFailed,
        Event::WorkloadDied,
        Event::DepositExhausted,
        Event::CloseSeen,
        Event::WorkloadStopped,
    ];
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::{Event as E, State as S, *};

    /// The lifecycle written out once more, independently of [`TRANSITIONS`]: a row added,
    /// removed or changed there without being meant fails here.
    const EXPECTED: &[(S, E, S)] = &[
        (S::New, E::QuoteIssued, S::Quoted),
        (S::Quoted, E::LeaseOpenedSeen, S::Opened),
        (S::Quoted, E::QuoteExpiryPassed, S::QuoteExpired),
        (S::Opened, E::StartSent, S::Starting),
        (S::Opened, E::StartConfirmed, S::Launching),
        (S::Opened, E::StartRejected, S::StartFailed),
        (S::Opened, E::AcceptTimeoutPassed, S::NeverStarted),
        (S::Opened, E::CloseSeen, S::Cancelled),
        (S::Starting, E::StartConfirmed, S::Launching),
        (S::Starting, E::StartTxLost, S::Opened),
        (S::Starting, E::StartRejected, S::StartFailed),
        (S::Starting, E::CloseSeen, S::Cancelled),
        (S::Launching, E::WorkloadUp, S::Running),
        (S::Launching, E::LaunchFailed, S::Ending),
        (S::Launching, E::CloseSeen, S::Stopping),
        (S::Running, E::DepositExhausted, S::Ending),
        (S::Running, E::WorkloadDied, S::Ending),
        (S::Running, E::CloseSeen, S::Stopping),
        (S::Ending, E::CloseSeen, S::Closed),
        (S::Stopping, E::WorkloadStopped, S::Closed),
    ];

    #[test]
    fn every_expected_transition_is_allowed_and_nothing_else_is_in_the_table() {
        for &(from, ev, to) in EXPECTED {
            assert_eq!(next(from, ev), Ok(to), "{from} + {ev}");
        }
        let mut table: Vec<_> = TRANSITIONS.to_vec();
        let mut expected: Vec<_> = EXPECTED.to_vec();
        table.sort();
        expected.sort();
        assert_eq!(table, expected);
    }

    #[test]
    fn every_event_is_used_and_every_state_is_reached() {
        for ev in E::ALL {
            assert!(
                TRANSITIONS.iter().any(|(_, e, _)| *e == ev),
                "{ev} is never used"
            );
        }
        for st in S::ALL.into_iter().filter(|s| *s != S::New) {
            assert!(
                TRANSITIONS.iter().any(|(_, _, to)| *to == st),
                "{st} is never reached"
            );
        }
    }

    #[test]
    fn every_pair_not_in_the_table_is_refused() {
        let mut allowed = 0;
        for from in S::ALL {
            for ev in E::ALL {
                let listed = TRANSITIONS.iter().find(|(f, e, _)| *f == from && *e == ev);
                match listed {
                    Some((_, _, to)) => {
                        allowed += 1;
                        assert_eq!(next(from, ev), Ok(*to));
                    }
                    None => assert_eq!(
                        next(from, ev),
                        Err(TransitionError { from, event: ev }),
                        "{from} + {ev} must be refused"
                    ),
                }
            }
        }
        assert_eq!(allowed, TRANSITIONS.len());
    }

    #[test]
    fn table_has_no_duplicate_pairs_and_terminal_states_are_final() {
        for (i, (f, e, _)) in TRANSITIONS.iter().enumerate() {
            assert!(
                !TRANSITIONS[i + 1..]
                    .iter()
                    .any(|(f2, e2, _)| f2 == f && e2 == e),
                "{f} + {e} listed twice"
            );
        }
        let terminal: Vec<S> = S::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                S::Closed,
                S::QuoteExpired,
                S::Cancelled,
                S::NeverStarted,
                S::StartFailed
            ]
        );
        // New is the only entry point, and every state can reach a terminal one.
        for (_, _, to) in TRANSITIONS {
            assert_ne!(*to, S::New);
        }
        for start in S::ALL {
            let mut seen = vec![start];
            let mut i = 0;
            while i < seen.len() {
                for (f, _, to) in TRANSITIONS {
                    if *f == seen[i] && !seen.contains(to) {
                        seen.push(*to);
                    }
                }
                i += 1;
            }
            assert!(
                seen.iter().any(|s| s.is_terminal()),
                "{start} is a dead end"
            );
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
        }
        assert!("paused".parse::<S>().is_err());
    }

    #[test]
    fn refusal_message_names_state_and_event() {
        let msg = next(S::Closed, E::WorkloadUp).unwrap_err().to_string();
        assert!(
            msg.contains("WorkloadUp") && msg.contains("closed"),
            "{msg}"
        );
    }
}
