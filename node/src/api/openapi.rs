//! `GET /openapi.json`: an OpenAPI 3.1 description of every route, its auth and its schemas.
//!
//! Hand-written JSON rather than generated (utoipa) to keep the dependency tree small; a test
//! checks that it documents exactly the routes of [`routes::table`](super::routes) with the
//! same access, and that every `$ref` resolves, so it cannot drift silently.

use serde_json::{Value, json};

use super::routes::{DEFAULT_LEASE_LIMIT, MAX_LEASE_LIMIT};
use crate::lease::State as LeaseState;

fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": { "application/json": {
        "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn err(description: &str) -> Value {
    ok(description, "Error")
}

fn read(summary: &str, response: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "security": [],
        "responses": { "503": err("The node could not answer in time.") }
    });
    op["responses"]["200"] = response;
    json!({ "get": op })
}

fn write(summary: &str, body: Option<&str>, response: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "security": [{ "bearer": [] }],
        "responses": {
            "400": err("The body is not JSON."),
            "401": err("Missing or wrong bearer token (`WWW-Authenticate: Bearer`)."),
            "408": err("The body did not all arrive within the body-read timeout (10 s by \
                default); the connection is closed."),
            "413": err("The body is larger than the limit (64 KiB by default)."),
            "415": err("A body was sent without `Content-Type: application/json`."),
            "422": err("The body has unknown fields or wrong types."),
            "503": err("The node could not answer in time."),
        }
    });
    op["responses"]["200"] = response;
    if let Some(schema) = body {
        op["requestBody"] = json!({
            "required": false,
            "description": "Optional; an empty body means no options.",
            "content": { "application/json": {
                "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        });
    }
    json!({ "post": op })
}

fn amount(description: &str) -> Value {
    json!({ "type": "string", "pattern": "^[0-9]+$",
            "description": format!("{description} Token base units, decimal string.") })
}

const HEX32: &str = "^0x[0-9a-fA-F]{64}$";
const ADDRESS: &str = "^0x[0-9a-fA-F]{40}$";

/// The document.
pub(crate) fn document() -> Value {
    let states: Vec<&str> = LeaseState::ALL.iter().map(|s| s.as_str()).collect();
    let mut leases = read(
        "This host's leases, newest first.",
        ok("Leases.", "LeaseList"),
    );
    leases["get"]["parameters"] = json!([
        { "name": "state", "in": "query", "required": false,
          "schema": { "type": "string", "enum": states },
          "description": "Only leases in this state." },
        { "name": "limit", "in": "query", "required": false,
          "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LEASE_LIMIT,
                      "default": DEFAULT_LEASE_LIMIT } }
    ]);
    leases["get"]["responses"]["400"] = err("Unknown state, parameter, or limit out of range.");
    let mut lease = read("One lease.", ok("The lease.", "Lease"));
    lease["get"]["parameters"] = json!([
        { "name": "id", "in": "path", "required": true,
          "schema": { "type": "string", "pattern": HEX32 },
          "description": "Lease id: 0x and 64 hex digits (escrow leaseIdOf of the quote)." }
    ]);
    lease["get"]["responses"]["400"] = err("The id is not 0x + 64 hex digits.");
    lease["get"]["responses"]["404"] = err("No such lease on this host.");
    let mut metrics = read(
        "Prometheus text exposition (gpuflow_leases, gpuflow_earnings_base_units, \
         gpuflow_host_reliability, gpuflow_indexer_block, …).",
        json!({ "description": "Metrics.",
                "content": { "text/plain": { "schema": { "type": "string" } } } }),
    );
    metrics["get"]["responses"]["500"] = err("The lease database could not be read.");
    let mut reliability = read(
        "This host's reliability score from the node's index of every escrow event.",
        ok(
            "The score, its inputs and the index's progress.",
            "Reliability",
        ),
    );
    reliability["get"]["responses"]["503"] = err(
        "No chain RPC, the index has not caught up with the chain yet (`index_syncing`), or \
         the node did not answer in time.",
    );
    let mut host = read(
        "Any host's lease history and score, as `gpuflow host --json` shows it.",
        ok("The host's history.", "HostHistory"),
    );
    host["get"]["parameters"] = json!([
        { "name": "address", "in": "path", "required": true,
          "schema": { "type": "string", "pattern": ADDRESS },
          "description": "The host's wallet: 0x and 40 hex digits, any case." }
    ]);
    host["get"]["responses"]["400"] = err("The address is not 0x + 40 hex digits.");
    host["get"]["responses"]["404"] =
        err("The index has no lease and no registration of this host.");
    host["get"]["responses"]["503"] = reliability["get"]["responses"]["503"].clone();
    let mut health = read(
        "Liveness; answers while the API runs.",
        ok("Alive.", "Health"),
    );
    if let Some(r) = health["get"]["responses"].as_object_mut() {
        r.remove("503");
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "GPUFlow node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local API of a GPUFlow host node. GETs are read-only and \
                unauthenticated (the API listens on loopback by default); POSTs need the bearer \
                token from `<data_dir>/api.token`. Errors are `{\"error\": {\"code\", \
                \"message\"}}`. Amounts are token base units as decimal strings. Bounds: 64 \
                connections (16 per IP address; more are closed at once), a request head within \
                5 s and at most 16 KiB (else 431), 30 s idle keep-alive, a body within 10 s of \
                its head (else 408 `body_timeout`) and at most 64 KiB (else 413)."
        },
        "paths": {
            "/health": health,
            "/status": read("Identity, GPUs, offers, peers and chain progress.",
                ok("Status.", "NodeStatus")),
            "/leases": leases,
            "/leases/{id}": lease,
            "/earnings": read("Accrued, withdrawn and pending earnings.",
                ok("Earnings.", "Earnings")),
            "/reliability": reliability,
            "/hosts/{address}": host,
            "/metrics": metrics,
            "/openapi.json": read("This document.",
                json!({ "description": "OpenAPI 3.1 document.",
                        "content": { "application/json": { "schema": { "type": "object" } } } })),
            "/offers/pause": write("Stop publishing this host's offers (running leases go on).",
                Some("PauseRequest"), ok("Paused.", "Paused")),
            "/offers/resume": write("Publish this host's offers again.",
                Some("NoOptions"), ok("Resumed.", "Paused")),
            "/withdraw": write("Withdraw every accrued amount now.",
                Some("NoOptions"), ok("What was withdrawn.", "WithdrawReport")),
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                    "description": "64 hex digits from `<data_dir>/api.token` (mode 0600)." }
            },
            "schemas": schemas(&states),
        }
    })
}

fn schemas(states: &[&str]) -> Value {
    let gpu = json!({
        "type": "object",
        "required": ["model", "count", "vram_mib", "source"],
        "properties": {
            "model": { "type": "string", "examples": ["RTX_4090"] },
            "count": { "type": "integer", "minimum": 0 },
            "vram_mib": { "type": "integer", "minimum": 0 },
            "source": { "type": "string", "enum": ["nvml", "declared"] }
        }
    });
    let nullable_int = json!({ "type": ["integer", "null"], "minimum": 0 });
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "description": "Stable, for scripts." },
                    "message": { "type": "string", "description": "For people." } } } }
        },
        "Health": { "type": "object", "required": ["status"],
            "properties": { "status": { "const": "ok" } } },
        "GpuGroupView": gpu,
        "OfferStatus": {
            "type": "object", "required": ["id", "gpu", "price_per_hour", "expires_at"],
            "properties": {
                "id": { "type": "string", "pattern": "^[0-9a-f]{32}$" },
                "gpu": { "$ref": "#/components/schemas/GpuGroupView" },
                "price_per_hour": amount("Price per hour for the whole offer."),
                "expires_at": { "type": "integer", "description": "Unix seconds." }
            }
        },
        "NodeStatus": {
            "type": "object",
            "required": ["peer_id", "wallet", "gpus", "offers", "offers_paused", "peers",
                         "chain_height", "chain_lag_blocks"],
            "properties": {
                "peer_id": { "type": "string" },
                "wallet": { "type": "string", "pattern": ADDRESS },
                "gpus": { "type": "array", "items": { "$ref": "#/components/schemas/GpuGroupView" } },
                "offers": { "type": "array",
                            "items": { "$ref": "#/components/schemas/OfferStatus" } },
                "offers_paused": { "type": "boolean" },
                "peers": { "type": "integer", "minimum": 0 },
                "chain_height": nullable_int,
                "chain_lag_blocks": nullable_int
            }
        },
        "Earnings": {
            "type": "object",
            "required": ["accrued", "withdrawn", "pending", "block", "token", "decimals"],
            "properties": {
                "accrued": amount("Earned by leases so far, net of the protocol fee: \
                    withdrawn + pending."),
                "withdrawn": amount("Already paid to the host wallet (net)."),
                "pending": amount("Accrued on running leases and not yet withdrawn (net): \
                    what POST /withdraw would collect at `block`."),
                "block": nullable_int,
                "token": { "type": "string", "pattern": ADDRESS },
                "decimals": { "type": "integer", "minimum": 0, "maximum": 255 }
            }
        },
        "PortMapping": { "type": "object", "required": ["workload", "host"],
            "properties": { "workload": { "type": "integer" }, "host": { "type": "integer" } } },
        "Lease": {
            "type": "object",
            "required": ["id", "state", "renter", "price_per_second", "max_duration_secs",
                         "quote_expiry", "spec_hash", "gpus", "ports", "created_at",
                         "updated_at"],
            "properties": {
                "id": { "type": "string", "pattern": HEX32 },
                "state": { "type": "string", "enum": states },
                "renter": { "type": "string", "pattern": ADDRESS },
                "price_per_second": amount("Price per second."),
                "max_duration_secs": { "type": "string", "pattern": "^[0-9]+$" },
                "quote_expiry": { "type": "string", "pattern": "^[0-9]+$",
                                  "description": "Unix seconds." },
                "spec_hash": { "type": "string", "pattern": HEX32 },
                "gpus": { "type": "array", "items": { "type": "string" } },
                "image": { "type": ["string", "null"] },
                "runtime": { "type": ["string", "null"], "enum": ["process", "docker", null] },
                "ports": { "type": "array",
                           "items": { "$ref": "#/components/schemas/PortMapping" } },
                "created_at": { "type": "integer" },
                "updated_at": { "type": "integer" },
                "opened_at": nullable_int,
                "started_at": nullable_int,
                "ended_at": nullable_int,
                "last_error": { "type": ["string", "null"] }
            }
        },
        "LeaseList": {
            "type": "object", "required": ["leases", "truncated"],
            "properties": {
                "leases": { "type": "array", "items": { "$ref": "#/components/schemas/Lease" } },
                "truncated": { "type": "boolean",
                               "description": "More leases matched than `limit`." }
            }
        },
        "Amount": { "type": "object", "required": ["base_units", "formatted"],
            "properties": {
                "base_units": { "type": "string", "pattern": "^[0-9]+$",
                                "description": "Token base units, decimal string." },
                "formatted": { "type": "string", "description": "In whole tokens, exact." } } },
        "Outcomes": {
            "type": "object",
            "required": ["normal_end", "host_closed", "never_started", "host_declined",
                         "cancelled", "running", "unknown"],
            "properties": {
                "normal_end": { "type": "integer", "minimum": 0 },
                "host_closed": { "type": "integer", "minimum": 0 },
                "never_started": { "type": "integer", "minimum": 0 },
                "host_declined": { "type": "integer", "minimum": 0 },
                "cancelled": { "type": "integer", "minimum": 0 },
                "running": { "type": "integer", "minimum": 0 },
                "unknown": { "type": "integer", "minimum": 0 }
            }
        },
        "IndexProgress": {
            "type": "object", "required": ["block", "head", "synced", "error"],
            "properties": {
                "block": { "type": ["integer", "null"], "minimum": 0,
                           "description": "Every escrow event up to this block is indexed." },
                "head": { "type": ["integer", "null"], "minimum": 0,
                          "description": "The chain head the RPC last reported." },
                "synced": { "type": "boolean",
                            "description": "Caught up with the chain once since start." },
                "error": { "type": ["string", "null"],
                           "description": "The last indexing error, if the last step failed." }
            }
        },
        "Reliability": {
            "type": "object",
            "required": ["host", "at", "reliability", "rank", "alpha", "beta", "evidence",
                         "leases", "outcomes", "volume", "first_seen", "registered_at", "index"],
            "properties": {
                "host": { "type": "string", "pattern": ADDRESS },
                "at": { "type": "integer", "description": "Unix seconds the score is for." },
                "reliability": { "type": "number", "description": "α / (α + β); new host 0.6." },
                "rank": { "type": "number", "description": "10th percentile of Beta(α, β)." },
                "alpha": { "type": "number" },
                "beta": { "type": "number" },
                "evidence": { "type": "number", "description": "Weighted evidence, tokens." },
                "leases": { "type": "integer", "minimum": 0 },
                "outcomes": { "$ref": "#/components/schemas/Outcomes" },
                "volume": { "$ref": "#/components/schemas/Amount" },
                "first_seen": nullable_int,
                "registered_at": nullable_int,
                "index": { "$ref": "#/components/schemas/IndexProgress" }
            }
        },
        "HostLease": {
            "type": "object",
            "required": ["lease_id", "renter", "outcome", "paid", "value", "good", "decay",
                         "credibility", "cap_factor", "weight", "opened_at", "started_at",
                         "closed_at", "receipts"],
            "properties": {
                "lease_id": { "type": "string", "pattern": HEX32 },
                "renter": { "type": "string", "pattern": ADDRESS },
                "outcome": { "type": "string", "enum": ["normal_end", "host_closed",
                    "never_started", "host_declined", "cancelled", "running", "unknown"] },
                "paid": { "$ref": "#/components/schemas/Amount" },
                "value": { "$ref": "#/components/schemas/Amount" },
                "good": { "type": ["number", "null"], "description": "Outcome o, 0..1." },
                "decay": { "type": "number" },
                "credibility": { "type": "number" },
                "cap_factor": { "type": "number" },
                "weight": { "type": "number" },
                "opened_at": { "type": "integer" },
                "started_at": nullable_int,
                "closed_at": nullable_int,
                "receipts": { "type": "integer", "minimum": 0 }
            }
        },
        "HostHistory": {
            "type": "object",
            "required": ["host", "peer_id", "registered_at", "first_seen", "leases", "outcomes",
                         "volume", "score", "history", "index", "ignored_receipts", "at"],
            "properties": {
                "host": { "type": "string", "pattern": ADDRESS },
                "peer_id": { "type": ["string", "null"] },
                "registered_at": nullable_int,
                "first_seen": nullable_int,
                "leases": { "type": "integer", "minimum": 0 },
                "outcomes": { "$ref": "#/components/schemas/Outcomes" },
                "volume": { "$ref": "#/components/schemas/Amount" },
                "score": { "type": "object",
                    "required": ["reliability", "rank", "alpha", "beta", "evidence",
                                 "prior_mean", "prior_strength", "rank_quantile"],
                    "properties": {
                        "reliability": { "type": "number" },
                        "rank": { "type": "number" },
                        "alpha": { "type": "number" },
                        "beta": { "type": "number" },
                        "evidence": { "type": "number" },
                        "prior_mean": { "type": "number" },
                        "prior_strength": { "$ref": "#/components/schemas/Amount" },
                        "rank_quantile": { "type": "number" } } },
                "history": { "type": "array",
                             "items": { "$ref": "#/components/schemas/HostLease" } },
                "index": { "$ref": "#/components/schemas/IndexProgress" },
                "ignored_receipts": { "type": "integer", "minimum": 0 },
                "at": { "type": "integer", "description": "Unix seconds the score is for." }
            }
        },
        "PauseRequest": { "type": "object", "additionalProperties": false,
            "properties": { "reason": { "type": "string",
                "description": "Why, for the node's log." } } },
        "NoOptions": { "type": "object", "additionalProperties": false },
        "Paused": { "type": "object", "required": ["paused"],
            "properties": { "paused": { "type": "boolean" } } },
        "WithdrawReport": {
            "oneOf": [
                { "type": "object", "required": ["outcome", "tx_hash", "leases", "amount"],
                  "properties": {
                    "outcome": { "const": "withdrawn" },
                    "tx_hash": { "type": "string", "pattern": HEX32 },
                    "leases": { "type": "array",
                                "items": { "type": "string", "pattern": HEX32 } },
                    "amount": amount("Total withdrawn.") } },
                { "type": "object", "required": ["outcome"],
                  "properties": { "outcome": { "const": "nothing_to_withdraw" } } }
            ]
        }
    })
}
