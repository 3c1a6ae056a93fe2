"""hyperdex.client: HyperDex's Python client API, on the hyperdex-rs Rust client.

Results follow HyperDex: SUCCESS gives ``True`` (the object for ``get``, a number for
``count`` and the ``group_*`` calls), NOTFOUND gives ``None``, CMPFAIL gives ``False``, and any
other return code raises :class:`HyperDexClientException`. Every call has an ``async_`` form
returning a :class:`Deferred`; :meth:`Client.loop` returns whichever outstanding Deferred
finishes next.
"""

from . import _hyperdex


class HyperDexClientException(Exception):
    """A call failed; ``str()`` is the message followed by the symbol in brackets."""

    def __init__(self, status, symbol, message):
        Exception.__init__(self, "%s [%s]" % (message, symbol))
        self._status = status
        self._symbol = symbol
        self._message = message

    def status(self):
        return self._status

    def symbol(self):
        return self._symbol

    def message(self):
        return self._message


class Document(object):
    """A document value: a JSON object, compared by value."""

    _hyperdex_document = True

    def __init__(self, doc):
        self._doc = doc

    def doc(self):
        return self._doc

    def __eq__(self, other):
        return isinstance(other, Document) and self._doc == other._doc

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(repr(self._doc))

    def __repr__(self):
        return "Document(%r)" % (self._doc,)


class Predicate(object):
    name = None

    def __init__(self, *args):
        self.args = args


class Equals(Predicate):
    name = "Equals"


class LessThan(Predicate):
    name = "LessThan"


class LessEqual(Predicate):
    name = "LessEqual"


class GreaterEqual(Predicate):
    name = "GreaterEqual"


class GreaterThan(Predicate):
    name = "GreaterThan"


class Range(Predicate):
    name = "Range"


class Regex(Predicate):
    name = "Regex"


class LengthEquals(Predicate):
    name = "LengthEquals"


class LengthLessEqual(Predicate):
    name = "LengthLessEqual"


class LengthGreaterEqual(Predicate):
    name = "LengthGreaterEqual"


class Contains(Predicate):
    name = "Contains"


def _checks(checks):
    """{attr: value | (lo, hi) | Predicate | [Predicate, ...]} as (attr, name, args) tuples."""
    out = []
    for attr, spec in (checks or {}).items():
        specs = spec if isinstance(spec, list) and all(isinstance(s, Predicate) for s in spec) and spec else [spec]
        for s in specs:
            if isinstance(s, Predicate):
                out.append((attr, s.name, list(s.args)))
            elif isinstance(s, tuple) and len(s) == 2:
                out.append((attr, "Range", list(s)))
            else:
                out.append((attr, "Equals", [s]))
    return out


def _map_entries(attr, value, name):
    if not isinstance(value, dict):
        raise TypeError("%s on attribute %r takes a dict of map entries" % (name, attr))
    return value.items()


def _funcs(name, attrs):
    """The functions of one call as (attr, function, args) tuples."""
    out = []
    for attr, value in (attrs or {}).items():
        if name.startswith("map_atomic_") or name in ("map_add", "map_string_prepend", "map_string_append"):
            for k, v in _map_entries(attr, value, name):
                out.append((attr, name, [k, v]))
        elif name == "map_remove":
            # hyperdex.client passes {attr: mapkey}; the 1.0 hyperclient {attr: {mapkey: x}}.
            keys = list(value.keys()) if isinstance(value, dict) else [value]
            for k in keys:
                out.append((attr, name, [k]))
        elif name == "document_unset":
            out.append((attr, name, []))
        else:
            out.append((attr, name, [value]))
    return out


class Deferred(object):
    """An operation in progress; ``wait()`` gives its result."""

    def __init__(self, client, ident):
        self._client = client
        self._id = ident
        self._done = False
        self._result = None
        self._error = None

    def _finish(self, result, is_error):
        self._done = True
        if is_error:
            self._error = result
        else:
            self._result = result

    def wait(self):
        if not self._done:
            self._client._wait_for(self)
        if self._error is not None:
            raise self._error
        return self._result


class SearchIterator(object):
    """The objects a search finds, each a dict with the key. With `pages` (a function that
    returns the next page, or None at the end), pages are fetched as the iterator reaches
    them, so a search over any number of objects needs memory for one page only."""

    def __init__(self, objects, pages=None):
        self._objects = list(objects)
        self._pos = 0
        self._pages = pages

    def __iter__(self):
        return self

    def hasNext(self):
        while self._pos >= len(self._objects) and self._pages is not None:
            page = self._pages()
            if page is None:
                self._pages = None
            else:
                self._objects, self._pos = list(page), 0
        return self._pos < len(self._objects)

    def __next__(self):
        if not self.hasNext():
            raise StopIteration
        obj = self._objects[self._pos]
        self._pos += 1
        return obj

    next = __next__


_MUTATORS = (
    ["put", "string_prepend", "string_append", "string_ltrim", "string_rtrim", "list_lpush",
     "list_rpush", "set_add", "set_remove", "set_union", "set_intersect", "map_add",
     "map_remove", "map_string_prepend", "map_string_append", "document_rename",
     "document_unset"]
    + ["atomic_" + op for op in ("add", "sub", "mul", "div", "mod", "and", "or", "xor", "min", "max")]
    + ["map_atomic_" + op for op in ("add", "sub", "mul", "div", "mod", "and", "or", "xor", "min", "max")]
)


# The calls a microtransaction takes, as HyperDex 1.8's (``uxact_*`` in its C client).
_UXACT_CALLS = (
    ["put", "string_prepend", "string_append", "string_ltrim", "string_rtrim", "list_lpush",
     "list_rpush", "document_rename", "document_unset"]
    + ["atomic_" + op for op in ("add", "sub", "mul", "div", "and", "or", "min", "max")]
)


class Microtransaction(object):
    """Changes to one object collected call by call and applied together, atomically, by a
    commit (HyperDex 1.8's microtransactions). Nothing is sent before the commit; a commit
    applies every change or none (a change that cannot apply, such as a division by zero,
    makes the commit return False and change nothing)."""

    def __init__(self, client, space):
        self._client = client
        self._space = space
        self._funcs = []

    def _commit_op(self, key, checks):
        return Client._write(self._space, key, _checks(checks), list(self._funcs), "any")

    def commit(self, key, auth=None):
        """Applies the changes to the object `key` (created if missing); True on success."""
        return self._client._call(self._commit_op(key, None), auth)

    def async_commit(self, key, auth=None):
        return self._client._start(self._commit_op(key, None), auth)

    def cond_commit(self, key, checks, auth=None):
        """Applies the changes if the object matches `checks` (False if it does not); a
        missing object is created, as in HyperDex 1.8."""
        return self._client._call(self._commit_op(key, checks), auth)

    def async_cond_commit(self, key, checks, auth=None):
        return self._client._start(self._commit_op(key, checks), auth)

    def _group_op(self, checks):
        return ("group", self._space, _checks(checks), list(self._funcs))

    def group_commit(self, checks, auth=None):
        """Applies the changes to every object matching `checks`; the number changed."""
        return self._client._call(self._group_op(checks), auth)

    def async_group_commit(self, checks, auth=None):
        return self._client._start(self._group_op(checks), auth)


def _install_uxact_calls():
    def collect(name):
        def call(self, attrs):
            self._funcs.extend(_funcs(name, attrs))
            return True
        call.__name__ = name
        call.__doc__ = "Adds %s of `attrs` to the microtransaction." % name
        return call

    for name in _UXACT_CALLS:
        setattr(Microtransaction, name, collect(name))


_install_uxact_calls()


class Client(object):
    """A connection to a HyperDex cluster through its coordinator."""

    _deferred_class = Deferred

    def __init__(self, host, port, timeout=None):
        self._native = _hyperdex.NativeClient(host, int(port), timeout)
        self._outstanding = {}

    # Core plumbing.
    def _call(self, op, auth=None):
        return self._native.call(op, _tokens(auth))

    def _start(self, op, auth=None):
        d = self._deferred_class(self, None)
        d._id = self._native.start(op, _tokens(auth))
        self._outstanding[d._id] = d
        return d

    def _wait_for(self, deferred):
        result = None
        try:
            result = self._native.wait(deferred._id)
        except HyperDexClientException as e:
            self._outstanding.pop(deferred._id, None)
            deferred._finish(e, True)
            return
        self._outstanding.pop(deferred._id, None)
        deferred._finish(result, False)

    def loop(self):
        """The Deferred of whichever outstanding operation finishes next."""
        while True:
            nxt = self._native.loop_next()
            if nxt is None:
                raise HyperDexClientException(8523, "HYPERDEX_CLIENT_NONEPENDING", "no operations are pending")
            ident, result, is_error = nxt
            d = self._outstanding.pop(ident, None)
            if d is not None:
                d._finish(result, is_error)
                return d

    # Operations as tuples for the native half.
    @staticmethod
    def _write(space, key, checks, funcs, existence, erase=False):
        return ("write", space, key, checks, funcs, existence, erase)

    def _op_get(self, space, key):
        return ("get", space, key)

    def _op_get_partial(self, space, key, attributes):
        return ("get_partial", space, key, list(attributes))

    def _op_put(self, space, key, attrs):
        return self._write(space, key, [], _funcs("put", attrs), "any")

    def _op_put_if_not_exist(self, space, key, attrs):
        return self._write(space, key, [], _funcs("put", attrs), "mustnot")

    def _op_cond_put(self, space, key, checks, attrs):
        return self._write(space, key, _checks(checks), _funcs("put", attrs), "must")

    def _op_cond_put_or_create(self, space, key, checks, attrs):
        return self._write(space, key, _checks(checks), _funcs("put", attrs), "any")

    def _op_delete(self, space, key):
        return self._write(space, key, [], [], "must", True)

    def _op_cond_del(self, space, key, checks):
        return self._write(space, key, _checks(checks), [], "must", True)

    def _op_search(self, space, checks):
        return ("search", space, _checks(checks))

    def _op_count(self, space, checks):
        return ("count", space, _checks(checks))

    def _op_group_del(self, space, checks):
        return ("group_del", space, _checks(checks))

    def _op_sorted_search(self, space, checks, sort_by, limit, maxmin):
        maximize = maxmin in (True, "max", "maximize")
        return ("sorted_search", space, _checks(checks), sort_by, int(limit), maximize)

    # The synchronous and asynchronous API.
    def get(self, space, key, auth=None):
        return self._call(self._op_get(space, key), auth)

    def async_get(self, space, key, auth=None):
        return self._start(self._op_get(space, key), auth)

    def get_partial(self, space, key, attributes, auth=None):
        return self._call(self._op_get_partial(space, key, attributes), auth)

    def async_get_partial(self, space, key, attributes, auth=None):
        return self._start(self._op_get_partial(space, key, attributes), auth)

    def put_if_not_exist(self, space, key, attrs, **kwargs):
        auth, (attrs,) = _authorization((attrs,), kwargs)
        return self._call(self._op_put_if_not_exist(space, key, attrs), auth)

    def async_put_if_not_exist(self, space, key, attrs, **kwargs):
        auth, (attrs,) = _authorization((attrs,), kwargs)
        return self._start(self._op_put_if_not_exist(space, key, attrs), auth)

    def cond_put_or_create(self, space, key, checks, attrs, **kwargs):
        auth, (attrs,) = _authorization((attrs,), kwargs)
        return self._call(self._op_cond_put_or_create(space, key, checks, attrs), auth)

    def async_cond_put_or_create(self, space, key, checks, attrs, **kwargs):
        auth, (attrs,) = _authorization((attrs,), kwargs)
        return self._start(self._op_cond_put_or_create(space, key, checks, attrs), auth)

    def delete(self, space, key, auth=None):
        return self._call(self._op_delete(space, key), auth)

    def async_delete(self, space, key, auth=None):
        return self._start(self._op_delete(space, key), auth)

    def cond_del(self, space, key, checks, auth=None):
        return self._call(self._op_cond_del(space, key, checks), auth)

    def async_cond_del(self, space, key, checks, auth=None):
        return self._start(self._op_cond_del(space, key, checks), auth)

    def group_del(self, space, checks, auth=None):
        return self._call(self._op_group_del(space, checks), auth)

    def async_group_del(self, space, checks, auth=None):
        return self._start(self._op_group_del(space, checks), auth)

    def count(self, space, checks, auth=None):
        return self._call(self._op_count(space, checks), auth)

    def async_count(self, space, checks, auth=None):
        return self._start(self._op_count(space, checks), auth)

    def microtransaction_init(self, space):
        """A new :class:`Microtransaction` on `space`."""
        return Microtransaction(self, space)

    def search(self, space, checks, auth=None):
        handle = self._native.search_start(self._op_search(space, checks))
        return SearchIterator([], lambda: self._native.search_next(handle))

    def search_describe(self, space, checks):
        """How a search of `space` with `checks` would run: the regions and servers it asks,
        and the index they read (a str; nothing is searched)."""
        return self._native.search_describe(self._op_search(space, checks))

    def sorted_search(self, space, checks, sort_by, limit, maxmin, auth=None):
        return SearchIterator(self._call(self._op_sorted_search(space, checks, sort_by, limit, maxmin), auth))


def _tokens(auth):
    """Macaroons as the native half takes them (str), or None."""
    if auth is None:
        return None
    return [t.decode("ascii") if isinstance(t, bytes) else str(t) for t in auth]


def _authorization(args, kwargs):
    """A call's `auth=` (macaroons) and `secret=` (the object's secret, added to the
    attributes it writes) keyword arguments, as HyperDex 1.8's client takes them."""
    auth = kwargs.pop("auth", None)
    secret = kwargs.pop("secret", None)
    if kwargs:
        raise TypeError("unexpected keyword arguments: %s" % ", ".join(sorted(kwargs)))
    if secret is not None:
        attrs = dict(args[-1]) if args and isinstance(args[-1], dict) else {}
        attrs["__secret"] = secret
        args = tuple(args[:-1]) + (attrs,) if args and isinstance(args[-1], dict) else tuple(args) + (attrs,)
    return auth, args


def _install_mutators():
    """put, atomic_add, ... with their cond_, group_ and async_ forms."""

    def plain(name):
        def op(self, space, key, attrs):
            return self._write(space, key, [], _funcs(name, attrs), "any" if name == "put" else "must")
        return op

    def cond(name):
        def op(self, space, key, checks, attrs):
            return self._write(space, key, _checks(checks), _funcs(name, attrs), "must")
        return op

    def group(name):
        def op(self, space, checks, attrs):
            return ("group", space, _checks(checks), _funcs(name, attrs))
        return op

    def sync(builder):
        def call(self, *args, **kwargs):
            auth, args = _authorization(args, kwargs)
            return self._call(builder(self, *args), auth)
        return call

    def asynchronous(builder):
        def start(self, *args, **kwargs):
            auth, args = _authorization(args, kwargs)
            return self._start(builder(self, *args), auth)
        return start

    for name in _MUTATORS:
        for prefix, builder in (("", plain(name)), ("cond_", cond(name)), ("group_", group(name))):
            full = prefix + name
            if full == "cond_put":
                builder = Client._op_cond_put
            setattr(Client, full, sync(builder))
            setattr(Client, "async_" + full, asynchronous(builder))


_install_mutators()
