//! Depth-limited helpers around bendy's dynamic `Value`: bendy's `Value` declares an
//! unknown depth, so its `from_bencode`/`to_bencode` refuse anything nested; these
//! set an explicit limit that still stops hostile deeply-nested input.

use bendy::decoding::{Decoder, Error as DecodeError, FromBencode};
use bendy::encoding::Encoder;
use bendy::value::Value;

pub const MAX_DEPTH: usize = 32;

/// Decodes one value (owned); trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Value<'static>, DecodeError> {
    let mut d = Decoder::new(bytes).with_max_depth(MAX_DEPTH);
    let obj = d
        .next_object()?
        .ok_or_else(|| DecodeError::missing_field("value"))?;
    let v = Value::decode_bencode_object(obj)?.into_owned();
    if d.next_object()?.is_some() {
        return Err(DecodeError::unexpected_field("trailing data"));
    }
    Ok(v)
}

pub fn encode(v: &Value) -> Vec<u8> {
    let mut e = Encoder::new().with_max_depth(MAX_DEPTH);
    e.emit(v)
        .expect("values we build are shallower than MAX_DEPTH");
    e.get_output().expect("complete value")
}
