//! Encodings both backends share: how a delivery body (and a large audit detail) is packed, times in
//! milliseconds, terminal states by name.

use nudge_model::TerminalState;

/// Body codecs (`deliveries.body_codec`).
pub(crate) const CODEC_RAW: i64 = 0;
pub(crate) const CODEC_LZ4: i64 = 1;

/// Compresses bytes for storage when that makes them smaller: delivery bodies and large audit details (JSON
/// typically shrinks 3–5×, which is that much less for the WAL, the checkpoint and the reads).
/// The LZ4 form is the body's length (u32, little endian) and then the LZ4 block. The hash table and the
/// output buffer are kept per thread, so a body costs one allocation (the stored bytes) and no zeroing.
pub(crate) fn encode_body(body: Vec<u8>) -> (i64, Vec<u8>) {
    use lz4_flex::block::{CompressTable, compress_into_with_table, get_maximum_output_size};
    thread_local! {
        static SCRATCH: std::cell::RefCell<(CompressTable, Vec<u8>)> =
            std::cell::RefCell::new((CompressTable::small(), Vec::new()));
    }
    let len = match u32::try_from(body.len()) {
        Ok(n) if n >= 256 => n,
        _ => return (CODEC_RAW, body),
    };
    SCRATCH.with_borrow_mut(|(table, out)| {
        let needed = 4 + get_maximum_output_size(body.len());
        if out.len() < needed {
            out.resize(needed, 0);
        }
        out[..4].copy_from_slice(&len.to_le_bytes());
        let packed = match compress_into_with_table(&body, &mut out[4..needed], table) {
            Ok(n) if 4 + n < body.len() => Some(out[..4 + n].to_vec()),
            _ => None,
        };
        // A rare huge body does not pin its buffer to the thread.
        if out.len() > 1 << 20 {
            *out = Vec::new();
        }
        match packed {
            Some(p) => (CODEC_LZ4, p),
            None => (CODEC_RAW, body),
        }
    })
}

/// The bytes `encode_body` packed, back as they were.
pub(crate) fn unpack(codec: i64, stored: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    match codec {
        CODEC_RAW => Ok(stored),
        CODEC_LZ4 => lz4_flex::decompress_size_prepended(&stored).map_err(|e| e.to_string()),
        other => Err(format!("unknown body codec {other}")),
    }
}

pub(crate) fn ms_to_ts(ms: i64) -> nudge_model::Timestamp {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn ts_to_ms(t: nudge_model::Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn terminal_from(state: &str, reason: Option<String>) -> TerminalState {
    let r = reason.unwrap_or_default();
    match state {
        "delivered" => TerminalState::Delivered,
        "rejected" => TerminalState::Rejected(r),
        "dead_lettered" => TerminalState::DeadLettered(r),
        "ignored" => TerminalState::Ignored(r),
        _ => TerminalState::Quarantined(r),
    }
}
