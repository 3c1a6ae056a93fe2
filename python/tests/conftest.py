"""A real local cluster (`hyperdex local`: a coordinator and three daemons) for the tests."""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def hyperdex_binary():
    explicit = os.environ.get("HYPERDEX_BIN")
    if explicit:
        return explicit
    for candidate in ("target/release/hyperdex", "target/debug/hyperdex"):
        path = os.path.join(ROOT, candidate)
        if os.path.exists(path):
            return path
    raise RuntimeError("build hyperdex first (cargo build) or set HYPERDEX_BIN")


@pytest.fixture(scope="session")
def cluster():
    data = tempfile.mkdtemp(prefix="hyperdex-pytest-")
    proc = subprocess.Popen(
        [hyperdex_binary(), "local", "--port", "0", "--data", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        m = re.search(r"coordinator at ([0-9.]+):([0-9]+)", line)
        if m:
            address = (m.group(1), int(m.group(2)))
            break
    if address is None:
        proc.kill()
        raise RuntimeError("hyperdex local did not start:\n" + "".join(seen))
    yield address
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(data, ignore_errors=True)
