"""hyperclient: the HyperDex 1.0-era Python module, as a thin layer over hyperdex.client.

``hyperclient.Client(host, port)`` has every method of ``hyperdex.client.Client`` plus
``add_space`` and ``rm_space``; asynchronous calls return ``DeferredFromAttrs`` objects.
"""

from hyperdex.admin import Admin
from hyperdex.client import Client as _Client
from hyperdex.client import Deferred, HyperDexClientException
from hyperdex.client import *  # noqa: F401,F403  (predicates, Document)

HyperClientException = HyperDexClientException


class DeferredFromAttrs(Deferred):
    pass


class Client(_Client):
    _deferred_class = DeferredFromAttrs

    def __init__(self, host, port, timeout=None):
        _Client.__init__(self, host, port, timeout)
        self._admin = Admin(host, port)

    def add_space(self, description):
        self._admin.add_space(description)

    def rm_space(self, name):
        self._admin.rm_space(name)
