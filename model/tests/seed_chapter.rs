//! The seed chapter ("Asynchronous and Atomic Operations"), performed step by step on the
//! model, rendered the way the chapter prints results, and compared with the chapter itself.
//!
//! Rendering rules (the Python 2 session of the 1.0-era `hyperclient`):
//! - SUCCESS prints `True`, CMPFAIL `False`, NOTFOUND nothing (the session's `None`), a found
//!   object its dict with attributes in schema order; admin calls print nothing.
//! - Strings print as `'...'`, sets as `set([...])` in sorted order, maps as `{k: v}`.
//! - Asynchronous calls take effect when issued (the model is sequential); `wait()` and
//!   `loop()` print the issued call's result.
//!
//! Comparison rules (what "the same value" means against the chapter's printed lines):
//! - both sides are parsed as Python literals; dicts and sets compare regardless of order
//!   (the chapter's Python 2 printed them in hash order);
//! - a printed line that is not a literal (the chapter's bare `->some string`) is compared as
//!   the string value;
//! - object reprs (`<hyperclient.DeferredFromAttrs object at ...>`) are not model output and
//!   are checked by the Python client's tests instead.
//!
//! The first `.. todo::` block of the chapter is skipped where it would collide with the
//! chapter proper (it creates `userlocks`, which the chapter creates again later); its
//! `rt` space round trip is performed. The closing cleanup block is performed.

mod common;

use common::{normalize, parse_py, py, py_reply, seed_chapter, steps, PyVal};
use hyperdex_model::{parse_space, Check, Func, Funcall, Model, NumOp, Operation, Reply, Value};

/// A Python session against the model, recording a transcript.
struct Session {
    model: Model,
    transcript: String,
}

impl Session {
    fn new() -> Session {
        Session {
            model: Model::new(),
            transcript: String::new(),
        }
    }

    fn show(&mut self, statement: &str, output: Option<String>) {
        self.transcript.push_str(statement.trim());
        self.transcript.push('\n');
        if let Some(out) = output {
            self.transcript.push_str(&out);
            self.transcript.push('\n');
        }
    }

    /// Runs `op`, printing its result as the session would.
    fn run(&mut self, statement: &str, op: Operation) -> Reply {
        let reply = self.model.apply(&op);
        let space = op.space().and_then(|s| self.model.space(s)).cloned();
        self.show(statement, py_reply(space.as_ref(), &reply));
        reply
    }

    /// Runs an admin call (prints nothing on success, like `hyperclient`).
    fn admin(&mut self, statement: &str, op: Operation) {
        let reply = self.model.apply(&op);
        assert_eq!(reply, Reply::Success, "{statement}");
        self.show(statement, None);
    }

    /// Runs `op` without printing (an async call whose result is printed later).
    fn issue(&mut self, statement: &str, op: Operation) -> Reply {
        let reply = self.model.apply(&op);
        self.show(statement, None);
        reply
    }

    fn wait(&mut self, statement: &str, space: &str, reply: &Reply) {
        let space = self.model.space(space).cloned();
        self.show(statement, py_reply(space.as_ref(), reply));
    }

    fn get(&mut self, space: &str, key: &str) -> hyperdex_model::Object {
        match self.model.apply(&Operation::get(space, key)) {
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

fn perform_chapter() -> String {
    let mut c = Session::new();

    // Setup.
    c.show(">>> import hyperclient", None);
    c.show(">>> c = hyperclient.Client('127.0.0.1', 1982)", None);
    c.admin(
        ">>> c.add_space('''\n... space friendlists\n... key username\n... attributes\n...    string first,\n...    string last,\n...    set(string) friends\n... ''')",
        Operation::AddSpace(
            parse_space("space friendlists\nkey username\nattributes\n   string first,\n   string last,\n   set(string) friends\n")
                .expect("the chapter's space parses"),
        ),
    );
    c.admin(
        ">>> c.add_space('''space rt key x''')",
        Operation::AddSpace(parse_space("space rt key x").expect("parses")),
    );
    c.admin(">>> c.rm_space('rt')", Operation::RmSpace("rt".into()));
    for (key, first, last) in [
        ("jsmith1", "John", "Smith"),
        ("jd", "John", "Doe"),
        ("bjones1", "Brian", "Jones"),
    ] {
        c.run(
            &format!(">>> c.put('friendlists', '{key}', {{'first': '{first}', 'last': '{last}'}})"),
            Operation::put(FL, key, vec![("first", s(first)), ("last", s(last))]),
        );
    }

    // Asynchronous operations.
    let d = c.issue(
        ">>> d = c.async_put('friendlists', 'jj', {'first': 'John', 'last': 'Jackson'})",
        Operation::put(FL, "jj", vec![("first", s("John")), ("last", s("Jackson"))]),
    );
    c.show(">>> # do some work", None);
    c.wait(">>> d.wait()", FL, &d);
    let d = c.issue(
        ">>> d = c.async_get('friendlists', 'jj')",
        Operation::get(FL, "jj"),
    );
    c.wait(">>> d.wait()", FL, &d);
    c.show(
        ">>> def get(client, space, key):\n...     return client.async_get(space, key).wait()\n...",
        None,
    );
    c.run(">>> get(c, 'friendlists', 'jj')", Operation::get(FL, "jj"));

    let set_add = |key: &str, friend: &str| {
        Operation::funcs(FL, key, funcs(vec![("friends", Func::SetAdd(s(friend)))]))
    };
    let d1 = c.issue(
        ">>> d1 = c.async_set_add('friendlists', 'jj', {'friends': 'jsmith1'})",
        set_add("jj", "jsmith1"),
    );
    let d2 = c.issue(
        ">>> d2 = c.async_set_add('friendlists', 'jsmith1', {'friends': 'jj'})",
        set_add("jsmith1", "jj"),
    );
    c.wait(">>> d1.wait()", FL, &d1);
    c.wait(">>> d2.wait()", FL, &d2);
    let d1 = c.issue(
        ">>> d1 = c.async_set_add('friendlists', 'jsmith1', {'friends': 'bjones1'})",
        set_add("jsmith1", "bjones1"),
    );
    let d2 = c.issue(
        ">>> d2 = c.async_set_add('friendlists', 'bjones1', {'friends': 'jsmith1'})",
        set_add("bjones1", "jsmith1"),
    );
    let d3 = c.issue(
        ">>> d3 = c.async_set_add('friendlists', 'jsmith1', {'friends': 'jd'})",
        set_add("jsmith1", "jd"),
    );
    let d4 = c.issue(
        ">>> d4 = c.async_set_add('friendlists', 'jd', {'friends': 'jsmith1'})",
        set_add("jd", "jsmith1"),
    );
    for (name, d) in [("d1", d1), ("d2", d2), ("d3", d3), ("d4", d4)] {
        c.wait(&format!(">>> {name}.wait()"), FL, &d);
    }

    // Fetch the friends' first names with loop().
    c.show(
        ">>> friends_usernames = c.get('friendlists', 'jsmith1')['friends']",
        None,
    );
    let Value::Set(usernames) = c.get(FL, "jsmith1")["friends"].clone() else {
        panic!("friends is a set")
    };
    c.show(
        ">>> outstanding = set()\n>>> for username in friends_usernames:\n...     outstanding.add(c.async_get('friendlists', username))\n...",
        None,
    );
    let mut friends = Vec::new();
    for username in &usernames {
        let Value::String(u) = username else { panic!() };
        let obj = c.get(FL, &String::from_utf8_lossy(u));
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
    );
    let john_smith = || Check::equals_all(&[("first", s("John")), ("last", s("Smith"))]);
    c.run(
        ">>> c.cond_put('friendlists', 'jsmith1',\n...            {'first': 'John', 'last': 'Smith'},\n...            {'first': 'Jon'})",
        Operation::cond_put(FL, "jsmith1", john_smith(), vec![("first", s("Jon"))]),
    );
    c.run(
        ">>> c.get('friendlists', 'jsmith1')",
        Operation::get(FL, "jsmith1"),
    );
    c.run(
        ">>> c.cond_put('friendlists', 'jsmith1',\n...            {'first': 'John', 'last': 'Smith'},\n...            {'first': 'Jon'})",
        Operation::cond_put(FL, "jsmith1", john_smith(), vec![("first", s("Jon"))]),
    );
    c.run(
        ">>> c.cond_put('friendlists', 'jsmith1',\n...            {'friends': set(['bjones1', 'jd', 'jj'])},\n...            {'first': 'John'})",
        Operation::cond_put(
            FL,
            "jsmith1",
            Check::equals_all(&[("friends", set(&["bjones1", "jd", "jj"]))]),
            vec![("first", s("John"))],
        ),
    );
    c.run(
        ">>> c.get('friendlists', 'jsmith1')",
        Operation::get(FL, "jsmith1"),
    );

    // put_if_not_exist and locks.
    c.admin(
        ">>> c.add_space('''\n... space userlocks\n... key username\n... ''')",
        Operation::AddSpace(parse_space("\nspace userlocks\nkey username\n").expect("parses")),
    );
    c.run(
        ">>> c.put_if_not_exist('userlocks', 'jsmith1', {})",
        Operation::put_if_not_exist("userlocks", "jsmith1", vec![]),
    );
    c.run(
        ">>> c.get('userlocks', 'jsmith1')",
        Operation::get("userlocks", "jsmith1"),
    );
    c.run(
        ">>> c.put_if_not_exist('userlocks', 'jsmith1', {})",
        Operation::put_if_not_exist("userlocks", "jsmith1", vec![]),
    );
    c.run(
        ">>> c.delete('userlocks', 'jsmith1')",
        Operation::del("userlocks", "jsmith1"),
    );
    c.show(
        ">>> def lock(client, user):\n...     while not client.put_if_not_exist('userlocks', user, {}):\n...         pass\n>>> def unlock(client, user):\n...     client.delete('userlocks', user)",
        None,
    );
    let mut tries = 0;
    while c
        .model
        .apply(&Operation::put_if_not_exist("userlocks", "jsmith1", vec![]))
        != Reply::Success
    {
        tries += 1;
        assert!(tries < 10, "the lock is free, the first try must take it");
    }
    c.show(">>> lock(c, 'jsmith1')", None);
    assert_eq!(
        c.model.apply(&Operation::del("userlocks", "jsmith1")),
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
    );
    let k = "somekey";
    c.run(
        ">>> c.put_if_not_exist('alldatatypes', 'somekey', {'s': 'initial value'})",
        Operation::put_if_not_exist(ALL, k, vec![("s", s("initial value"))]),
    );
    c.run(
        ">>> c.put_if_not_exist('alldatatypes', 'somekey', {'s': 'initial value'})",
        Operation::put_if_not_exist(ALL, k, vec![("s", s("initial value"))]),
    );
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
    );
    c.run(
        ">>> c.cond_put('alldatatypes', 'somekey', {'s': 'initial value'}, {'s': 'some string'})",
        cond(),
    );
    let get_all = ">>> c.get('alldatatypes', 'somekey')";
    c.run(get_all, Operation::get(ALL, k));

    let atomic = |op: NumOp, attrs: Vec<(&str, Value)>| Operation::atomic(op, ALL, k, attrs);
    c.run(
        ">>> c.atomic_add('alldatatypes', 'somekey', {'i': 1, 'f': 0.25})",
        atomic(
            NumOp::Add,
            vec![("i", Value::Int(1)), ("f", Value::Float(0.25))],
        ),
    );
    c.run(get_all, Operation::get(ALL, k));
    c.run(
        ">>> c.atomic_sub('alldatatypes', 'somekey', {'i': 2, 'f': 0.5})",
        atomic(
            NumOp::Sub,
            vec![("i", Value::Int(2)), ("f", Value::Float(0.5))],
        ),
    );
    c.run(get_all, Operation::get(ALL, k));
    c.run(
        ">>> c.atomic_mul('alldatatypes', 'somekey', {'i': 2, 'f': 4.})",
        atomic(
            NumOp::Mul,
            vec![("i", Value::Int(2)), ("f", Value::Float(4.0))],
        ),
    );
    c.run(get_all, Operation::get(ALL, k));
    c.run(
        ">>> c.atomic_div('alldatatypes', 'somekey', {'i': 2, 'f': 4.})",
        atomic(
            NumOp::Div,
            vec![("i", Value::Int(2)), ("f", Value::Float(4.0))],
        ),
    );
    c.run(get_all, Operation::get(ALL, k));

    let hex = |c: &mut Session| {
        let Value::Int(i) = c.get(ALL, k)["i"] else {
            panic!("i is an int")
        };
        c.show(
            ">>> print \"0x%x\" % (c.get('alldatatypes', 'somekey')['i'],)",
            Some(format!("0x{i:x}")),
        );
    };
    c.run(
        ">>> c.put('alldatatypes', 'somekey', {'i': 0xdeadbeefcafe})",
        Operation::put(ALL, k, vec![("i", Value::Int(0xdeadbeefcafe))]),
    );
    c.run(
        ">>> c.atomic_and('alldatatypes', 'somekey', {'i': 0xffffffff0000})",
        atomic(NumOp::And, vec![("i", Value::Int(0xffffffff0000))]),
    );
    c.run(get_all, Operation::get(ALL, k));
    hex(&mut c);
    c.run(
        ">>> c.atomic_or('alldatatypes', 'somekey', {'i': 0x00000000cafe})",
        atomic(NumOp::Or, vec![("i", Value::Int(0xcafe))]),
    );
    hex(&mut c);
    c.run(
        ">>> c.atomic_xor('alldatatypes', 'somekey', {'i': 0xdea5a0403af3})",
        atomic(NumOp::Xor, vec![("i", Value::Int(0xdea5a0403af3))]),
    );
    hex(&mut c);

    let one = |attr: &str, f: Func| Operation::funcs(ALL, k, funcs(vec![(attr, f)]));
    let show_attr = |c: &mut Session, attr: &str| {
        let v = c.get(ALL, k)[attr].clone();
        c.show(
            &format!(">>> c.get('alldatatypes', 'somekey')['{attr}']"),
            Some(py(&v)),
        );
    };
    c.run(
        ">>> c.string_prepend('alldatatypes', 'somekey', {'s': '->'})",
        one("s", Func::StringPrepend(s("->"))),
    );
    show_attr(&mut c, "s");
    c.run(
        ">>> c.string_append('alldatatypes', 'somekey', {'s': '<-'})",
        one("s", Func::StringAppend(s("<-"))),
    );
    show_attr(&mut c, "s");

    c.run(
        ">>> c.put('alldatatypes', 'somekey', {'ls': ['B']})",
        Operation::put(ALL, k, vec![("ls", Value::List(vec![s("B")]))]),
    );
    c.run(
        ">>> c.list_lpush('alldatatypes', 'somekey', {'ls': 'A'})",
        one("ls", Func::ListLpush(s("A"))),
    );
    show_attr(&mut c, "ls");
    c.run(
        ">>> c.list_rpush('alldatatypes', 'somekey', {'ls': 'C'})",
        one("ls", Func::ListRpush(s("C"))),
    );
    show_attr(&mut c, "ls");

    c.run(
        ">>> c.set_add('alldatatypes', 'somekey', {'ss': 'C'})",
        one("ss", Func::SetAdd(s("C"))),
    );
    show_attr(&mut c, "ss");
    c.run(
        ">>> c.set_remove('alldatatypes', 'somekey', {'ss': 'C'})",
        one("ss", Func::SetRemove(s("C"))),
    );
    show_attr(&mut c, "ss");
    c.run(
        ">>> c.set_union('alldatatypes', 'somekey', {'ss': set(['A', 'B', 'C'])})",
        one("ss", Func::SetUnion(set(&["A", "B", "C"]))),
    );
    show_attr(&mut c, "ss");
    c.run(
        ">>> c.set_intersect('alldatatypes', 'somekey', {'ss': set(['A', 'B', 'Z'])})",
        one("ss", Func::SetIntersect(set(&["A", "B", "Z"]))),
    );
    show_attr(&mut c, "ss");

    c.run(
        ">>> c.map_add('alldatatypes', 'somekey', {'mss': {'mapkey': 'mapvalue'}, 'msi': {'mapkey': 16}})",
        Operation::funcs(ALL, k, funcs(vec![
            ("mss", Func::MapAdd(s("mapkey"), s("mapvalue"))),
            ("msi", Func::MapAdd(s("mapkey"), Value::Int(16))),
        ])),
    );
    c.run(get_all, Operation::get(ALL, k));
    c.run(
        ">>> c.map_add('alldatatypes', 'somekey', {'mss': {'tmp': 'delete me'}})",
        one("mss", Func::MapAdd(s("tmp"), s("delete me"))),
    );
    c.run(get_all, Operation::get(ALL, k));
    c.run(
        ">>> c.map_remove('alldatatypes', 'somekey', {'mss': {'tmp': 'X'}})",
        one("mss", Func::MapRemove(s("tmp"))),
    );
    c.run(get_all, Operation::get(ALL, k));

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
        );
        c.run(get_all, Operation::get(ALL, k));
    }
    c.run(
        ">>> c.map_string_prepend('alldatatypes', 'somekey', {'mss': {'mapkey': '->'}})",
        one("mss", Func::MapStringPrepend(s("mapkey"), s("->"))),
    );
    c.run(get_all, Operation::get(ALL, k));
    c.run(
        ">>> c.map_string_append('alldatatypes', 'somekey', {'mss': {'mapkey': '<-'}})",
        one("mss", Func::MapStringAppend(s("mapkey"), s("<-"))),
    );
    c.run(get_all, Operation::get(ALL, k));

    c.show(
        ">>> # a hack to clean up the tutorial, not a real TODO",
        None,
    );
    c.admin(
        ">>> c.rm_space('''friendlists''')",
        Operation::RmSpace(FL.into()),
    );
    c.admin(
        ">>> c.rm_space('''userlocks''')",
        Operation::RmSpace("userlocks".into()),
    );
    c.transcript
}

#[test]
fn the_seed_chapter_on_the_model_matches_the_snapshot() {
    let transcript = perform_chapter();
    insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("seed_chapter_model", transcript);
    });
}

#[test]
fn every_printed_result_of_the_seed_chapter_is_reproduced() {
    let (path, chapter) = seed_chapter();
    let transcript = perform_chapter();
    let ours = steps(&transcript);
    let theirs = steps(&chapter);
    assert!(
        theirs.len() > 50,
        "{} does not look like the seed chapter",
        path.display()
    );
    let mut cursor = 0;
    let (mut compared, mut object_reprs) = (0, 0);
    for step in theirs.iter().filter(|s| !s.output.is_empty()) {
        let expected = step.output.join("\n");
        if expected.contains(" object at ") {
            object_reprs += 1;
            continue; // an object repr: checked by the Python client's tests
        }
        let want = normalize(&step.statement);
        let found = ours[cursor..]
            .iter()
            .position(|o| normalize(&o.statement) == want)
            .unwrap_or_else(|| {
                panic!(
                    "line {}: the model transcript has no step {:?} after step {cursor}",
                    step.line, step.statement
                )
            });
        let ours_step = &ours[cursor + found];
        cursor += found + 1;
        let got = ours_step.output.join("\n");
        let same = match (parse_py(&expected), parse_py(&got)) {
            (Some(e), Some(g)) => e.canonical() == g.canonical(),
            // A bare printed string (`->some string`): compare with our string's value.
            (None, Some(PyVal::Str(g))) => g == expected.as_bytes(),
            _ => expected == got,
        };
        assert!(
            same,
            "line {}: {}\n  chapter prints: {expected}\n  model gives:    {got}",
            step.line, step.statement
        );
        compared += 1;
    }
    // Every printed result of the chapter except the one object repr.
    let printed = theirs.iter().filter(|s| !s.output.is_empty()).count();
    assert_eq!(object_reprs, 1, "the chapter shows one Deferred repr");
    assert_eq!(compared + object_reprs, printed);
}
