//! Unit tests of values: defaults, ordering, coercion, encoding and hostile bytes, JSON.

use super::*;

#[test]
fn a_string_encodes_as_it_always_did() {
    // Variant 0, then the bytes as a sequence of u8 (length, then each byte): the layout
    // stored on disk and sent on the wire before strings were encoded whole.
    let v = Value::String(b"ab".to_vec());
    assert_eq!(postcard::to_allocvec(&v).unwrap(), vec![0, 2, b'a', b'b']);
    let old: Vec<u8> = postcard::to_allocvec(&(0u8, vec![b'a', b'b'])).unwrap();
    assert_eq!(postcard::from_bytes::<Value>(&old).unwrap(), v);
    assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"String":[97,98]}"#);
    assert_eq!(
        serde_json::from_str::<Value>(r#"{"String":[97,98]}"#).unwrap(),
        v
    );
}

#[test]
fn defaults_match_hyperdex() {
    assert_eq!(Datatype::String.default_value(), Value::string(""));
    assert_eq!(Datatype::Int.default_value(), Value::Int(0));
    assert_eq!(Datatype::Float.default_value(), Value::Float(0.0));
    assert_eq!(
        Datatype::Set(Primitive::String).default_value(),
        Value::Set(BTreeSet::new())
    );
    assert_eq!(
        Datatype::Document.default_value(),
        Value::Document(Document::empty())
    );
}

#[test]
fn floats_are_totally_ordered() {
    let mut v = [
        Value::Float(f64::NAN),
        Value::Float(1.0),
        Value::Float(-0.0),
        Value::Float(0.0),
        Value::Float(f64::NEG_INFINITY),
    ];
    v.sort();
    assert_eq!(v[0], Value::Float(f64::NEG_INFINITY));
    assert_eq!(v[1], Value::Float(-0.0));
    assert_eq!(v[2], Value::Float(0.0));
    assert_eq!(v[3], Value::Float(1.0));
    assert_eq!(v[4], Value::Float(f64::NAN));
}

#[test]
fn coercion_rounds_floats_for_ints_and_widens_ints_for_floats() {
    assert_eq!(coerce(Value::Float(2.5), Datatype::Int), Ok(Value::Int(3)));
    assert_eq!(
        coerce(Value::Int(4), Datatype::Float),
        Ok(Value::Float(4.0))
    );
    assert!(coerce(Value::Float(f64::NAN), Datatype::Int).is_err());
    assert!(coerce(Value::Float(1e30), Datatype::Int).is_err());
    assert_eq!(
        coerce(Value::Int(1), Datatype::String),
        Err("expected string, found int".to_string())
    );
}

#[test]
fn decode_rejects_garbage_without_panicking() {
    assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    assert!(decode(&[]).is_err());
}

/// The bytes of a list nested `depth` levels around an empty list.
fn nested_list_bytes(depth: usize) -> Vec<u8> {
    // Value::List is variant 5; a list of one element is its length 1.
    let mut bytes = [5u8, 1].repeat(depth);
    bytes.extend_from_slice(&[5, 0]);
    bytes
}

#[test]
fn documents_keep_their_numbers_exactly_through_the_wire() {
    // Found by fuzzing: without exact float parsing, 3.3333333333333e+50 came back as
    // 3.3333333333333002e+50 after one encode and decode.
    let d = Value::Document(
        Document::parse(b"[333333333333330000000000000000000000000000000000134587216, 0.1]")
            .unwrap(),
    );
    let bytes = postcard::to_allocvec(&d).unwrap();
    assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), d);
}

#[test]
fn deeply_nested_values_are_refused_not_a_stack_overflow() {
    let ok = decode(&nested_list_bytes(MAX_NESTING - 1)).expect("within the bound");
    assert_eq!(
        postcard::to_allocvec(&ok).unwrap(),
        nested_list_bytes(MAX_NESTING - 1)
    );
    for depth in [MAX_NESTING, 1000, 1_000_000] {
        let err = decode(&nested_list_bytes(depth)).expect_err("too deep");
        assert!(
            err.to_string().contains("nest") || matches!(err, postcard::Error::SerdeDeCustom),
            "{err}"
        );
    }
    // A failed decode leaves the depth counter as it found it.
    assert!(decode(&nested_list_bytes(MAX_NESTING - 1)).is_ok());
    // Encoding refuses what decoding would refuse.
    let mut deep = Value::List(vec![]);
    for _ in 0..MAX_NESTING {
        deep = Value::List(vec![deep]);
    }
    assert!(postcard::to_allocvec(&deep).is_err());
    assert!(postcard::to_allocvec(&Value::List(vec![Value::Int(1)])).is_ok());
}

#[test]
fn json_conversion_follows_the_attribute_type() {
    let j: serde_json::Value = serde_json::from_str(r#"["b", "a", "b"]"#).unwrap();
    let set = Value::from_json(&j, Datatype::Set(Primitive::String)).unwrap();
    assert_eq!(set.to_json().to_string(), r#"["a","b"]"#);
    let list = Value::from_json(&j, Datatype::List(Primitive::String)).unwrap();
    assert_eq!(list.to_json().to_string(), r#"["b","a","b"]"#);
    assert!(Value::from_json(&j, Datatype::Int).is_err());
}
