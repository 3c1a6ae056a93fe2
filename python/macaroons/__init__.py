"""Macaroons with libmacaroons' Python API (the one HyperDex's authorization chapter uses).

    M = macaroons.create(location, key, identifier)
    M = M.add_first_party_caveat('op = read')
    M = M.add_third_party_caveat(location, caveat_key, caveat_identifier)
    DP = M.prepare_for_request(D)
    token = M.serialize()          # V1, URL-safe base64 (a str)
    macaroons.deserialize(token)
    V = macaroons.Verifier(); V.satisfy_exact(...); V.satisfy_general(f); V.verify(M, key, [DP])

Every method returns a new macaroon. Keys, locations, identifiers and predicates may be
str (UTF-8) or bytes.
"""

import binascii
import os

from hyperdex import _hyperdex as _native

SUGGESTED_SECRET_LENGTH = 32


class MacaroonError(Exception):
    pass


class Unauthorized(Exception):
    pass


def _bytes(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    raise TypeError("expected str or bytes, not %s" % type(x).__name__)


class Macaroon(object):
    def __init__(self, serialized=None):
        self._s = serialized

    def _raw(self):
        if self._s is None:
            raise ValueError("macaroon not initialized")
        return self._s.encode("ascii")

    def _fields(self):
        return _native.macaroon_fields(self._raw())

    @property
    def location(self):
        return bytes(self._fields()[0])

    @property
    def identifier(self):
        return bytes(self._fields()[1])

    @property
    def signature(self):
        return self._fields()[2].encode("ascii")

    def add_first_party_caveat(self, predicate):
        return Macaroon(_native.macaroon_add_first_party_caveat(self._raw(), _bytes(predicate)))

    def add_third_party_caveat(self, location, key, key_id):
        nonce = list(os.urandom(24))
        return Macaroon(_native.macaroon_add_third_party_caveat(
            self._raw(), _bytes(location), _bytes(key), _bytes(key_id), nonce))

    def prepare_for_request(self, discharge):
        return Macaroon(_native.macaroon_prepare_for_request(self._raw(), discharge._raw()))

    def third_party_caveats(self):
        return [(bytes(cl), bytes(cid)) for (cid, vid, cl) in self._fields()[3] if vid and cl]

    def serialize(self, format=1):
        if format not in (1, "1"):
            raise KeyError("only the V1 format is supported: serialize(1)")
        return self._s

    def inspect(self):
        loc, ident, sig, caveats = self._fields()
        lines = ["location " + bytes(loc).decode("utf-8", "replace"),
                 "identifier " + bytes(ident).decode("utf-8", "replace")]
        for cid, vid, cl in caveats:
            lines.append("cid " + bytes(cid).decode("utf-8", "replace"))
            if vid:
                lines.append("vid " + binascii.b2a_base64(bytes(vid)).decode().strip())
            if cl:
                lines.append("cl " + bytes(cl).decode("utf-8", "replace"))
        lines.append("signature " + sig)
        return "\n".join(lines)

    def copy(self):
        return Macaroon(self._s)

    def is_same(self, other):
        return self._s == other._s

    def validate(self):
        return True

    def __repr__(self):
        return "<macaroons.Macaroon %s>" % self._fields()[2]


def create(location, key, key_id):
    return Macaroon(_native.macaroon_create(_bytes(location), _bytes(key), _bytes(key_id)))


def deserialize(m):
    text = m.decode("ascii") if isinstance(m, bytes) else m
    try:
        _native.macaroon_fields(text.encode("ascii"))
    except (ValueError, UnicodeError) as e:
        raise MacaroonError("macaroon invalid: %s" % e)
    return Macaroon(text)


class Verifier(object):
    def __init__(self):
        self._exact = []
        self._general = []

    def satisfy_exact(self, predicate):
        self._exact.append(_bytes(predicate))

    def satisfy_general(self, func):
        self._general.append(func)

    def verify_unsafe(self, M, key, MS=None):
        if M is None:
            return False
        return _native.macaroon_verify(M._raw(), _bytes(key), [D._raw() for D in (MS or [])],
                                       self._exact, self._general)

    def verify(self, M, key, MS=None):
        if not self.verify_unsafe(M, key, MS):
            raise Unauthorized("macaroon not authorized")
        return True
