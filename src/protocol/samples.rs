//! Real messages of every conversation, for tests of the decoder and as seeds for fuzzing:
//! every kind of request and reply, with values of every type.

use std::collections::{BTreeMap, BTreeSet};

use hyperdex_model::value::Document;
use hyperdex_model::{Check, Func, Funcall, NumOp, Operation, Predicate, Reply, ReturnCode, Value};

use super::{
    AdminCommand, AdminOutput, ChainAck, ChainMessage, ChainWrite, ClientRequest, ClientResponse,
    CoordRequest, CoordResponse, Dedupe, Envelope, Message, OpRequest, SearchRequest, TransferAck,
    TransferData, TransferEntry, TransferQuery,
};
use crate::config::{Config, RegionId, ServerId, SpaceId};

fn values() -> Vec<(&'static str, Value)> {
    vec![
        ("s", Value::string("text")),
        ("i", Value::Int(-7)),
        ("f", Value::Float(0.25)),
        (
            "d",
            Value::Document(
                Document::parse(br#"{"a": [1, {"b": null}]}"#)
                    .unwrap_or_else(|_| Document::empty()),
            ),
        ),
        ("t", Value::Timestamp(1_700_000_000_000_000)),
        ("l", Value::List(vec![Value::Int(1), Value::Int(2)])),
        (
            "e",
            Value::Set(BTreeSet::from([Value::string("a"), Value::string("b")])),
        ),
        (
            "m",
            Value::Map(BTreeMap::from([(Value::string("k"), Value::Float(1.5))])),
        ),
    ]
}

fn region() -> RegionId {
    RegionId {
        space: SpaceId(1),
        index: 3,
    }
}

fn client(op: Operation) -> Message {
    Message::ToDaemon(ClientRequest::Op(OpRequest {
        config_version: 5,
        client: 42,
        seq: 9,
        low_seq: 3,
        op,
        auth: vec!["MDAxY2xvY2F0aW9uIGFjY291bnQK".into()],
        first_unix: 1_700_000_000,
    }))
}

fn operations() -> Vec<Operation> {
    let checks = vec![
        Check::new("i", Predicate::Range(Value::Int(1), Value::Int(9))),
        Check::new("s", Predicate::Regex("^te.*".into())),
        Check::new("l", Predicate::Contains(Value::Int(2))),
        Check::new("s", Predicate::LengthGreaterEqual(2)),
    ];
    vec![
        Operation::get("space", "key"),
        Operation::put("space", "key", values()),
        Operation::cond_put("space", "key", checks.clone(), vec![("i", Value::Int(1))]),
        Operation::del("space", Value::Int(3)),
        Operation::atomic(NumOp::Div, "space", "key", vec![("i", Value::Int(2))]),
        Operation::funcs(
            "space",
            "key",
            vec![
                Funcall::new("m", Func::MapAdd(Value::string("k"), Value::Float(2.0))),
                Funcall::new("d.a[1].b", Func::DocumentUnset),
                Funcall::new("e", Func::SetUnion(Value::Set(BTreeSet::new()))),
            ],
        ),
        Operation::search("space", checks),
    ]
}

/// One envelope of every kind, as a running cluster sends them.
pub fn sample_envelopes() -> Vec<Envelope> {
    let mut msgs: Vec<Message> = operations().into_iter().map(client).collect();
    let object: hyperdex_model::Object = values()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let chain_object = object.clone();
    msgs.extend([
        Message::ToDaemon(ClientRequest::Search(SearchRequest {
            config_version: 5,
            space: "space".into(),
            regions: vec![region()],
            checks: vec![Check::new("i", Predicate::Equals(Value::Int(1)))],
            after: Some((region(), b"k".to_vec())),
            count_only: false,
            keys: Vec::new(),
        })),
        Message::ToDaemon(ClientRequest::Search(SearchRequest {
            config_version: 5,
            space: "space".into(),
            regions: vec![region()],
            checks: vec![Check::new("i", Predicate::GreaterThan(Value::Int(1)))],
            after: None,
            count_only: true,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        })),
        Message::FromDaemon(ClientResponse::Reply(Reply::Found(object.clone()))),
        Message::FromDaemon(ClientResponse::Page {
            objects: vec![object],
            count: 1,
            next: Some((region(), b"k".to_vec())),
        }),
        Message::ToCoordinator(CoordRequest::Register {
            id: Some(ServerId(2)),
            addr: "127.0.0.1:2012".into(),
        }),
        Message::ToCoordinator(CoordRequest::Heartbeat {
            id: ServerId(2),
            config_version: 5,
            joining: vec![crate::protocol::coordinator::JoinProgress {
                region: region(),
                since: 4,
                objects: 4096,
                bytes: 1 << 20,
            }],
        }),
        Message::ToCoordinator(CoordRequest::Admin(AdminCommand::AddSpace(
            "space s key k attributes int n".into(),
        ))),
        Message::ToCoordinator(CoordRequest::TransferComplete {
            id: ServerId(2),
            region: region(),
            since: 4,
        }),
        Message::FromCoordinator(CoordResponse::Config(Config::default())),
        Message::FromCoordinator(CoordResponse::AdminReply(Ok(AdminOutput::Spaces(vec![
            "s".into(),
        ])))),
        Message::FromCoordinator(CoordResponse::AdminReply(Ok(AdminOutput::Transfers(vec![
            crate::protocol::coordinator::TransferReport {
                region: region(),
                server: ServerId(3),
                objects: 10,
                bytes: 1000,
                objects_per_sec: 2.5,
                eta_secs: Some(30.0),
            },
        ])))),
        Message::Error {
            code: ReturnCode::Garbage,
            message: "no".into(),
        },
    ]);
    msgs.extend(chain_messages(chain_object).into_iter().map(Message::Chain));
    msgs.into_iter()
        .enumerate()
        .map(|(i, msg)| Envelope { id: i as u64, msg })
        .collect()
}

/// One chain message of every kind.
fn chain_messages(object: hyperdex_model::Object) -> Vec<ChainMessage> {
    let write = ChainWrite {
        config_version: 5,
        region: region(),
        key: b"key".to_vec(),
        version: 12,
        object: Some(object),
        dedupe: Some(Dedupe {
            client: 42,
            seq: 9,
            low_seq: 3,
            reply: Reply::CmpFail("check failed".into()),
            unix: 1_700_000_000,
        }),
    };
    vec![
        ChainMessage::Write(write),
        ChainMessage::Ack(ChainAck {
            config_version: 5,
            region: region(),
            key: b"key".to_vec(),
            version: 12,
        }),
        ChainMessage::TransferData(TransferData {
            config_version: 5,
            region: region(),
            after: Some(b"a".to_vec()),
            entries: vec![
                (b"b".to_vec(), TransferEntry::Object(vec![1, 2, 3])),
                (b"c".to_vec(), TransferEntry::Unchanged([7; 16])),
            ],
            through: None,
            held: Vec::new(),
        }),
        ChainMessage::TransferAck(TransferAck {
            config_version: 5,
            region: region(),
            upto: None,
            done: false,
            held: vec![(b"d".to_vec(), [9; 16])],
            held_all: false,
        }),
        ChainMessage::TransferQuery(TransferQuery {
            config_version: 5,
            region: region(),
        }),
    ]
}
