//! Tests of the bencode decoder and encoder: accepted forms, refusals with offsets, round trips.

use proptest::prelude::*;

use super::*;

fn ok(input: &[u8]) -> Decoded<'_> {
    decode(input, DecodeLimits::default()).expect("input is valid")
}

fn err(input: &[u8]) -> DecodeError {
    decode(input, DecodeLimits::default()).expect_err("input is invalid")
}

#[test]
fn decodes_every_kind_of_value() {
    // Proves each BEP 3 form decodes to the value it denotes.
    let d = ok(b"d4:listli1ei-2e0:e3:numi42e4:spam4:eggse");
    let dict = d.value.as_dict().unwrap();
    assert_eq!(dict.get(b"num").and_then(Value::as_int), Some(42));
    assert_eq!(dict.get(b"spam").and_then(Value::as_str), Some("eggs"));
    let list = dict.get(b"list").and_then(Value::as_list).unwrap();
    assert_eq!(list, &[Value::Int(1), Value::Int(-2), Value::bytes(b"")]);
    assert!(d.warnings.is_empty());
}

#[test]
fn extreme_integers_decode() {
    // Proves the full i64 range is accepted, including i64::MIN.
    assert_eq!(ok(b"i9223372036854775807e").value, Value::Int(i64::MAX));
    assert_eq!(ok(b"i-9223372036854775808e").value, Value::Int(i64::MIN));
}

#[test]
fn unsorted_keys_are_accepted_with_a_warning() {
    // Proves the libtorrent-compatible leniency for unsorted dictionaries, with the offset of the
    // first out-of-order key.
    let d = ok(b"d1:bi1e1:ai2ee");
    assert_eq!(d.value.as_dict().unwrap().len(), 2);
    assert_eq!(
        d.warnings,
        vec![Warning {
            kind: WarningKind::UnsortedKeys,
            offset: 7,
            count: 1
        }]
    );
}

#[test]
fn leading_zeros_are_accepted_with_a_warning() {
    // Proves `i03e` and `03:abc` decode to 3 and "abc" and are reported.
    let d = ok(b"li03e03:abce");
    assert_eq!(
        d.value,
        Value::List(vec![Value::Int(3), Value::bytes(b"abc")])
    );
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].kind, WarningKind::LeadingZero);
    assert_eq!(d.warnings[0].count, 2);
    assert_eq!(d.warnings[0].offset, 2);
}

#[test]
fn trailing_bytes_are_ignored_with_a_warning() {
    // Proves bytes after the root value do not fail the decode but are reported where they start.
    let d = ok(b"de\n\n");
    assert_eq!(d.warnings[0].kind, WarningKind::TrailingBytes);
    assert_eq!(d.warnings[0].offset, 2);
}

#[test]
fn decode_prefix_reports_the_span() {
    // Proves decode_prefix stops after the first value (BEP 9 data follows the dictionary).
    let (d, end) = decode_prefix(b"d1:ai1eeRAW", DecodeLimits::default()).unwrap();
    assert_eq!(end, 8);
    assert!(d.warnings.is_empty());
}

#[test]
fn dict_remembers_its_exact_bytes() {
    // Proves nested dictionaries keep their raw span, unsorted keys and all, for info hashing.
    let input = b"d4:infod1:zi1e1:ai2ee3:xyzi0ee";
    let d = ok(input);
    let info = d
        .value
        .as_dict()
        .unwrap()
        .get(b"info")
        .unwrap()
        .as_dict()
        .unwrap();
    assert_eq!(info.raw(), Some(&b"d1:zi1e1:ai2ee"[..]));
}

#[test]
fn refusals_name_the_problem_and_offset() {
    // Proves each ambiguous or broken form is refused with the right kind and byte offset.
    let cases: &[(&[u8], usize, DecodeErrorKind)] = &[
        (b"", 0, DecodeErrorKind::Empty),
        (
            b"d1:ai1e1:ai2ee",
            7,
            DecodeErrorKind::DuplicateKey("a".into()),
        ),
        (
            b"d1:bi1e1:ai2e1:bi3ee",
            13,
            DecodeErrorKind::DuplicateKey("b".into()),
        ),
        (b"i-0e", 0, DecodeErrorKind::NegativeZero),
        (b"ie", 1, DecodeErrorKind::EmptyInteger),
        (b"i-e", 2, DecodeErrorKind::EmptyInteger),
        (
            b"i9223372036854775808e",
            0,
            DecodeErrorKind::IntegerOverflow,
        ),
        (
            b"i99999999999999999999e",
            1,
            DecodeErrorKind::IntegerOverflow,
        ),
        (b"i12", 3, DecodeErrorKind::Truncated("an integer")),
        (b"l", 1, DecodeErrorKind::Truncated("a list")),
        (b"d1:a", 4, DecodeErrorKind::Truncated("a value")),
        (b"d1:ai1e", 7, DecodeErrorKind::Truncated("a dictionary")),
        (
            b"5:abc",
            0,
            DecodeErrorKind::LengthPastEnd {
                len: 5,
                available: 3,
            },
        ),
        (
            b"99999999999999999999:",
            0,
            DecodeErrorKind::IntegerOverflow,
        ),
        (b"di1ei2ee", 1, DecodeErrorKind::NonStringKey),
        (
            b"i1xe",
            2,
            DecodeErrorKind::UnexpectedByte {
                byte: b'x',
                expected: "a digit or `e`",
            },
        ),
        (
            b"x",
            0,
            DecodeErrorKind::UnexpectedByte {
                byte: b'x',
                expected: "`i`, `l`, `d` or a digit",
            },
        ),
    ];
    for (input, offset, kind) in cases {
        let e = err(input);
        assert_eq!(
            (&e.kind, e.offset),
            (kind, *offset),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn depth_and_token_limits_hold() {
    // Proves nesting and value counts beyond the limits are refused, and at the limit accepted.
    let limits = DecodeLimits {
        max_depth: 3,
        max_tokens: 10,
    };
    assert!(decode(b"llleee", limits).is_ok());
    assert_eq!(
        decode(b"lllleeee", limits).unwrap_err().kind,
        DecodeErrorKind::TooDeep(3)
    );
    assert!(decode(b"li1ei2ei3ei4ei5ei6ei7ei8ei9ee", limits).is_ok());
    assert_eq!(
        decode(b"li1ei2ei3ei4ei5ei6ei7ei8ei9ei10ee", limits)
            .unwrap_err()
            .kind,
        DecodeErrorKind::TooManyTokens(10)
    );
    // The default depth bound stops a deep bomb without exhausting the stack.
    let bomb = vec![b'l'; 100_000];
    assert_eq!(err(&bomb).kind, DecodeErrorKind::TooDeep(100));
}

#[test]
fn encoding_is_canonical() {
    // Proves we write sorted keys whatever order we read, and integers plainly.
    let d = ok(b"d1:bi03e1:ali-1e0:ee");
    assert_eq!(encode(&d.value).unwrap(), b"d1:ali-1e0:e1:bi3ee");
    let mut built = Dict::new();
    built.insert(&b"zz"[..], Value::string("last"));
    built.insert(&b"a"[..], Value::Int(0));
    assert_eq!(encode(&Value::Dict(built)).unwrap(), b"d1:ai0e2:zz4:laste");
}

fn arb_value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::owned_bytes),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6),
                inner,
                0..6
            )
            .prop_map(|m| {
                let mut d = Dict::new();
                for (k, v) in m {
                    d.insert(k, v);
                }
                Value::Dict(d)
            }),
        ]
    })
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&input, DecodeLimits::default());
    }

    #[test]
    fn decoding_mutated_bencode_never_panics(v in arb_value(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode(&v).unwrap();
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = decode(&bytes, DecodeLimits::default());
    }

    #[test]
    fn encode_then_decode_is_identity(v in arb_value()) {
        let bytes = encode(&v).unwrap();
        let back = decode(&bytes, DecodeLimits::default()).unwrap();
        prop_assert!(back.warnings.is_empty(), "canonical output raised warnings: {:?}", back.warnings);
        prop_assert_eq!(&back.value, &v);
        // And canonical output is a fixed point.
        prop_assert_eq!(encode(&back.value).unwrap(), bytes);
    }
}
