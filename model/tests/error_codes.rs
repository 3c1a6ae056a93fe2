//! Every return code the model can give, each triggered by the call that should give it.

use hyperdex_model::db::step_key;
use hyperdex_model::{
    parse_space, Check, Func, Funcall, KeyWrite, Model, NumOp, Operation, Predicate, Reply,
    ReturnCode, Value,
};

fn model() -> Model {
    let mut m = Model::new();
    let space =
        parse_space("space s key k attributes string a, int n, float f, map(string, string) m")
            .expect("parses");
    assert_eq!(m.apply(&Operation::AddSpace(space)), Reply::Success);
    assert_eq!(
        m.apply(&Operation::put("s", "x", vec![("a", Value::string("v"))])),
        Reply::Success
    );
    m
}

fn code(m: &mut Model, op: Operation) -> ReturnCode {
    m.apply(&op).code()
}

#[test]
#[allow(clippy::too_many_lines, reason = "one case per return code")]
fn each_return_code_has_a_trigger() {
    let mut m = model();
    let cases: Vec<(ReturnCode, Operation)> = vec![
        (ReturnCode::Success, Operation::put("s", "y", vec![])),
        (ReturnCode::NotFound, Operation::get("s", "missing")),
        (ReturnCode::NotFound, Operation::del("s", "missing")),
        (
            ReturnCode::NotFound,
            Operation::atomic(NumOp::Add, "s", "missing", vec![("n", Value::Int(1))]),
        ),
        (
            ReturnCode::CmpFail,
            Operation::put_if_not_exist("s", "x", vec![]),
        ),
        (
            ReturnCode::CmpFail,
            Operation::cond_put(
                "s",
                "x",
                vec![Check::new("a", Predicate::Equals(Value::string("w")))],
                vec![],
            ),
        ),
        (
            ReturnCode::CmpFail,
            Operation::atomic(NumOp::Div, "s", "x", vec![("n", Value::Int(0))]),
        ),
        (ReturnCode::UnknownSpace, Operation::get("nope", "x")),
        (
            ReturnCode::UnknownSpace,
            Operation::put("nope", "x", vec![]),
        ),
        (ReturnCode::UnknownSpace, Operation::search("nope", vec![])),
        (
            ReturnCode::UnknownAttr,
            Operation::put("s", "x", vec![("frist", Value::string("v"))]),
        ),
        (
            ReturnCode::UnknownAttr,
            Operation::search(
                "s",
                vec![Check::new("frist", Predicate::Equals(Value::Int(1)))],
            ),
        ),
        (
            ReturnCode::UnknownAttr,
            Operation::get_partial("s", "x", &["frist"]),
        ),
        (
            ReturnCode::UnknownAttr,
            Operation::put("s", "x", vec![("a.b", Value::Int(1))]),
        ),
        (
            ReturnCode::DontUseKey,
            Operation::put("s", "x", vec![("k", Value::string("other"))]),
        ),
        (
            ReturnCode::WrongType,
            Operation::put("s", "x", vec![("n", Value::string("one"))]),
        ),
        (
            ReturnCode::WrongType,
            Operation::put("s", Value::Int(3), vec![]),
        ),
        (ReturnCode::WrongType, Operation::get("s", Value::Int(3))),
        (
            ReturnCode::WrongType,
            Operation::atomic(NumOp::Xor, "s", "x", vec![("f", Value::Float(1.0))]),
        ),
        (
            ReturnCode::WrongType,
            Operation::funcs(
                "s",
                "x",
                vec![Funcall::new("a", Func::SetAdd(Value::string("v")))],
            ),
        ),
        (
            ReturnCode::WrongType,
            Operation::search(
                "s",
                vec![Check::new("m", Predicate::LessThan(Value::Int(1)))],
            ),
        ),
        (
            ReturnCode::WrongType,
            Operation::search("s", vec![Check::new("n", Predicate::Regex("a".into()))]),
        ),
        (
            ReturnCode::Garbage,
            Operation::write(
                "s",
                KeyWrite {
                    key: Value::string("x"),
                    checks: vec![],
                    funcs: vec![Funcall::new("a", Func::Set(Value::string("v")))],
                    existence: hyperdex_model::Existence::MustExist,
                    erase: true,
                },
            ),
        ),
        (
            ReturnCode::BadSpace,
            Operation::AddSpace({
                let mut s = parse_space("space t key k").expect("parses");
                s.name = "space".into();
                s
            }),
        ),
        (
            ReturnCode::Duplicate,
            Operation::AddSpace(parse_space("space s key k").expect("parses")),
        ),
        (ReturnCode::AdminNotFound, Operation::RmSpace("nope".into())),
    ];
    for (want, op) in cases {
        let before = m.clone();
        let got = code(&mut m, op.clone());
        assert_eq!(got, want, "{op:?}");
        if want != ReturnCode::Success {
            assert_eq!(
                format!("{:?}", m.object("s", &Value::string("x"))),
                format!("{:?}", before.object("s", &Value::string("x"))),
                "{op:?} changed the object"
            );
        }
    }
}

#[test]
fn error_messages_say_what_was_wrong() {
    let mut m = model();
    let Reply::Error(_, msg) = m.apply(&Operation::put(
        "s",
        "x",
        vec![("frist", Value::string("v"))],
    )) else {
        panic!()
    };
    assert_eq!(
        msg,
        "unknown attribute \"frist\" in space \"s\" (attributes: a, n, f, m)"
    );
    let Reply::Error(_, msg) = m.apply(&Operation::get("nope", "x")) else {
        panic!()
    };
    assert_eq!(msg, "unknown space \"nope\"");
}

#[test]
fn step_key_refuses_multi_key_operations() {
    let m = model();
    let space = m.space("s").expect("exists").clone();
    let (reply, change) = step_key(&space, None, &Operation::count("s", vec![]));
    assert_eq!(reply.code(), ReturnCode::Internal);
    assert!(change.is_none());
}
