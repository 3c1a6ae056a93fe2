"""hyperdex.admin: administration through the coordinator.

Failures raise :class:`HyperDexAdminException` (a :class:`HyperDexClientException`, so code
that catches either works). Every call has an ``async_`` form returning an object whose
``wait()`` gives the result, as HyperDex 1.8's admin has; the call is made when the
``async_`` form is called.
"""

import functools

from . import _hyperdex
from .client import HyperDexClientException


class HyperDexAdminException(HyperDexClientException):
    """An administrative call failed; ``status()``, ``symbol()`` and ``message()`` say why."""


def _admin_errors(call):
    """Re-raises the native half's failures as HyperDexAdminException."""

    @functools.wraps(call)
    def wrapped(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except HyperDexAdminException:
            raise
        except HyperDexClientException as e:
            raise HyperDexAdminException(e.status(), e.symbol(), e.message()) from e

    return wrapped


class AdminDeferred(object):
    """The outcome of an ``async_`` admin call: ``wait()`` returns it or raises its error."""

    def __init__(self, call, *args):
        self._result = None
        self._error = None
        try:
            self._result = call(*args)
        except HyperDexClientException as e:
            self._error = e

    def wait(self):
        if self._error is not None:
            raise self._error
        return self._result


class Subspace(object):
    def __init__(self, identifier, attributes):
        self.identifier = int(identifier)
        self.attributes = attributes

    def __repr__(self):
        return "Subspace(%r, %r)" % (self.identifier, self.attributes)


class Index(object):
    def __init__(self, identifier, attribute):
        self.identifier = int(identifier)
        self.attribute = attribute

    def __repr__(self):
        return "Index(%r, %r)" % (self.identifier, self.attribute)


class Admin(object):
    """Spaces and servers of a cluster."""

    def __init__(self, host, port):
        self._native = _hyperdex.NativeAdmin(host, int(port))

    def add_space(self, description):
        self._native.add_space(description)
        return True

    def rm_space(self, name):
        self._native.rm_space(name)
        return True

    def list_spaces(self):
        return self._native.list_spaces()

    def list_subspaces(self, space):
        subspaces, _ = self._native.space_layout(space)
        return [Subspace(i, attrs) for i, attrs in subspaces]

    def list_indices(self, space):
        _, indexes = self._native.space_layout(space)
        return [Index(i, attr) for i, attr in indexes]

    def validate_space(self, description):
        _hyperdex.validate_space(description)
        return True

    def wait_until_stable(self, timeout=60.0):
        self._native.wait_until_stable(float(timeout))
        return True

    def dump_config(self):
        return self._native.dump_config()

    def server_kill(self, token):
        """Treats server `token` as failed: its chains are repaired without it."""
        self._native.server_kill(int(token))
        return True

    def server_forget(self, token):
        """Removes server `token` from the cluster altogether."""
        self._native.server_forget(int(token))
        return True

    def add_index(self, space, attribute):
        """Adds a secondary index on `attribute` of `space`; daemons build it in the
        background and searches use it once built (with the same results meanwhile)."""
        self._native.add_index(space, attribute)
        return True

    def rm_index(self, idxid):
        """Removes an index, given as an Index from list_indices or its identifier."""
        if isinstance(idxid, Index):
            idxid = idxid.identifier
        if not isinstance(idxid, int):
            raise ValueError("Index ID must be an integer (or an instance of Index)")
        self._native.rm_index(idxid)
        return True

    def read_only(self, ro):
        """Read-only mode on (every write raises READONLY; reads go on) or off; in force on
        every daemon when it returns."""
        self._native.read_only(bool(ro))
        return True

    def fault_tolerance(self, space, ft):
        """Makes each region of `space` keep ft + 1 replicas (new ones join by transfer)."""
        self._native.fault_tolerance(space, int(ft))
        return True

    def backup(self, name):
        """Writes a consistent backup of every space into directory `name` (new or empty;
        the cluster is read-only meanwhile); returns what it wrote, one line per space.
        `hyperdex restore DIR` loads it into a cluster."""
        return self._native.backup(str(name))


_ADMIN_CALLS = (
    "add_space", "rm_space", "list_spaces", "list_subspaces", "list_indices",
    "wait_until_stable", "dump_config", "server_kill", "server_forget", "read_only",
    "fault_tolerance", "add_index", "rm_index", "backup",
)


def _install_admin_calls():
    Admin.__init__ = _admin_errors(Admin.__init__)
    for name in _ADMIN_CALLS:
        call = _admin_errors(getattr(Admin, name))
        setattr(Admin, name, call)

        def asynchronous(self, *args, _call=call):
            return AdminDeferred(functools.partial(_call, self), *args)

        asynchronous.__name__ = "async_" + name
        asynchronous.__doc__ = "The asynchronous form of %s: wait() gives its result." % name
        setattr(Admin, "async_" + name, asynchronous)


_install_admin_calls()
