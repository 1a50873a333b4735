//! Canonical bencode output through bendy's encoder: keys sorted, integers without leading zeros.

use bendy::encoding::{Encoder, SingleItemEncoder, ToBencode};

use super::decode::MAX_DEPTH_LIMIT;
use super::value::Value;

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode bencode: {0}")]
pub struct EncodeError(String);

impl ToBencode for Value<'_> {
    const MAX_DEPTH: usize = MAX_DEPTH_LIMIT;

    fn encode(&self, encoder: SingleItemEncoder) -> Result<(), bendy::encoding::Error> {
        match self {
            Value::Int(n) => encoder.emit_int(*n),
            Value::Bytes(b) => encoder.emit_bytes(b),
            Value::List(items) => encoder.emit_list(|e| {
                for item in items {
                    e.emit(item)?;
                }
                Ok(())
            }),
            // `Dict` keeps its entries sorted, which is what bendy's checked dict encoder wants.
            Value::Dict(dict) => encoder.emit_dict(|mut e| {
                for (k, v) in dict.iter() {
                    e.emit_pair(k, v)?;
                }
                Ok(())
            }),
        }
    }
}

/// Encodes `value` canonically (BEP 3: dictionary keys sorted as raw byte strings).
///
/// Fails only for values nested deeper than [`super::DecodeLimits`] allows at most.
pub fn encode(value: &Value<'_>) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = Encoder::new().with_max_depth(MAX_DEPTH_LIMIT);
    encoder
        .emit(value)
        .map_err(|e| EncodeError(e.to_string()))?;
    encoder.get_output().map_err(|e| EncodeError(e.to_string()))
}
