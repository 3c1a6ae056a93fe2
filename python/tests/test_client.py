"""hyperdex.client, hyperdex.admin and hyperclient against a real cluster."""

import datetime
import time

import pytest

import hyperclient
from hyperdex.admin import Admin, HyperDexAdminException
from hyperdex.client import (
    Client,
    Contains,
    Document,
    GreaterEqual,
    HyperDexClientException,
    LengthEquals,
    LessThan,
    Range,
    Regex,
)

SPACE = """
space kv
key k
attributes
    int n, float f, string s, list(string) l, set(int) si,
    map(string, int) m, document d, timestamp(second) ts
"""


@pytest.fixture(scope="module")
def c(cluster):
    admin = Admin(*cluster)
    if "kv" in admin.list_spaces():
        admin.rm_space("kv")
    assert admin.add_space(SPACE) is True
    admin.wait_until_stable()
    return Client(*cluster)


def test_results_follow_hyperdex(c):
    assert c.put("kv", "a", {"n": 1, "s": "x"}) is True
    obj = c.get("kv", "a")
    assert obj["n"] == 1 and obj["s"] == "x" and obj["l"] == [] and obj["si"] == set()
    assert obj["m"] == {} and obj["f"] == 0.0
    assert c.get("kv", "missing") is None
    assert c.put_if_not_exist("kv", "a", {}) is False
    assert c.cond_put("kv", "a", {"n": 2}, {"s": "y"}) is False
    assert c.cond_put("kv", "a", {"n": 1}, {"s": "y"}) is True
    assert c.get_partial("kv", "a", ["s"]) == {"s": "y"}
    assert c.delete("kv", "a") is True
    assert c.delete("kv", "a") is None


def test_every_atomic_operation(c):
    c.put("kv", "b", {"n": 10, "f": 1.5, "s": "mid", "l": ["x"], "si": {1}, "m": {"a": 1}})
    assert c.atomic_add("kv", "b", {"n": 5, "f": 0.5}) is True
    assert c.atomic_sub("kv", "b", {"n": 3}) is True
    assert c.atomic_mul("kv", "b", {"n": 2}) is True
    assert c.atomic_div("kv", "b", {"n": 5}) is True
    assert c.atomic_mod("kv", "b", {"n": 3}) is True
    assert c.atomic_xor("kv", "b", {"n": 7}) is True
    assert c.atomic_or("kv", "b", {"n": 8}) is True
    assert c.atomic_and("kv", "b", {"n": 12}) is True
    assert c.atomic_max("kv", "b", {"n": 100}) is True
    assert c.atomic_min("kv", "b", {"n": 50}) is True
    assert c.string_prepend("kv", "b", {"s": "<"}) is True
    assert c.string_append("kv", "b", {"s": ">"}) is True
    assert c.list_lpush("kv", "b", {"l": "w"}) is True
    assert c.list_rpush("kv", "b", {"l": "y"}) is True
    assert c.set_add("kv", "b", {"si": 2}) is True
    assert c.set_remove("kv", "b", {"si": 1}) is True
    assert c.set_union("kv", "b", {"si": {5, 6}}) is True
    assert c.set_intersect("kv", "b", {"si": {2, 5}}) is True
    assert c.map_add("kv", "b", {"m": {"b": 2}}) is True
    assert c.map_atomic_add("kv", "b", {"m": {"a": 10}}) is True
    assert c.map_remove("kv", "b", {"m": "b"}) is True
    obj = c.get("kv", "b")
    assert obj["n"] == 50 and obj["f"] == 2.0 and obj["s"] == "<mid>"
    assert obj["l"] == ["w", "x", "y"] and obj["si"] == {2, 5} and obj["m"] == {"a": 11}
    assert c.atomic_add("kv", "nothing", {"n": 1}) is None
    assert c.atomic_div("kv", "b", {"n": 0}) is False, "division by zero is CMPFAIL"
    assert c.cond_atomic_add("kv", "b", {"n": 49}, {"n": 1}) is False
    assert c.cond_atomic_add("kv", "b", {"n": 50}, {"n": 1}) is True


def test_types_round_trip(c):
    raw = b"\xde\xad\xbe\xef"
    big = 2 ** 63 - 1
    when = datetime.datetime(2012, 8, 13, 12, 30, 15)
    c.put("kv", "t", {"s": raw, "n": -big - 1, "d": Document({"a": {"b": [1, 2]}}), "ts": when})
    obj = c.get("kv", "t")
    assert obj["s"] == raw and isinstance(obj["s"], bytes)
    assert obj["n"] == -big - 1
    assert obj["d"] == Document({"a": {"b": [1, 2]}})
    assert obj["ts"] == when
    c.put("kv", "t", {"n": big})
    assert c.get("kv", "t")["n"] == big
    c.atomic_add("kv", "t", {"d.a.c": 3})
    assert c.get("kv", "t")["d"].doc()["a"]["c"] == 3


def test_errors_raise_with_symbols(c):
    with pytest.raises(HyperDexClientException) as e:
        c.get("nospace", "k")
    assert e.value.symbol() == "HYPERDEX_CLIENT_UNKNOWNSPACE"
    assert e.value.status() == 8512
    assert str(e.value).endswith("[HYPERDEX_CLIENT_UNKNOWNSPACE]")
    with pytest.raises(HyperDexClientException) as e:
        c.put("kv", "k", {"frist": 1})
    assert e.value.symbol() == "HYPERDEX_CLIENT_UNKNOWNATTR"
    assert "frist" in e.value.message()
    with pytest.raises(HyperDexClientException) as e:
        c.put("kv", "k", {"n": "one"})
    assert e.value.symbol() == "HYPERDEX_CLIENT_WRONGTYPE"
    with pytest.raises(HyperDexClientException) as e:
        c.put("kv", "k", {"k": "x"})
    assert e.value.symbol() == "HYPERDEX_CLIENT_DONTUSEKEY"
    with pytest.raises(TypeError) as e:
        c.put("kv", "k", {"n": object()})
    assert "attribute \"n\"" in str(e.value)


def test_search_count_and_group_calls(c):
    for i in range(10):
        c.put("kv", "s%d" % i, {"n": i, "s": "even" if i % 2 == 0 else "odd", "si": {i}})
    found = list(c.search("kv", {"s": "even", "n": GreaterEqual(4)}))
    assert sorted(o["k"] for o in found) == ["s4", "s6", "s8"]
    assert c.count("kv", {"n": Range(2, 5), "s": Regex("^o")}) == 2
    assert c.count("kv", {"n": (0, 9), "si": Contains(3)}) == 1
    assert c.count("kv", {"s": LengthEquals(3)}) == 5
    top = c.sorted_search("kv", {"n": LessThan(100), "s": Regex("^(even|odd)$")}, "n", 2, "max")
    assert top.hasNext()
    assert [o["n"] for o in top] == [9, 8]
    assert c.group_atomic_add("kv", {"s": "odd"}, {"n": 100}) == 5
    assert c.count("kv", {"n": GreaterEqual(100), "s": "odd"}) == 5
    assert c.group_del("kv", {"s": "odd"}) == 5
    assert c.count("kv", {"s": "odd"}) == 0


def test_async_wait_loop_and_deferreds(c):
    d = c.async_put("kv", "x", {"n": 1})
    assert repr(d).startswith("<hyperdex.client.Deferred object at ")
    assert d.wait() is True
    outstanding = set(c.async_get("kv", "s%d" % i) for i in (0, 2, 4))
    got = []
    while outstanding:
        d = c.loop()
        outstanding.remove(d)
        got.append(d.wait()["n"])
    assert sorted(got) == [0, 2, 4]


def test_an_async_window_beats_synchronous_calls(c):
    n = 1000
    start = time.time()
    for i in range(n):
        c.put("kv", "w%d" % i, {"n": i})
    sync = time.time() - start
    start = time.time()
    pending = [c.async_put("kv", "w%d" % i, {"n": i + 1}) for i in range(n)]
    assert all(d.wait() is True for d in pending)
    asynchronous = time.time() - start
    print("1000 puts: synchronous %.2f s, one async window %.2f s, %.1fx" % (sync, asynchronous, sync / asynchronous))
    assert c.get("kv", "w999")["n"] == 1000
    assert sync / asynchronous > 2


def test_admin(cluster, c):
    admin = Admin(*cluster)
    assert "kv" in admin.list_spaces()
    assert admin.list_subspaces("kv")[0].attributes == ["k"]
    assert admin.list_indices("kv") == []
    assert admin.validate_space("space ok key k") is True
    with pytest.raises(ValueError):
        admin.validate_space("space bad key k attributes a, a")
    assert "space kv" in admin.dump_config()
    with pytest.raises(HyperDexClientException) as e:
        admin.server_kill(987654321)
    assert "987654321" in str(e.value)
    with pytest.raises(HyperDexClientException) as e:
        admin.fault_tolerance("no_such_space", 1)
    assert "no_such_space" in str(e.value)
    assert "kv" in admin.list_spaces()


def test_indexes_as_hyperdex_admin_has_them(cluster, c):
    admin = Admin(*cluster)
    assert admin.add_space("space idx key key1 attributes a1, int a2") is True
    try:
        subspaces = admin.list_subspaces("idx")
        assert [s.attributes for s in subspaces] == [["key1"]]
        assert admin.list_indices("idx") == []
        for i in range(300):
            c.put("idx", "k%03d" % i, {"a1": "v%d" % (i % 7), "a2": i})
        assert admin.add_index("idx", "a1") is True
        assert admin.async_add_index("idx", "a2").wait() is True
        indices = admin.list_indices("idx")
        assert sorted(i.attribute for i in indices) == ["a1", "a2"]
        # Searches give the same answers while the indexes are built and after.
        for _ in range(2):
            found = sorted(o["key1"] for o in c.search("idx", {"a1": "v3"}))
            assert found == ["k%03d" % i for i in range(300) if i % 7 == 3]
            assert c.count("idx", {"a2": Range(10, 19)}) == 10
            time.sleep(0.5)
        described = c.search_describe("idx", {"a1": "v3"})
        assert 'index on "a1"' in described, described
        assert "of 64 regions" in described, described
        assert 'index on' not in c.search_describe("idx", {"a1": Regex("v")})
        assert "1 of 64 regions" in c.search_describe("idx", {"key1": "k001"})
        c.put("idx", "k003", {"a1": "moved"})
        assert "k003" not in [o["key1"] for o in c.search("idx", {"a1": "v3"})]
        assert [o["key1"] for o in c.search("idx", {"a1": "moved"})] == ["k003"]
        with pytest.raises(HyperDexAdminException) as e:
            admin.add_index("idx", "nope")
        assert "nope" in str(e.value)
        with pytest.raises(HyperDexAdminException):
            admin.add_index("idx", "key1")
        a1 = [i for i in indices if i.attribute == "a1"][0]
        assert admin.rm_index(a1) is True
        assert [i.attribute for i in admin.list_indices("idx")] == ["a2"]
        with pytest.raises(HyperDexAdminException):
            admin.rm_index(a1.identifier)
        assert len(list(c.search("idx", {"a1": "v3"}))) == 42
    finally:
        admin.rm_space("idx")


def test_searches_through_subspaces(cluster, c):
    admin = Admin(*cluster)
    space = "space sub key k attributes city, int age subspace city subspace age"
    assert admin.add_space(space) is True
    try:
        subspaces = admin.list_subspaces("sub")
        assert [s.attributes for s in subspaces] == [["k"], ["city"], ["age"]]
        cities = ["Ithaca", "Boston", "Austin"]
        for i in range(200):
            c.put("sub", "p%03d" % i, {"city": cities[i % 3], "age": i})
        found = sorted(o["k"] for o in c.search("sub", {"city": "Ithaca"}))
        assert found == ["p%03d" % i for i in range(200) if i % 3 == 0]
        assert c.count("sub", {"age": Range(20, 29)}) == 10
        both = sorted(o["age"] for o in c.search("sub", {"age": Range(20, 29), "city": "Boston"}))
        assert both == [i for i in range(20, 30) if i % 3 == 1]
        oldest = c.sorted_search("sub", {"city": "Austin"}, "age", 2, "max")
        assert [o["k"] for o in oldest] == ["p197", "p194"]
        described = c.search_describe("sub", {"city": "Ithaca"})
        assert "narrow the subspace of city" in described, described
        assert "1 of 64 regions" in described, described
        # An object that moves between regions is found where it is now, once; a deleted one
        # nowhere.
        c.put("sub", "p000", {"city": "Boston"})
        assert "p000" not in [o["k"] for o in c.search("sub", {"city": "Ithaca"})]
        assert [o["k"] for o in c.search("sub", {"city": "Boston", "age": 0})] == ["p000"]
        c.delete("sub", "p003")
        assert c.count("sub", {"city": "Ithaca"}) == 65
        assert c.group_del("sub", {"city": "Austin"}) == 66
        assert c.count("sub", {"city": "Austin"}) == 0
        assert c.count("sub", {}) == 133
    finally:
        admin.rm_space("sub")


def test_backup(cluster, c, tmp_path):
    admin = Admin(*cluster)
    c.put("kv", "backed-up", {"n": 7})
    report = admin.backup(tmp_path / "b")
    assert "space kv " in report, report
    assert (tmp_path / "b" / "MANIFEST").exists()
    assert (tmp_path / "b" / "kv.space").read_text().startswith("space kv")
    assert c.put("kv", "backed-up", {"n": 8}) is True, "writable again"
    with pytest.raises(HyperDexAdminException):
        admin.backup(tmp_path / "b")


def test_admin_errors_and_asynchronous_calls(cluster):
    admin = Admin(*cluster)
    with pytest.raises(HyperDexAdminException) as e:
        admin.server_forget(987654321)
    assert isinstance(e.value, HyperDexClientException), "old handlers still catch it"
    assert e.value.symbol().startswith("HYPERDEX_ADMIN_"), e.value.symbol()
    assert "kv" in admin.async_list_spaces().wait()
    assert admin.async_wait_until_stable().wait() is True
    d = admin.async_fault_tolerance("no_such_space", 1)
    with pytest.raises(HyperDexAdminException):
        d.wait()


def test_read_only_mode_refuses_writes_and_serves_reads(cluster, c):
    admin = Admin(*cluster)
    assert c.put("kv", "ro", {"n": 1}) is True
    assert admin.read_only(True) is True
    try:
        with pytest.raises(HyperDexClientException) as e:
            c.put("kv", "ro", {"n": 2})
        assert e.value.symbol() == "HYPERDEX_CLIENT_READONLY"
        assert "read-only" in admin.dump_config().splitlines()[0]
        assert c.get("kv", "ro")["n"] == 1
        assert c.count("kv", {}) >= 1
    finally:
        assert admin.read_only(False) is True
    assert c.put("kv", "ro", {"n": 3}) is True
    assert c.get("kv", "ro")["n"] == 3


def test_rm_space_is_in_force_when_it_returns(cluster):
    admin = Admin(*cluster)
    assert admin.add_space("space brief key k attributes n") is True
    c = Client(*cluster)
    assert c.put("brief", "a", {"n": "1"}) is True
    assert c.get("brief", "a") == {"n": "1"}
    assert admin.rm_space("brief") is True
    with pytest.raises(HyperDexClientException) as e:
        c.get("brief", "a")
    assert e.value.symbol() == "HYPERDEX_CLIENT_UNKNOWNSPACE"


def test_hyperclient_is_the_old_module(cluster):
    hc = hyperclient.Client(*cluster)
    hc.add_space("space hc key k attributes map(string, string) m")
    d = hc.async_put("hc", "k", {"m": {"a": "1", "b": "2"}})
    assert repr(d).startswith("<hyperclient.DeferredFromAttrs object at ")
    assert d.wait() is True
    assert hc.map_remove("hc", "k", {"m": {"a": "X"}}) is True
    assert hc.get("hc", "k") == {"m": {"b": "2"}}
    assert hyperclient.HyperClientException is hyperclient.HyperDexClientException
    hc.rm_space("hc")


def test_microtransactions_apply_every_change_or_none(c):
    assert c.put("kv", "tx", {"d": Document({"a": 1}), "n": 1}) is True
    tx = c.microtransaction_init("kv")
    tx.put({"d.b": 2})
    tx.atomic_add({"n": 4})
    tx.put({"d.c": Document({"x": "y"})})
    assert c.get("kv", "tx")["n"] == 1, "nothing is sent before the commit"
    assert tx.commit("tx") is True
    obj = c.get("kv", "tx")
    assert obj["d"] == Document({"a": 1, "b": 2, "c": {"x": "y"}}) and obj["n"] == 5
    # One change fails (division by zero: CMPFAIL, as HyperDex answers a function that
    # cannot apply): none of them is applied.
    tx = c.microtransaction_init("kv")
    tx.atomic_add({"n": 1})
    tx.atomic_div({"n": 0})
    assert tx.commit("tx") is False
    assert c.get("kv", "tx")["n"] == 5
    # An empty microtransaction commits and changes nothing.
    assert c.microtransaction_init("kv").commit("tx") is True
    assert c.get("kv", "tx")["n"] == 5
    # cond_commit: only if the object matches.
    tx = c.microtransaction_init("kv")
    tx.atomic_mul({"n": 2})
    assert tx.cond_commit("tx", {"n": 4}) is False
    assert tx.cond_commit("tx", {"n": 5}) is True
    assert c.get("kv", "tx")["n"] == 10
    # group_commit: every object that matches; the number changed.
    c.put("kv", "tx", {"n": 1010})
    c.put("kv", "tx2", {"n": 1010})
    c.put("kv", "tx3", {"n": 1011})
    tx = c.microtransaction_init("kv")
    tx.atomic_sub({"n": 1010})
    tx.string_append({"s": "!"})
    assert tx.group_commit({"n": 1010}) == 2
    assert [c.get("kv", k)["n"] for k in ("tx", "tx2", "tx3")] == [0, 0, 1011]
    assert c.get("kv", "tx2")["s"] == "!"
    # The asynchronous forms.
    tx = c.microtransaction_init("kv")
    tx.atomic_add({"n": 7})
    assert tx.async_commit("tx3").wait() is True
    assert c.get("kv", "tx3")["n"] == 1018
