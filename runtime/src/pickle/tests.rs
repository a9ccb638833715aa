//! Pickles written by CPython 3.11 (`pickle.dumps`, the protocol named in each test) and crafted bad ones.

use super::{load, PickleError, Value};

const ORDERED_DICT: (&str, &str) = ("collections", "OrderedDict");
const CODECS: (&str, &str) = ("_codecs", "encode");

/// `d = OrderedDict(a=1, b=[1.5, 'x', b'\0\1'], c=(None, True, False, -3, 2**40, -2**63));
/// d._metadata = {'': {'version': 1}}`, protocol 2.
const ORDERED_DICT_P2: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aq\x02K\x01X\x01\x00\x00\x00bq\x03]q\x04(G?\xf8\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x05c_codecs\nencode\nq\x06X\x02\x00\x00\x00\x00\x01q\x07X\x06\x00\x00\x00latin1q\x08\x86q\tRq\neX\x01\x00\x00\x00cq\x0b(N\x88\x89J\xfd\xff\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80tq\x0cu}q\rX\t\x00\x00\x00_metadataq\x0e}q\x0fX\x00\x00\x00\x00q\x10}q\x11X\x07\x00\x00\x00versionq\x12K\x01sssb.";

/// `{'k': {1, 2}, 'f': frozenset([3])}`, protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, sets).
const SETS_P4: &[u8] =
    b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94\x8f\x94(K\x01K\x02\x90\x8c\x01f\x94(K\x03\x91\x94u.";

/// `x = [1]; {'s': x, 't': x}`, protocol 2: the second value is a memo reference.
const SHARED_P2: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00sq\x01]q\x02K\x01aX\x01\x00\x00\x00tq\x03h\x02u.";

fn s(x: &str) -> Value {
    Value::Str(x.to_string())
}

#[test]
fn ordered_dict_with_metadata_reads_as_build_of_reduce() {
    let v = load(ORDERED_DICT_P2, &[ORDERED_DICT, CODECS]).expect("valid pickle");
    let Value::Build { obj, state } = &v else { panic!("expected a Build, found {v:?}") };
    let (module, name, args) = obj.as_reduce().expect("reduce");
    assert_eq!((module, name), ORDERED_DICT);
    assert_eq!(args, &Value::Tuple(vec![]));
    assert_eq!(obj.get("a"), Some(&Value::Int(1)));
    let b = obj.get("b").and_then(Value::as_list).expect("list b");
    assert_eq!(b[0], Value::Float(1.5));
    assert_eq!(b[1], s("x"));
    assert_eq!(b[2].bytes_like().as_deref(), Some(&[0u8, 1][..]));
    let c = obj.get("c").and_then(Value::as_tuple).expect("tuple c");
    assert_eq!(c, &[Value::None, Value::Bool(true), Value::Bool(false), Value::Int(-3), Value::Int(1 << 40), Value::Int(i64::MIN)]);
    let version = state.get("_metadata").and_then(|m| m.get("")).and_then(|m| m.get("version"));
    assert_eq!(version, Some(&Value::Int(1)));
}

#[test]
fn protocol_four_frames_memoize_and_sets_are_read() {
    let v = load(SETS_P4, &[]).expect("valid pickle");
    assert_eq!(v.get("k"), Some(&Value::Set(vec![Value::Int(1), Value::Int(2)])));
    assert_eq!(v.get("f"), Some(&Value::FrozenSet(vec![Value::Int(3)])));
}

#[test]
fn memo_references_see_later_mutation() {
    let v = load(SHARED_P2, &[]).expect("valid pickle");
    assert_eq!(v.get("s"), Some(&Value::List(vec![Value::Int(1)])));
    assert_eq!(v.get("t"), v.get("s"));
}

#[test]
fn global_outside_the_allowlist_is_named_in_the_error() {
    let err = load(ORDERED_DICT_P2, &[ORDERED_DICT]).expect_err("codecs not allowed");
    assert!(matches!(&err, PickleError::GlobalNotAllowed { module, name, .. } if module == "_codecs" && name == "encode"));
    assert!(err.to_string().contains("`_codecs.encode`"), "{err}");
}

#[test]
fn stack_global_is_checked_against_the_allowlist() {
    let p = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
    let err = load(p, &[]).expect_err("os.system refused");
    assert!(err.to_string().contains("`os.system`"), "{err}");
    let ok = load(p, &[("os", "system")]).expect("allowed");
    assert_eq!(ok, Value::Global { module: "os".into(), name: "system".into() });
}

#[test]
fn persistent_ids_are_returned_unevaluated() {
    // BINPERSID over ('storage', 'k0'), then STOP.
    let p = b"\x80\x02X\x07\x00\x00\x00storageX\x02\x00\x00\x00k0\x86Q.";
    let v = load(p, &[]).expect("valid");
    assert_eq!(v, Value::PersistentId(Box::new(Value::Tuple(vec![s("storage"), s("k0")]))));
}

#[test]
fn every_truncation_of_a_valid_pickle_is_an_error() {
    for n in 0..ORDERED_DICT_P2.len() {
        assert!(load(&ORDERED_DICT_P2[..n], &[ORDERED_DICT, CODECS]).is_err(), "prefix of {n} bytes accepted");
    }
}

#[test]
fn unknown_opcode_is_refused_with_its_offset() {
    let err = load(b"\x80\x02\xff.", &[]).expect_err("0xff is no opcode");
    assert_eq!(err, PickleError::UnknownOpcode { offset: 2, opcode: 0xff });
}

#[test]
fn huge_declared_lengths_fail_without_allocating() {
    for p in [&b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"[..], b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff", b"X\xff\xff\xff\xff"] {
        assert!(matches!(load(p, &[]), Err(PickleError::Truncated { .. })), "{p:?}");
    }
}

#[test]
fn integers_wider_than_64_bits_are_refused() {
    let err = load(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", &[]).expect_err("9-byte int");
    assert!(err.to_string().contains("64 bits"), "{err}");
}

#[test]
fn exponential_sharing_hits_the_object_budget() {
    // l0 = [None]; l(i+1) = [l(i), l(i)] 40 times: 2^40 nodes as a tree.
    let mut p = b"\x80\x02]Na".to_vec();
    p.extend_from_slice(b"q\x00");
    for i in 0..40u8 {
        p.extend_from_slice(&[b']', b'(', b'h', i, b'h', i, b'e', b'q', i + 1]);
    }
    p.push(b'.');
    assert!(matches!(load(&p, &[]), Err(PickleError::TooLarge { what: "object count", .. })));
}

#[test]
fn self_containing_list_hits_the_depth_limit() {
    // l = []; l.append(l)
    let p = b"]q\x00h\x00a.";
    assert!(matches!(load(p, &[]), Err(PickleError::TooLarge { what: "nesting depth", .. })));
}

#[test]
fn stack_underflow_and_missing_mark_are_errors() {
    for p in [&b"a."[..], b"u.", b"t.", b"0.", b"b.", b"R.", b"(0.", b"h\x05.", b"."] {
        assert!(load(p, &[]).is_err(), "{p:?} accepted");
    }
}

#[test]
fn input_without_stop_is_an_error() {
    assert_eq!(load(b"\x80\x02N", &[]), Err(PickleError::NoStop));
}
