//! What `korm wal` prints: a text for people and a JSON value for scripts, from the same
//! data. Item data is shown as stored: encrypted values stay envelopes (in JSON) or
//! `<encrypted>` (for people); nothing is ever decrypted.

use std::fmt::Write as _;

use korm::wal::{Record, RecordState, RecoveryReport};
use serde_json::{Map, Value, json};

use super::{Status, Verdict};

/// An op type's name as the record spells it (`insert`, `put`, ...): the enums are
/// non-exhaustive, and their serde names are their lowercased variant names.
fn name_of(kind: impl std::fmt::Debug) -> String {
    format!("{kind:?}").to_lowercase()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Every RN a record touches, items first, each once.
fn rns_of(record: &Record) -> Vec<&str> {
    let mut rns: Vec<&str> = Vec::new();
    let all = record.ops.iter().map(|op| op.rn.as_str());
    for rn in all.chain(record.depot_ops.iter().map(|op| op.rn.as_str())) {
        if !rns.contains(&rn) {
            rns.push(rn);
        }
    }
    rns
}

/// The first RNs of a list, and how many more there are.
fn short_rns(rns: &[&str]) -> String {
    const SHOWN: usize = 3;
    let mut text = rns[..rns.len().min(SHOWN)].join(", ");
    if rns.len() > SHOWN {
        let _ = write!(text, " (+{} more)", rns.len() - SHOWN);
    }
    text
}

/// `korm wal status`, for people.
pub(super) fn status_text(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "WAL {} in {}", status.folder, status.dir);
    let _ = writeln!(out, "pending: {}", status.pending.len());
    for record in &status.pending {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}, {}",
            record.id,
            record.created_at,
            record.state.as_str(),
            plural(record.ops.len(), "op", "ops"),
            plural(record.depot_ops.len(), "depot op", "depot ops"),
        );
        let rns = rns_of(record);
        if !rns.is_empty() {
            let _ = writeln!(out, "      {}", short_rns(&rns));
        }
    }
    let _ = write!(out, "refused: {}", status.refused.len());
    if !status.refused.is_empty() {
        out.push_str(" (never replayed: look at each file, then move it out of pending/)");
    }
    out.push('\n');
    for refused in &status.refused {
        let _ = writeln!(out, "  {}  {}", refused.id, refused.reason);
        let _ = writeln!(out, "      {}", refused.path);
    }
    let _ = writeln!(out, "done: {}", status.done);
    let _ = writeln!(out, "status: {}", status.verdict().as_str());
    out
}

/// `korm wal status --json`.
pub(super) fn status_json(status: &Status) -> Value {
    let pending: Vec<Value> = status
        .pending
        .iter()
        .map(|record| {
            json!({
                "id": record.id,
                "createdAt": record.created_at,
                "state": record.state.as_str(),
                "ops": record.ops.len(),
                "depotOps": record.depot_ops.len(),
                "rns": rns_of(record),
            })
        })
        .collect();
    let refused: Vec<Value> = status
        .refused
        .iter()
        .map(|r| json!({ "id": r.id, "reason": r.reason, "path": r.path }))
        .collect();
    json!({
        "status": status.verdict().as_str(),
        "namespace": status.namespace,
        "poolId": status.pool_id,
        "folder": status.folder,
        "pending": pending,
        "refused": refused,
        "done": status.done,
    })
}

/// `korm wal show`, for people: every op with its RN, data and before-image.
pub(super) fn record_text(record: &Record) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "record {}  {}", record.id, record.state.as_str());
    let _ = writeln!(
        out,
        "pool {}, namespace {}",
        record.pool_id, record.namespace
    );
    let _ = writeln!(out, "created {}", record.created_at);
    if let Some(completed) = &record.completed_at {
        let _ = writeln!(out, "completed {completed}");
    }
    let _ = writeln!(out, "{}:", plural(record.ops.len(), "op", "ops"));
    for (n, op) in record.ops.iter().enumerate() {
        let _ = write!(out, "  {}. {} {}", n + 1, name_of(op.kind), op.rn);
        if op.destructive {
            out.push_str("  (destructive)");
        }
        out.push('\n');
        for (label, data) in [("before", &op.before), ("data", &op.data)] {
            if let Some(data) = data {
                let _ = writeln!(out, "     {label}:");
                fields(&mut out, data);
            }
        }
    }
    if !record.depot_ops.is_empty() {
        let _ = writeln!(
            out,
            "{}:",
            plural(record.depot_ops.len(), "depot op", "depot ops")
        );
        for (n, op) in record.depot_ops.iter().enumerate() {
            let _ = writeln!(out, "  {}. {} {}", n + 1, name_of(op.kind), op.rn);
            if let Some(after) = &op.payload_rn {
                let _ = writeln!(out, "     new content: {after}");
            }
            let before = op.before_payload_rn.as_deref().unwrap_or("none (no file)");
            let _ = writeln!(out, "     old content: {before}");
        }
    }
    out
}

/// `korm wal show --json`: the record as korm stores it, without its MAC.
pub(super) fn record_json(record: &Record) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

fn fields(out: &mut String, data: &Map<String, Value>) {
    for (name, value) in data {
        let _ = write!(out, "       {name}: ");
        redacted(out, value);
        out.push('\n');
    }
}

/// A value as JSON, with each encryption envelope (a sealed value, a password hash) named
/// instead of printed, as `korm show` does.
fn redacted(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) if map.get("__ENCRYPTED__") == Some(&Value::Bool(true)) => {
            out.push_str(match map.get("type").and_then(Value::as_str) {
                Some("password") => "<password hash>",
                _ => "<encrypted>",
            });
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                redacted(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, value) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                redacted(out, value);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn outcome(state: RecordState) -> &'static str {
    match state {
        RecordState::Done => "brought forward",
        RecordState::Failed => "rolled back",
        _ => "finished",
    }
}

/// `korm wal recover`, for people.
pub(super) fn report_text(pool_id: &str, namespace: &str, report: &RecoveryReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "WAL of pool {pool_id}, namespace {namespace}");
    let _ = writeln!(out, "recovered: {}", report.recovered.len());
    for record in &report.recovered {
        let _ = writeln!(
            out,
            "  {}  {} ({}), {} changed, {} superseded",
            record.id,
            outcome(record.outcome),
            record.outcome.as_str(),
            plural(record.applied, "item or file", "items or files"),
            record.superseded.len(),
        );
        for rn in &record.superseded {
            let _ = writeln!(out, "      superseded (written since, left alone): {rn}");
        }
    }
    let _ = write!(out, "refused: {}", report.refused.len());
    if !report.refused.is_empty() {
        out.push_str(" (never replayed: see `korm wal status`)");
    }
    out.push('\n');
    for refused in &report.refused {
        let _ = writeln!(out, "  {}  {}", refused.id, refused.reason);
    }
    let _ = writeln!(out, "status: {}", Verdict::of_report(report).as_str());
    out
}

/// `korm wal recover --json`.
pub(super) fn report_json(pool_id: &str, namespace: &str, report: &RecoveryReport) -> Value {
    let recovered: Vec<Value> = report
        .recovered
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "outcome": r.outcome.as_str(),
                "applied": r.applied,
                "superseded": r.superseded,
            })
        })
        .collect();
    let refused: Vec<Value> = report
        .refused
        .iter()
        .map(|r| json!({ "id": r.id, "reason": r.reason }))
        .collect();
    json!({
        "status": Verdict::of_report(report).as_str(),
        "namespace": namespace,
        "poolId": pool_id,
        "recovered": recovered,
        "refused": refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        serde_json::from_value(json!({
            "version": 4,
            "id": "b10aa01f-2a98-45bd-9b64-2bb7d4eb856b",
            "poolId": "e5d9906025b1b75f",
            "namespace": "orders",
            "createdAt": "2026-11-26T16:13:58.037Z",
            "state": "pending",
            "ops": [
                {"type": "update", "rn": "[rn][from::userdb]:users:vip:3df3face",
                 "before": {"name": "fred", "ssn": {"__ENCRYPTED__": true, "type": "symmetric",
                     "value": "376f2be2", "keyId": "k1"}},
                 "data": {"name": "freddie", "pw": {"__ENCRYPTED__": true, "type": "password",
                     "value": "$argon2id$x"}, "tags": ["a", {"b": 1}]}},
                {"type": "delete", "rn": "[rn][from::userdb]:users:vip:0ff",
                 "before": {"name": "gone"}}
            ],
            "depotOps": [
                {"type": "put", "rn": "[rn][depot::files]:invoices:fred:001.txt",
                 "payloadRn": "[rn][depot::wal]:__korm_wal__:orders:e5d9906025b1b75f:payloads:b10aa01f-2a98-45bd-9b64-2bb7d4eb856b:0:after.bin"}
            ]
        }))
        .expect("a record")
    }

    #[test]
    fn people_see_each_op_and_no_secret() {
        let text = record_text(&record());
        for expected in [
            "record b10aa01f-2a98-45bd-9b64-2bb7d4eb856b  pending",
            "2 ops:",
            "  1. update [rn][from::userdb]:users:vip:3df3face",
            "       ssn: <encrypted>",
            "       pw: <password hash>",
            "       tags: [\"a\", {\"b\": 1}]",
            "  2. delete [rn][from::userdb]:users:vip:0ff",
            "1 depot op:",
            "  1. put [rn][depot::files]:invoices:fred:001.txt",
            "     old content: none (no file)",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert!(
            !text.contains("376f2be2") && !text.contains("argon2"),
            "{text}"
        );
        let before = text.find("name: \"fred\"").expect("before");
        let after = text.find("name: \"freddie\"").expect("data");
        assert!(before < after, "the before-image comes first\n{text}");
    }

    #[test]
    fn json_is_the_record_as_stored() {
        let json = record_json(&record());
        assert_eq!(json["ops"][0]["before"]["ssn"]["value"], "376f2be2");
        assert_eq!(json["depotOps"][0]["type"], "put");
        assert_eq!(
            serde_json::from_value::<Record>(json).expect("back"),
            record()
        );
    }

    #[test]
    fn long_rn_lists_are_cut_short() {
        let rns = ["a", "b", "c", "d", "e"];
        assert_eq!(short_rns(&rns), "a, b, c (+2 more)");
        assert_eq!(short_rns(&rns[..2]), "a, b");
        assert_eq!(rns_of(&record()).len(), 3);
    }
}
