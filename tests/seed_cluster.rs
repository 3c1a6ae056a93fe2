//! The seed chapter against a real cluster: a coordinator and three daemons started as
//! processes with the chapter's own command lines, driven through the Rust client (with real
//! concurrent asynchronous operations and `loop`) and through the CLI.
#![cfg(not(madsim))]

#[path = "../model/tests/common/mod.rs"]
mod common;
mod support;

use common::seed_script::{perform_chapter, Backend};
use hyperdex::admin::Admin;
use hyperdex::cli::data::object_json;
use hyperdex::client::{Client, ClientOptions, Deferred};
use hyperdex_model::{Model, NumOp, Operation, Reply, Space, Value};
use support::ProcCluster;

struct ClusterBackend {
    client: Client,
    admin: Admin,
}

impl Backend for ClusterBackend {
    async fn run(&mut self, op: Operation) -> Reply {
        let reply = match op {
            Operation::AddSpace(space) => match self.admin.add_space(&space.to_string()).await {
                Ok(()) => Reply::Success,
                Err(e) => Reply::Error(e.code, e.message),
            },
            Operation::RmSpace(name) => match self.admin.rm_space(&name).await {
                Ok(()) => Reply::Success,
                Err(e) => Reply::Error(e.code, e.message),
            },
            op => return self.client.call(op).await,
        };
        let _ = self.client.refresh().await;
        reply
    }

    async fn start(&mut self, op: Operation) -> u64 {
        self.client.start(op).0
    }

    async fn wait(&mut self, handle: u64) -> Reply {
        self.client.wait(Deferred(handle)).await
    }

    async fn loop_next(&mut self) -> Option<(u64, Reply)> {
        self.client.loop_next().await.map(|(d, r)| (d.0, r))
    }

    fn space(&self, name: &str) -> Option<Space> {
        self.client.config().space(name).map(|s| s.schema.clone())
    }
}

/// The model's transcript, as stored by `model/tests/seed_chapter.rs`.
fn model_transcript() -> String {
    let snap = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/snapshots/seed_chapter_model.snap"
    ))
    .expect("the model snapshot exists");
    // Drop insta's header (between the first two `---` lines).
    let body = snap.splitn(3, "---\n").nth(2).expect("snapshot header");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_chapter_on_a_real_cluster_matches_the_model() {
    let cluster = ProcCluster::start("seed-client", 3);
    let mut backend = ClusterBackend {
        client: Client::connect_with(&cluster.addr(), ClientOptions::default())
            .await
            .expect("connect"),
        admin: Admin::connect_addr(&cluster.addr(), ClientOptions::default())
            .await
            .expect("connect admin"),
    };
    let transcript = perform_chapter(&mut backend).await;
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("seed_chapter_cluster", transcript);
    });
    assert_eq!(transcript.trim_end(), model_transcript().trim_end());
}

/// A command line of the walkthrough and the operation it means.
struct Step {
    args: Vec<String>,
    stdin: Option<&'static str>,
    op: Option<Operation>,
}

fn step(args: &[&str], op: Operation) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        op: Some(op),
    }
}

fn s(t: &str) -> Value {
    Value::string(t)
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "the chapter's steps, in the chapter's order"
)]
fn the_seed_chapter_through_the_cli_matches_the_model() {
    let cluster = ProcCluster::start("seed-cli", 3);
    let friendlists = "space friendlists\nkey username\nattributes\n   string first,\n   string last,\n   set(string) friends\n";
    let alldatatypes = "space alldatatypes key k attributes string s, int i, float f, list(string) ls, set(string) ss, map(string, string) mss, map(string, int) msi";
    let mut model = Model::new();
    let get = |space: &str, key: &str| step(&["get", space, key], Operation::get(space, key));
    let set_add = |key: &str, friend: &str| {
        step(
            &[
                "atomic",
                "set-add",
                "friendlists",
                key,
                &format!("{{\"friends\": \"{friend}\"}}"),
            ],
            Operation::funcs(
                "friendlists",
                key,
                vec![hyperdex_model::Funcall::new(
                    "friends",
                    hyperdex_model::Func::SetAdd(s(friend)),
                )],
            ),
        )
    };
    let all_get = || get("alldatatypes", "somekey");
    let atomic = |op: NumOp, json: &str, attrs: Vec<(&str, Value)>| {
        step(
            &[
                "atomic",
                &format!("atomic-{}", op.suffix()),
                "alldatatypes",
                "somekey",
                json,
            ],
            Operation::atomic(op, "alldatatypes", "somekey", attrs),
        )
    };
    let steps = vec![
        Step {
            args: vec!["add-space".into()],
            stdin: Some(friendlists),
            op: Some(Operation::AddSpace(
                hyperdex_model::parse_space(friendlists).expect("parses"),
            )),
        },
        step(
            &[
                "put",
                "friendlists",
                "jsmith1",
                r#"{"first": "John", "last": "Smith"}"#,
            ],
            Operation::put(
                "friendlists",
                "jsmith1",
                vec![("first", s("John")), ("last", s("Smith"))],
            ),
        ),
        step(
            &[
                "put",
                "friendlists",
                "jd",
                r#"{"first": "John", "last": "Doe"}"#,
            ],
            Operation::put(
                "friendlists",
                "jd",
                vec![("first", s("John")), ("last", s("Doe"))],
            ),
        ),
        step(
            &[
                "put",
                "friendlists",
                "bjones1",
                r#"{"first": "Brian", "last": "Jones"}"#,
            ],
            Operation::put(
                "friendlists",
                "bjones1",
                vec![("first", s("Brian")), ("last", s("Jones"))],
            ),
        ),
        step(
            &[
                "put",
                "friendlists",
                "jj",
                r#"{"first": "John", "last": "Jackson"}"#,
            ],
            Operation::put(
                "friendlists",
                "jj",
                vec![("first", s("John")), ("last", s("Jackson"))],
            ),
        ),
        get("friendlists", "jj"),
        set_add("jj", "jsmith1"),
        set_add("jsmith1", "jj"),
        set_add("jsmith1", "bjones1"),
        set_add("bjones1", "jsmith1"),
        set_add("jsmith1", "jd"),
        set_add("jd", "jsmith1"),
        get("friendlists", "jsmith1"),
        step(
            &[
                "cond-put",
                "friendlists",
                "jsmith1",
                r#"{"first": "John", "last": "Smith"}"#,
                r#"{"first": "Jon"}"#,
            ],
            Operation::cond_put(
                "friendlists",
                "jsmith1",
                hyperdex_model::Check::equals_all(&[("first", s("John")), ("last", s("Smith"))]),
                vec![("first", s("Jon"))],
            ),
        ),
        get("friendlists", "jsmith1"),
        step(
            &[
                "cond-put",
                "friendlists",
                "jsmith1",
                r#"{"first": "John", "last": "Smith"}"#,
                r#"{"first": "Jon"}"#,
            ],
            Operation::cond_put(
                "friendlists",
                "jsmith1",
                hyperdex_model::Check::equals_all(&[("first", s("John")), ("last", s("Smith"))]),
                vec![("first", s("Jon"))],
            ),
        ),
        step(
            &[
                "cond-put",
                "friendlists",
                "jsmith1",
                r#"{"friends": ["bjones1", "jd", "jj"]}"#,
                r#"{"first": "John"}"#,
            ],
            Operation::cond_put(
                "friendlists",
                "jsmith1",
                hyperdex_model::Check::equals_all(&[(
                    "friends",
                    Value::Set([s("bjones1"), s("jd"), s("jj")].into()),
                )]),
                vec![("first", s("John"))],
            ),
        ),
        get("friendlists", "jsmith1"),
        Step {
            args: vec!["add-space".into()],
            stdin: Some("space userlocks\nkey username\n"),
            op: Some(Operation::AddSpace(
                hyperdex_model::parse_space("space userlocks key username").expect("parses"),
            )),
        },
        step(
            &["put-if-not-exist", "userlocks", "jsmith1", "{}"],
            Operation::put_if_not_exist("userlocks", "jsmith1", vec![]),
        ),
        get("userlocks", "jsmith1"),
        step(
            &["put-if-not-exist", "userlocks", "jsmith1", "{}"],
            Operation::put_if_not_exist("userlocks", "jsmith1", vec![]),
        ),
        step(
            &["del", "userlocks", "jsmith1"],
            Operation::del("userlocks", "jsmith1"),
        ),
        step(
            &["del", "userlocks", "jsmith1"],
            Operation::del("userlocks", "jsmith1"),
        ),
        Step {
            args: vec!["add-space".into()],
            stdin: Some(alldatatypes),
            op: Some(Operation::AddSpace(
                hyperdex_model::parse_space(alldatatypes).expect("parses"),
            )),
        },
        step(
            &[
                "put-if-not-exist",
                "alldatatypes",
                "somekey",
                r#"{"s": "initial value"}"#,
            ],
            Operation::put_if_not_exist("alldatatypes", "somekey", vec![("s", s("initial value"))]),
        ),
        step(
            &[
                "cond-put",
                "alldatatypes",
                "somekey",
                r#"{"s": "initial value"}"#,
                r#"{"s": "some string"}"#,
            ],
            Operation::cond_put(
                "alldatatypes",
                "somekey",
                hyperdex_model::Check::equals_all(&[("s", s("initial value"))]),
                vec![("s", s("some string"))],
            ),
        ),
        all_get(),
        atomic(
            NumOp::Add,
            r#"{"i": 1, "f": 0.25}"#,
            vec![("i", Value::Int(1)), ("f", Value::Float(0.25))],
        ),
        atomic(
            NumOp::Sub,
            r#"{"i": 2, "f": 0.5}"#,
            vec![("i", Value::Int(2)), ("f", Value::Float(0.5))],
        ),
        atomic(
            NumOp::Mul,
            r#"{"i": 2, "f": 4.0}"#,
            vec![("i", Value::Int(2)), ("f", Value::Float(4.0))],
        ),
        atomic(
            NumOp::Div,
            r#"{"i": 2, "f": 4.0}"#,
            vec![("i", Value::Int(2)), ("f", Value::Float(4.0))],
        ),
        all_get(),
        step(
            &[
                "put",
                "alldatatypes",
                "somekey",
                r#"{"i": 244837814094590}"#,
            ],
            Operation::put(
                "alldatatypes",
                "somekey",
                vec![("i", Value::Int(0xdeadbeefcafe))],
            ),
        ),
        atomic(
            NumOp::And,
            r#"{"i": 281474976645120}"#,
            vec![("i", Value::Int(0xffffffff0000))],
        ),
        atomic(
            NumOp::Or,
            r#"{"i": 51966}"#,
            vec![("i", Value::Int(0xcafe))],
        ),
        atomic(
            NumOp::Xor,
            r#"{"i": 244802939534067}"#,
            vec![("i", Value::Int(0xdea5a0403af3))],
        ),
        step(
            &[
                "atomic",
                "string-prepend",
                "alldatatypes",
                "somekey",
                r#"{"s": "->"}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "s",
                    hyperdex_model::Func::StringPrepend(s("->")),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "string-append",
                "alldatatypes",
                "somekey",
                r#"{"s": "<-"}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "s",
                    hyperdex_model::Func::StringAppend(s("<-")),
                )],
            ),
        ),
        step(
            &["put", "alldatatypes", "somekey", r#"{"ls": ["B"]}"#],
            Operation::put(
                "alldatatypes",
                "somekey",
                vec![("ls", Value::List(vec![s("B")]))],
            ),
        ),
        step(
            &[
                "atomic",
                "list-lpush",
                "alldatatypes",
                "somekey",
                r#"{"ls": "A"}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "ls",
                    hyperdex_model::Func::ListLpush(s("A")),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "list-rpush",
                "alldatatypes",
                "somekey",
                r#"{"ls": "C"}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "ls",
                    hyperdex_model::Func::ListRpush(s("C")),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "set-union",
                "alldatatypes",
                "somekey",
                r#"{"ss": ["A", "B", "C"]}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "ss",
                    hyperdex_model::Func::SetUnion(Value::Set([s("A"), s("B"), s("C")].into())),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "set-intersect",
                "alldatatypes",
                "somekey",
                r#"{"ss": ["A", "B", "Z"]}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "ss",
                    hyperdex_model::Func::SetIntersect(Value::Set([s("A"), s("B"), s("Z")].into())),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "map-add",
                "alldatatypes",
                "somekey",
                r#"{"mss": {"mapkey": "mapvalue"}, "msi": {"mapkey": 16}}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![
                    hyperdex_model::Funcall::new(
                        "msi",
                        hyperdex_model::Func::MapAdd(s("mapkey"), Value::Int(16)),
                    ),
                    hyperdex_model::Funcall::new(
                        "mss",
                        hyperdex_model::Func::MapAdd(s("mapkey"), s("mapvalue")),
                    ),
                ],
            ),
        ),
        step(
            &[
                "atomic",
                "map-atomic-add",
                "alldatatypes",
                "somekey",
                r#"{"msi": {"mapkey": 16}}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "msi",
                    hyperdex_model::Func::MapNum(NumOp::Add, s("mapkey"), Value::Int(16)),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "map-atomic-sub",
                "alldatatypes",
                "somekey",
                r#"{"msi": {"mapkey": -32}}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "msi",
                    hyperdex_model::Func::MapNum(NumOp::Sub, s("mapkey"), Value::Int(-32)),
                )],
            ),
        ),
        step(
            &[
                "atomic",
                "map-string-append",
                "alldatatypes",
                "somekey",
                r#"{"mss": {"mapkey": "<-"}}"#,
            ],
            Operation::funcs(
                "alldatatypes",
                "somekey",
                vec![hyperdex_model::Funcall::new(
                    "mss",
                    hyperdex_model::Func::MapStringAppend(s("mapkey"), s("<-")),
                )],
            ),
        ),
        all_get(),
        step(
            &[
                "atomic",
                "atomic-div",
                "alldatatypes",
                "somekey",
                r#"{"i": 0}"#,
            ],
            Operation::atomic(
                NumOp::Div,
                "alldatatypes",
                "somekey",
                vec![("i", Value::Int(0))],
            ),
        ),
        get("alldatatypes", "nosuchkey"),
    ];
    let mut transcript = String::new();
    for st in steps {
        let args: Vec<&str> = st.args.iter().map(String::as_str).collect();
        let out = cluster.hyperdex(&args, st.stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let code = out.status.code().unwrap_or(-1);
        transcript.push_str(&format!("$ hyperdex {}\n", args.join(" ")));
        if let Some(input) = st.stdin {
            transcript.push_str(&format!(
                "  (stdin: {})\n",
                input.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        transcript.push_str(&stdout);
        transcript.push_str(&stderr);
        transcript.push_str(&format!("[exit {code}]\n"));
        let Some(op) = st.op else { continue };
        let reply = model.apply(&op);
        let want_code = match &reply {
            Reply::Success | Reply::Found(_) | Reply::Count(_) | Reply::Objects(_) => 0,
            Reply::NotFound | Reply::CmpFail(_) => 1,
            Reply::Error(..) => 2,
        };
        assert_eq!(
            code, want_code,
            "{args:?}: model says {reply:?}; stdout {stdout} stderr {stderr}"
        );
        if let Reply::Found(obj) = &reply {
            assert_eq!(stdout.trim(), object_json(obj), "{args:?}");
        }
    }
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("seed_chapter_cli", transcript);
    });
}

/// HyperDex's five-coordinator start (its test scripts' command lines: each coordinator joins
/// through the one before, giving only the port), daemons each given a different single
/// coordinator, and the seed chapter through a client given the last coordinator only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // wall-clock pacing of real processes
async fn the_seed_chapter_on_five_coordinators_matches_the_model() {
    let mut procs = support::replicated::Procs::new("seed-five", 5, 3);
    procs.joins = vec![0, 0, 1, 2, 3];
    for i in 0..5 {
        procs.start_coordinator(i);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for i in 0..3 {
        let one = format!("127.0.0.1:{}", procs.coords[2 * i].0);
        procs.start_daemon_with(i, &one);
    }
    let last = format!("127.0.0.1:{}", procs.coords[4].0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let c = hyperdex::client::fetch_config(&last, &ClientOptions::default()).await;
        if c.is_ok_and(|c| c.coordinators.len() == 5 && c.servers.len() == 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "five coordinators and three daemons did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut backend = ClusterBackend {
        client: Client::connect_with(&last, ClientOptions::default())
            .await
            .expect("connect"),
        admin: Admin::connect_addr(&last, ClientOptions::default())
            .await
            .expect("connect admin"),
    };
    let transcript = perform_chapter(&mut backend).await;
    assert_eq!(transcript.trim_end(), model_transcript().trim_end());
}
