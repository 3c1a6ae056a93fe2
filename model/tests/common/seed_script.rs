//! The seed chapter ("Asynchronous and Atomic Operations") as a script over a [`Backend`]:
//! the model (`model/tests/seed_chapter.rs`) or a real cluster (`tests/seed_cluster.rs`).
//! Both render the same transcript, the way the chapter prints results (see
//! `seed_chapter.rs` for the rendering and comparison rules).
#![allow(dead_code)]

use super::{py, py_reply};
use hyperdex_model::{parse_space, Check, Func, Funcall, NumOp, Operation, Reply, Space, Value};

/// Whatever runs the chapter's operations: the model, or a real cluster.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// Runs one operation to completion (spaces included).
    async fn run(&mut self, op: Operation) -> Reply;
    /// Starts an operation and returns a handle for `wait`.
    async fn start(&mut self, op: Operation) -> u64;
    async fn wait(&mut self, handle: u64) -> Reply;
    /// Whichever started operation finishes next.
    async fn loop_next(&mut self) -> Option<(u64, Reply)>;
    /// The schema of a space, for rendering objects.
    fn space(&self, name: &str) -> Option<Space>;
}

/// A Python session against a backend, recording a transcript.
struct Session<'a, B> {
    backend: &'a mut B,
    transcript: String,
}

impl<B: Backend> Session<'_, B> {
    fn show(&mut self, statement: &str, output: Option<String>) {
        self.transcript.push_str(statement.trim());
        self.transcript.push('\n');
        if let Some(out) = output {
            self.transcript.push_str(&out);
            self.transcript.push('\n');
        }
    }

    /// Runs `op`, printing its result as the session would.
    async fn run(&mut self, statement: &str, op: Operation) -> Reply {
        let reply = self.backend.run(op.clone()).await;
        let space = op.space().and_then(|s| self.backend.space(s));
        self.show(statement, py_reply(space.as_ref(), &reply));
        reply
    }

    /// Runs an admin call (prints nothing on success, like `hyperclient`).
    async fn admin(&mut self, statement: &str, op: Operation) {
        let reply = self.backend.run(op).await;
        assert_eq!(reply, Reply::Success, "{statement}");
        self.show(statement, None);
    }

    /// Starts `op` without printing (an async call whose result is printed by `wait`).
    async fn issue(&mut self, statement: &str, op: Operation) -> u64 {
        let handle = self.backend.start(op).await;
        self.show(statement, None);
        handle
    }

    async fn wait(&mut self, statement: &str, space: &str, handle: u64) {
        let reply = self.backend.wait(handle).await;
        let space = self.backend.space(space);
        self.show(statement, py_reply(space.as_ref(), &reply));
    }

    async fn hex(&mut self) {
        let Value::Int(i) = self.get(ALL, "somekey").await["i"] else {
            panic!("i is an int")
        };
        self.show(
            ">>> print \"0x%x\" % (c.get('alldatatypes', 'somekey')['i'],)",
            Some(format!("0x{i:x}")),
        );
    }

    async fn show_attr(&mut self, attr: &str) {
        let v = self.get(ALL, "somekey").await[attr].clone();
        self.show(
            &format!(">>> c.get('alldatatypes', 'somekey')['{attr}']"),
            Some(py(&v)),
        );
    }

    async fn get(&mut self, space: &str, key: &str) -> hyperdex_model::Object {
        match self.backend.run(Operation::get(space, key)).await {
            Reply::Found(o) => o,
            other => panic!("get {space}/{key}: {other:?}"),
        }
    }
}

fn s(text: &str) -> Value {
    Value::string(text)
}

fn set(items: &[&str]) -> Value {
    Value::Set(items.iter().map(|i| s(i)).collect())
}

fn funcs(attr_funcs: Vec<(&str, Func)>) -> Vec<Funcall> {
    attr_funcs
        .into_iter()
        .map(|(a, f)| Funcall::new(a, f))
        .collect()
}

const ALL: &str = "alldatatypes";
const FL: &str = "friendlists";

/// Performs the chapter on `backend` and returns the transcript.
#[allow(
    clippy::too_many_lines,
    reason = "the chapter's steps, in the chapter's order"
)]
pub async fn perform_chapter<B: Backend>(backend: &mut B) -> String {
    let mut c = Session {
        backend,
        transcript: String::new(),
    };

    // Setup.
    c.show(">>> import hyperclient", None);
    c.show(">>> c = hyperclient.Client('127.0.0.1', 1982)", None);
    c.admin(
        ">>> c.add_space('''\n... space friendlists\n... key username\n... attributes\n...    string first,\n...    string last,\n...    set(string) friends\n... ''')",
        Operation::AddSpace(
            parse_space("space friendlists\nkey username\nattributes\n   string first,\n   string last,\n   set(string) friends\n")
                .expect("the chapter's space parses"),
        ),
    ).await;
    c.admin(
        ">>> c.add_space('''space rt key x''')",
        Operation::AddSpace(parse_space("space rt key x").expect("parses")),
    )
    .await;
    c.admin(">>> c.rm_space('rt')", Operation::RmSpace("rt".into()))
        .await;
    for (key, first, last) in [
        ("jsmith1", "John", "Smith"),
        ("jd", "John", "Doe"),
        ("bjones1", "Brian", "Jones"),
    ] {
        c.run(
            &format!(">>> c.put('friendlists', '{key}', {{'first': '{first}', 'last': '{last}'}})"),
            Operation::put(FL, key, vec![("first", s(first)), ("last", s(last))]),
        )
        .await;
    }

    // Asynchronous operations.
    let d = c
        .issue(
            ">>> d = c.async_put('friendlists', 'jj', {'first': 'John', 'last': 'Jackson'})",
            Operation::put(FL, "jj", vec![("first", s("John")), ("last", s("Jackson"))]),
        )
        .await;
    c.show(">>> # do some work", None);
    c.wait(">>> d.wait()", FL, d).await;
    let d = c
        .issue(
            ">>> d = c.async_get('friendlists', 'jj')",
            Operation::get(FL, "jj"),
        )
        .await;
    c.wait(">>> d.wait()", FL, d).await;
    c.show(
        ">>> def get(client, space, key):\n...     return client.async_get(space, key).wait()\n...",
        None,
    );
    c.run(">>> get(c, 'friendlists', 'jj')", Operation::get(FL, "jj"))
        .await;

    let set_add = |key: &str, friend: &str| {
        Operation::funcs(FL, key, funcs(vec![("friends", Func::SetAdd(s(friend)))]))
    };
    let d1 = c
        .issue(
            ">>> d1 = c.async_set_add('friendlists', 'jj', {'friends': 'jsmith1'})",
            set_add("jj", "jsmith1"),
        )
        .await;
    let d2 = c
        .issue(
            ">>> d2 = c.async_set_add('friendlists', 'jsmith1', {'friends': 'jj'})",
            set_add("jsmith1", "jj"),
        )
        .await;
    c.wait(">>> d1.wait()", FL, d1).await;
    c.wait(">>> d2.wait()", FL, d2).await;
    let d1 = c
        .issue(
            ">>> d1 = c.async_set_add('friendlists', 'jsmith1', {'friends': 'bjones1'})",
            set_add("jsmith1", "bjones1"),
        )
        .await;
    let d2 = c
        .issue(
            ">>> d2 = c.async_set_add('friendlists', 'bjones1', {'friends': 'jsmith1'})",
            set_add("bjones1", "jsmith1"),
        )
        .await;
    let d3 = c
        .issue(
            ">>> d3 = c.async_set_add('friendlists', 'jsmith1', {'friends': 'jd'})",
            set_add("jsmith1", "jd"),
        )
        .await;
    let d4 = c
        .issue(
            ">>> d4 = c.async_set_add('friendlists', 'jd', {'friends': 'jsmith1'})",
            set_add("jd", "jsmith1"),
        )
        .await;
    for (name, d) in [("d1", d1), ("d2", d2), ("d3", d3), ("d4", d4)] {
        c.wait(&format!(">>> {name}.wait()"), FL, d).await;
    }

    // Fetch the friends' first names with loop().
    c.show(
        ">>> friends_usernames = c.get('friendlists', 'jsmith1')['friends']",
        None,
    );
    let Value::Set(usernames) = c.get(FL, "jsmith1").await["friends"].clone() else {
        panic!("friends is a set")
    };
    c.show(
        ">>> outstanding = set()\n>>> for username in friends_usernames:\n...     outstanding.add(c.async_get('friendlists', username))\n...",
        None,
    );
    let mut outstanding = std::collections::BTreeSet::new();
    for username in &usernames {
        outstanding.insert(c.backend.start(Operation::get(FL, username.clone())).await);
    }
    let mut friends = Vec::new();
    while !outstanding.is_empty() {
        let (d, reply) = c
            .backend
            .loop_next()
            .await
            .expect("operations are outstanding");
        assert!(
            outstanding.remove(&d),
            "loop() returned an operation that was not outstanding"
        );
        let Reply::Found(obj) = reply else {
            panic!("friend lookup: {reply:?}")
        };
        friends.push(obj["first"].clone());
    }
    c.show(
        ">>> friends = []\n>>> while outstanding:\n...     d = c.loop()\n...     outstanding.remove(d)\n...     friend = d.wait()['first']\n...     friends.append(friend)\n...",
        None,
    );
    friends.sort();
    c.show(">>> sorted(friends)", Some(py(&Value::List(friends))));

    // Atomic read-modify-write: cond_put.
    c.run(
        ">>> c.get('friendlists', 'jsmith1')",
        Operation::get(FL, "jsmith1"),
    )
    .await;
    let john_smith = || Check::equals_all(&[("first", s("John")), ("last", s("Smith"))]);
    c.run(
        ">>> c.cond_put('friendlists', 'jsmith1',\n...            {'first': 'John', 'last': 'Smith'},\n...            {'first': 'Jon'})",
        Operation::cond_put(FL, "jsmith1", john_smith(), vec![("first", s("Jon"))]),
    ).await;
    c.run(
        ">>> c.get('friendlists', 'jsmith1')",
        Operation::get(FL, "jsmith1"),
    )
    .await;
    c.run(
        ">>> c.cond_put('friendlists', 'jsmith1',\n...            {'first': 'John', 'last': 'Smith'},\n...            {'first': 'Jon'})",
        Operation::cond_put(FL, "jsmith1", john_smith(), vec![("first", s("Jon"))]),
    ).await;
    c.run(
        ">>> c.cond_put('friendlists', 'jsmith1',\n...            {'friends': set(['bjones1', 'jd', 'jj'])},\n...            {'first': 'John'})",
        Operation::cond_put(
            FL,
            "jsmith1",
            Check::equals_all(&[("friends", set(&["bjones1", "jd", "jj"]))]),
            vec![("first", s("John"))],
        ),
    ).await;
    c.run(
        ">>> c.get('friendlists', 'jsmith1')",
        Operation::get(FL, "jsmith1"),
    )
    .await;

    // put_if_not_exist and locks.
    c.admin(
        ">>> c.add_space('''\n... space userlocks\n... key username\n... ''')",
        Operation::AddSpace(parse_space("\nspace userlocks\nkey username\n").expect("parses")),
    )
    .await;
    c.run(
        ">>> c.put_if_not_exist('userlocks', 'jsmith1', {})",
        Operation::put_if_not_exist("userlocks", "jsmith1", vec![]),
    )
    .await;
    c.run(
        ">>> c.get('userlocks', 'jsmith1')",
        Operation::get("userlocks", "jsmith1"),
    )
    .await;
    c.run(
        ">>> c.put_if_not_exist('userlocks', 'jsmith1', {})",
        Operation::put_if_not_exist("userlocks", "jsmith1", vec![]),
    )
    .await;
    c.run(
        ">>> c.delete('userlocks', 'jsmith1')",
        Operation::del("userlocks", "jsmith1"),
    )
    .await;
    c.show(
        ">>> def lock(client, user):\n...     while not client.put_if_not_exist('userlocks', user, {}):\n...         pass\n>>> def unlock(client, user):\n...     client.delete('userlocks', user)",
        None,
    );
    let mut tries = 0;
    while c
        .backend
        .run(Operation::put_if_not_exist("userlocks", "jsmith1", vec![]))
        .await
        != Reply::Success
    {
        tries += 1;
        assert!(tries < 10, "the lock is free, the first try must take it");
    }
    c.show(">>> lock(c, 'jsmith1')", None);
    assert_eq!(
        c.backend.run(Operation::del("userlocks", "jsmith1")).await,
        Reply::Success
    );
    c.show(">>> unlock(c, 'jsmith1')", None);

    // A comprehensive walk.
    c.show(
        ">>> import hyperclient\n>>> c = hyperclient.Client('127.0.0.1', 1982)",
        None,
    );
    let all = "space alldatatypes key k attributes string s, int i, float f, list(string) ls, set(string) ss, map(string, string) mss, map(string, int) msi";
    c.admin(
        &format!(">>> c.add_space('''{all}''')"),
        Operation::AddSpace(parse_space(all).expect("parses")),
    )
    .await;
    let k = "somekey";
    c.run(
        ">>> c.put_if_not_exist('alldatatypes', 'somekey', {'s': 'initial value'})",
        Operation::put_if_not_exist(ALL, k, vec![("s", s("initial value"))]),
    )
    .await;
    c.run(
        ">>> c.put_if_not_exist('alldatatypes', 'somekey', {'s': 'initial value'})",
        Operation::put_if_not_exist(ALL, k, vec![("s", s("initial value"))]),
    )
    .await;
    c.show(
        ">>> # cond_put.  First is predicate.  May be any valid search predicate",
        None,
    );
    let cond = || {
        Operation::cond_put(
            ALL,
            k,
            Check::equals_all(&[("s", s("initial value"))]),
            vec![("s", s("some string"))],
        )
    };
    c.run(
        ">>> c.cond_put('alldatatypes', 'somekey', {'s': 'initial value'}, {'s': 'some string'})",
        cond(),
    )
    .await;
    c.run(
        ">>> c.cond_put('alldatatypes', 'somekey', {'s': 'initial value'}, {'s': 'some string'})",
        cond(),
    )
    .await;
    let get_all = ">>> c.get('alldatatypes', 'somekey')";
    c.run(get_all, Operation::get(ALL, k)).await;

    let atomic = |op: NumOp, attrs: Vec<(&str, Value)>| Operation::atomic(op, ALL, k, attrs);
    c.run(
        ">>> c.atomic_add('alldatatypes', 'somekey', {'i': 1, 'f': 0.25})",
        atomic(
            NumOp::Add,
            vec![("i", Value::Int(1)), ("f", Value::Float(0.25))],
        ),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.run(
        ">>> c.atomic_sub('alldatatypes', 'somekey', {'i': 2, 'f': 0.5})",
        atomic(
            NumOp::Sub,
            vec![("i", Value::Int(2)), ("f", Value::Float(0.5))],
        ),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.run(
        ">>> c.atomic_mul('alldatatypes', 'somekey', {'i': 2, 'f': 4.})",
        atomic(
            NumOp::Mul,
            vec![("i", Value::Int(2)), ("f", Value::Float(4.0))],
        ),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.run(
        ">>> c.atomic_div('alldatatypes', 'somekey', {'i': 2, 'f': 4.})",
        atomic(
            NumOp::Div,
            vec![("i", Value::Int(2)), ("f", Value::Float(4.0))],
        ),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;

    c.run(
        ">>> c.put('alldatatypes', 'somekey', {'i': 0xdeadbeefcafe})",
        Operation::put(ALL, k, vec![("i", Value::Int(0xdeadbeefcafe))]),
    )
    .await;
    c.run(
        ">>> c.atomic_and('alldatatypes', 'somekey', {'i': 0xffffffff0000})",
        atomic(NumOp::And, vec![("i", Value::Int(0xffffffff0000))]),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.hex().await;
    c.run(
        ">>> c.atomic_or('alldatatypes', 'somekey', {'i': 0x00000000cafe})",
        atomic(NumOp::Or, vec![("i", Value::Int(0xcafe))]),
    )
    .await;
    c.hex().await;
    c.run(
        ">>> c.atomic_xor('alldatatypes', 'somekey', {'i': 0xdea5a0403af3})",
        atomic(NumOp::Xor, vec![("i", Value::Int(0xdea5a0403af3))]),
    )
    .await;
    c.hex().await;

    let one = |attr: &str, f: Func| Operation::funcs(ALL, k, funcs(vec![(attr, f)]));
    c.run(
        ">>> c.string_prepend('alldatatypes', 'somekey', {'s': '->'})",
        one("s", Func::StringPrepend(s("->"))),
    )
    .await;
    c.show_attr("s").await;
    c.run(
        ">>> c.string_append('alldatatypes', 'somekey', {'s': '<-'})",
        one("s", Func::StringAppend(s("<-"))),
    )
    .await;
    c.show_attr("s").await;

    c.run(
        ">>> c.put('alldatatypes', 'somekey', {'ls': ['B']})",
        Operation::put(ALL, k, vec![("ls", Value::List(vec![s("B")]))]),
    )
    .await;
    c.run(
        ">>> c.list_lpush('alldatatypes', 'somekey', {'ls': 'A'})",
        one("ls", Func::ListLpush(s("A"))),
    )
    .await;
    c.show_attr("ls").await;
    c.run(
        ">>> c.list_rpush('alldatatypes', 'somekey', {'ls': 'C'})",
        one("ls", Func::ListRpush(s("C"))),
    )
    .await;
    c.show_attr("ls").await;

    c.run(
        ">>> c.set_add('alldatatypes', 'somekey', {'ss': 'C'})",
        one("ss", Func::SetAdd(s("C"))),
    )
    .await;
    c.show_attr("ss").await;
    c.run(
        ">>> c.set_remove('alldatatypes', 'somekey', {'ss': 'C'})",
        one("ss", Func::SetRemove(s("C"))),
    )
    .await;
    c.show_attr("ss").await;
    c.run(
        ">>> c.set_union('alldatatypes', 'somekey', {'ss': set(['A', 'B', 'C'])})",
        one("ss", Func::SetUnion(set(&["A", "B", "C"]))),
    )
    .await;
    c.show_attr("ss").await;
    c.run(
        ">>> c.set_intersect('alldatatypes', 'somekey', {'ss': set(['A', 'B', 'Z'])})",
        one("ss", Func::SetIntersect(set(&["A", "B", "Z"]))),
    )
    .await;
    c.show_attr("ss").await;

    c.run(
        ">>> c.map_add('alldatatypes', 'somekey', {'mss': {'mapkey': 'mapvalue'}, 'msi': {'mapkey': 16}})",
        Operation::funcs(ALL, k, funcs(vec![
            ("mss", Func::MapAdd(s("mapkey"), s("mapvalue"))),
            ("msi", Func::MapAdd(s("mapkey"), Value::Int(16))),
        ])),
    ).await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.run(
        ">>> c.map_add('alldatatypes', 'somekey', {'mss': {'tmp': 'delete me'}})",
        one("mss", Func::MapAdd(s("tmp"), s("delete me"))),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.run(
        ">>> c.map_remove('alldatatypes', 'somekey', {'mss': {'tmp': 'X'}})",
        one("mss", Func::MapRemove(s("tmp"))),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;

    for (op, arg) in [
        (NumOp::Add, 16),
        (NumOp::Sub, -32),
        (NumOp::Mul, 4),
        (NumOp::Div, 64),
        (NumOp::And, 2),
        (NumOp::Or, 5),
        (NumOp::Xor, 7),
    ] {
        c.run(
            &format!(
                ">>> c.map_atomic_{}('alldatatypes', 'somekey', {{'msi': {{'mapkey': {arg}}}}})",
                op.suffix()
            ),
            one("msi", Func::MapNum(op, s("mapkey"), Value::Int(arg))),
        )
        .await;
        c.run(get_all, Operation::get(ALL, k)).await;
    }
    c.run(
        ">>> c.map_string_prepend('alldatatypes', 'somekey', {'mss': {'mapkey': '->'}})",
        one("mss", Func::MapStringPrepend(s("mapkey"), s("->"))),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;
    c.run(
        ">>> c.map_string_append('alldatatypes', 'somekey', {'mss': {'mapkey': '<-'}})",
        one("mss", Func::MapStringAppend(s("mapkey"), s("<-"))),
    )
    .await;
    c.run(get_all, Operation::get(ALL, k)).await;

    c.show(
        ">>> # a hack to clean up the tutorial, not a real TODO",
        None,
    );
    c.admin(
        ">>> c.rm_space('''friendlists''')",
        Operation::RmSpace(FL.into()),
    )
    .await;
    c.admin(
        ">>> c.rm_space('''userlocks''')",
        Operation::RmSpace("userlocks".into()),
    )
    .await;
    c.transcript
}
