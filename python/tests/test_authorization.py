"""HyperDex's authorization chapter (test/doc.authorization.py in HyperDex's sources), run
against this cluster with this package's `macaroons` module.

Adaptations: the expiries are seconds from now instead of 30 and 10, and the sleeps shorter,
so the test takes seconds; the chapter's object secret is given both ways HyperDex took it
(the `__secret` attribute of the 1.x documents and the `secret=` keyword of 1.8).
"""

import time

import pytest

import hyperdex.admin
import hyperdex.client
import macaroons
from hyperdex.client import HyperDexClientException


def unauthorized(call):
    with pytest.raises(HyperDexClientException) as e:
        call()
    assert e.value.symbol() == "HYPERDEX_CLIENT_UNAUTHORIZED", str(e.value)


def test_the_authorization_chapter(cluster):
    host, port = cluster
    a = hyperdex.admin.Admin(host, port)
    assert a.add_space('''
space accounts
key int account
attributes
   string name,
   int balance
with authorization
''')
    c = hyperdex.client.Client(host, port)
    SECRET = 'this is the password for the account'
    assert c.put('accounts', 3735928559, {'name': 'John Smith', 'balance': 10, '__secret': SECRET})
    unauthorized(lambda: c.get('accounts', 3735928559))

    M = macaroons.create('account 3735928559', SECRET, '')
    token = M.serialize()
    assert c.get('accounts', 3735928559, auth=[token]) == {'name': 'John Smith', 'balance': 10}
    assert c.atomic_add('accounts', 3735928559, {'balance': 5}, auth=[token])
    assert c.get('accounts', 3735928559, auth=[token]) == {'name': 'John Smith', 'balance': 15}

    M = macaroons.create('account 3735928559', SECRET, '')
    M = M.add_first_party_caveat('op = read')
    token = M.serialize()
    assert c.get('accounts', 3735928559, auth=[token]) == {'name': 'John Smith', 'balance': 15}
    unauthorized(lambda: c.atomic_add('accounts', 3735928559, {'balance': 5}, auth=[token]))

    def add_caveat_rpc(key):
        return 'identifier associated with key'

    key = 'a unique key for this caveat; usually a random string'
    ident = add_caveat_rpc(key)
    M = M.add_third_party_caveat('http://audit.service/', key, ident)
    token = M.serialize()
    unauthorized(lambda: c.get('accounts', 3735928559, auth=[token]))

    def generate_discharge_rpc(ident, lifetime=None):
        D = macaroons.create('', 'a unique key for this caveat; usually a random string', ident)
        if lifetime is not None:
            D = D.add_first_party_caveat('time < %d' % (int(time.time()) + lifetime))
        return D

    DP = M.prepare_for_request(generate_discharge_rpc(ident))
    assert c.get('accounts', 3735928559, auth=[token, DP.serialize()]) == {'name': 'John Smith', 'balance': 15}
    DP = M.prepare_for_request(generate_discharge_rpc(ident, lifetime=2))
    assert c.get('accounts', 3735928559, auth=[token, DP.serialize()]) == {'name': 'John Smith', 'balance': 15}
    time.sleep(3)
    unauthorized(lambda: c.get('accounts', 3735928559, auth=[token, DP.serialize()]))


def test_secret_keyword_and_what_stays_hidden(cluster):
    host, port = cluster
    a = hyperdex.admin.Admin(host, port)
    assert a.add_space('space vault key k attributes string v with authorization')
    c = hyperdex.client.Client(host, port)
    assert c.put('vault', 'a', {'v': 'x'}, secret='the secret of object a')
    # Without the secret an object cannot be created; nor read, searched or changed.
    unauthorized(lambda: c.put('vault', 'b', {'v': 'y'}))
    unauthorized(lambda: c.get('vault', 'missing', auth=[macaroons.create('', 'x', '').serialize()]))
    unauthorized(lambda: list(c.search('vault', {})))
    wrong = macaroons.create('', 'not the secret of object a', '').serialize()
    unauthorized(lambda: c.get('vault', 'a', auth=[wrong]))
    token = macaroons.create('', 'the secret of object a', '').serialize()
    got = c.get('vault', 'a', auth=[token])
    assert got == {'v': 'x'}, "the secret is never read back"


def test_macaroons_module_matches_libmacaroons(cluster):
    M = macaroons.create('http://example.org/', 'this is the key', 'keyid')
    assert M.signature == b'7cdee792511c5bc6f528485805dfe9b24e785e28e2a99301f9d711c609e38ef7'
    M = M.add_first_party_caveat('account = 3735928559')
    V = macaroons.Verifier()
    V.satisfy_exact('account = 3735928559')
    assert V.verify(M, 'this is the key')
    with pytest.raises(macaroons.Unauthorized):
        V.verify(M, 'this is not the key')
    assert macaroons.deserialize(M.serialize()).is_same(M)
