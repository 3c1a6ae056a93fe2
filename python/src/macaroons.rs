//! The native half of the `macaroons` module (libmacaroons' Python API, as HyperDex's
//! authorization chapter uses it) over [`hyperdex::macaroon`]. A macaroon crosses to Python
//! as its V1 serialization; the Python half (`macaroons/__init__.py`) wraps it in a class.

use hyperdex::macaroon::{Macaroon, Verifier};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn parse(m: &[u8]) -> PyResult<Macaroon> {
    Macaroon::deserialize(m).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pyfunction]
fn macaroon_create(location: &[u8], key: &[u8], identifier: &[u8]) -> String {
    Macaroon::create(location, key, identifier).serialize()
}

#[pyfunction]
fn macaroon_add_first_party_caveat(m: &[u8], predicate: &[u8]) -> PyResult<String> {
    Ok(parse(m)?.add_first_party_caveat(predicate).serialize())
}

#[pyfunction]
fn macaroon_add_third_party_caveat(
    m: &[u8],
    location: &[u8],
    key: &[u8],
    identifier: &[u8],
    nonce: [u8; 24],
) -> PyResult<String> {
    Ok(parse(m)?
        .add_third_party_caveat(location, key, identifier, nonce)
        .serialize())
}

#[pyfunction]
fn macaroon_prepare_for_request(m: &[u8], discharge: &[u8]) -> PyResult<String> {
    Ok(parse(m)?
        .prepare_for_request(&parse(discharge)?)
        .serialize())
}

/// (location, identifier, signature as hex, [(cid, vid, cl)]).
#[allow(clippy::type_complexity)]
#[pyfunction]
fn macaroon_fields(
    m: &[u8],
) -> PyResult<(Vec<u8>, Vec<u8>, String, Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>)> {
    let m = parse(m)?;
    let sig = m.signature.iter().map(|b| format!("{b:02x}")).collect();
    let caveats = m
        .caveats
        .iter()
        .map(|c| (c.cid.clone(), c.vid.clone(), c.cl.clone()))
        .collect();
    Ok((m.location, m.identifier, sig, caveats))
}

/// Whether `m` with `discharges` is authorized under `key`, given exact predicates and
/// general checks (Python callables; one that raises counts as unsatisfied).
#[pyfunction]
fn macaroon_verify(
    py: Python<'_>,
    m: &[u8],
    key: &[u8],
    discharges: Vec<Vec<u8>>,
    exact: Vec<Vec<u8>>,
    general: Vec<Py<PyAny>>,
) -> PyResult<bool> {
    let root = parse(m)?;
    let discharges = discharges
        .iter()
        .map(|d| parse(d))
        .collect::<PyResult<Vec<_>>>()?;
    let mut v = Verifier::default();
    for e in &exact {
        v.satisfy_exact(e);
    }
    for g in general {
        v.satisfy_general(move |pred: &[u8]| {
            g.call1(py, (pyo3::types::PyBytes::new(py, pred),))
                .and_then(|r| r.is_truthy(py))
                .unwrap_or(false)
        });
    }
    Ok(v.verify(&root, key, &discharges))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(macaroon_create, m)?)?;
    m.add_function(wrap_pyfunction!(macaroon_add_first_party_caveat, m)?)?;
    m.add_function(wrap_pyfunction!(macaroon_add_third_party_caveat, m)?)?;
    m.add_function(wrap_pyfunction!(macaroon_prepare_for_request, m)?)?;
    m.add_function(wrap_pyfunction!(macaroon_fields, m)?)?;
    m.add_function(wrap_pyfunction!(macaroon_verify, m)?)?;
    Ok(())
}
