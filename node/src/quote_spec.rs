//! The lease spec a quote commits to, built from the renter's request and the offer.
//!
//! - `image_or_template` names a built-in template ([`gpuflow_protocol::templates`]) the offer
//!   lists: the spec gets the template's image, ports and command (and its environment);
//! - a name the offer lists that is not a built-in template, or any image where the offer lists
//!   no templates, is used as the container image as it is;
//! - the request's `env` and `ports` come on top (checked here: count, names, reserved names,
//!   duplicates, port 0), each refusal naming the field.
//!
//! Under the process runtime the container command means nothing (the workload is a local
//! process): the spec leaves the command empty, so the engine runs its stand-in workload
//! ([`crate::engine::default_command`]: an HTTP server on the first port, and `sshd` on the
//! port published for container port 22). The engine waits for the *first* port to accept
//! connections, and the stand-in serves HTTP there, so under the process runtime port 22 is
//! never first: it moves behind the app's ports, and a spec whose only port would be 22 (the
//! `pytorch` template) gets [`PROCESS_HTTP_PORT`] in front of it.

use std::collections::BTreeMap;

use gpuflow_protocol::templates;
use gpuflow_protocol::wire::{QuoteRequest, rules};

use super::QuoteError;
use crate::lease::spec::LeaseSpec;
use crate::runtime::RuntimeKind;

pub use gpuflow_protocol::wire::rules::MAX_ENV_NAME_BYTES;

/// The port put first in a process-runtime spec whose only port is SSH: the stand-in HTTP
/// server listens there, and the engine's readiness check connects to the first port.
pub const PROCESS_HTTP_PORT: u16 = 8080;

/// The spec for `req` on the leased `devices`, for a host running `runtime`.
pub(super) fn build(
    req: &QuoteRequest,
    devices: Vec<String>,
    runtime: RuntimeKind,
) -> Result<LeaseSpec, QuoteError> {
    check_env(&req.env)?;
    check_ports(&req.ports)?;
    let process = runtime == RuntimeKind::Process;
    let (image, mut ports, command, mut env) = match templates::find(&req.image_or_template) {
        Some(t) => (
            t.image.to_owned(),
            t.ports.to_vec(),
            if process {
                Vec::new()
            } else {
                t.command.iter().map(|&a| a.to_owned()).collect()
            },
            t.env
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        None => (
            req.image_or_template.clone(),
            Vec::new(),
            Vec::new(),
            BTreeMap::new(),
        ),
    };
    // A port the template already publishes is not published twice.
    for &p in &req.ports {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    if process {
        http_first(&mut ports);
    }
    env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(LeaseSpec {
        gpus: devices,
        image: Some(image),
        command,
        env,
        ssh_public_key: Some(req.ssh_public_key.clone()),
        ports,
        ..LeaseSpec::default()
    })
}

/// Moves SSH behind the other ports, adding [`PROCESS_HTTP_PORT`] when SSH is the only one,
/// so the first port is the stand-in's HTTP server (see the module docs).
fn http_first(ports: &mut Vec<u16>) {
    let Some(i) = ports.iter().position(|&p| p == templates::SSH_PORT) else {
        return;
    };
    ports.remove(i);
    if ports.is_empty() {
        ports.push(PROCESS_HTTP_PORT);
    }
    ports.push(templates::SSH_PORT);
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), QuoteError> {
    rules::check_env(env).map_err(|why| QuoteError::Env { why })
}

fn check_ports(ports: &[u16]) -> Result<(), QuoteError> {
    rules::check_ports(ports).map_err(|why| QuoteError::Ports { why })
}
