//! Frames of the host protocol (docs/protocol.md): encoding of command frames, strict decoding
//! of response frames, the command and status codes, and the typed errors the host reports.
//!
//! The RTL decoder (`dff_cmd`, [`crate::rtl::cmd`]) takes its command and status codes from
//! this file, so the two sides cannot disagree on a number.

use crc::{Crc, CRC_16_IBM_3740};

/// First byte of a command frame (host → device).
pub const CMD_SYNC: u8 = 0xA5;
/// First byte of a response frame (device → host).
pub const RSP_SYNC: u8 = 0x5A;
/// Bytes of a command frame around its payload: sync, code, length (2), CRC (2).
pub const CMD_OVERHEAD: usize = 6;
/// Bytes of a response frame around its payload: sync, code, status, length (2), CRC (2).
pub const RSP_OVERHEAD: usize = 7;
/// `dff_cmd`'s default `MAX_PAYLOAD` parameter (bytes).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024;
/// Bytes before the words of a WRITE payload: region, wbytes, addr (u32).
pub const WRITE_HEADER: usize = 6;
/// The magic at the start of a PING response.
pub const PING_MAGIC: &[u8; 4] = b"DFF1";
/// Response code echoed when a frame timed out before its header was complete.
pub const TRUNCATED_HEADER_CMD: u8 = 0xFF;
/// Bus region of the hyper-parameters (SET_HYPER writes it).
pub const REGION_HYPER: u8 = 0xF0;
/// Bus region of the counters (READ_COUNTERS reads it).
pub const REGION_COUNTERS: u8 = 0xF1;

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor-out); the catalogue
/// calls it CRC-16/IBM-3740. Check value over `"123456789"`: 0x29B1.
pub const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// CRC of the protocol over `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

/// Command codes (byte 1 of a command frame, echoed in byte 1 of its response).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    Ping = 0x00,
    Write = 0x01,
    Read = 0x02,
    SetHyper = 0x03,
    Train = 0x04,
    Infer = 0x05,
    ReadCounters = 0x06,
    Reset = 0x07,
}

impl Command {
    pub const ALL: [Command; 8] = [
        Command::Ping,
        Command::Write,
        Command::Read,
        Command::SetHyper,
        Command::Train,
        Command::Infer,
        Command::ReadCounters,
        Command::Reset,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The name used in docs/protocol.md (and in the RTL's localparams, prefixed `CMD_`).
    pub fn name(self) -> &'static str {
        match self {
            Command::Ping => "PING",
            Command::Write => "WRITE",
            Command::Read => "READ",
            Command::SetHyper => "SET_HYPER",
            Command::Train => "TRAIN",
            Command::Infer => "INFER",
            Command::ReadCounters => "READ_COUNTERS",
            Command::Reset => "RESET",
        }
    }
}

/// Name of a command code for messages: `WRITE`, or `0x2a` for codes that are no command.
pub fn cmd_name(code: u8) -> String {
    match Command::from_code(code) {
        Some(c) => c.name().to_string(),
        None => format!("command 0x{code:02x}"),
    }
}

/// Status byte of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    BadCrc,
    UnknownCmd,
    BadAddr,
    BadLen,
    Truncated,
    Engine,
    /// A status this host does not know (a newer device).
    Other(u8),
}

impl Status {
    /// The statuses the device sends, in code order.
    pub const KNOWN: [Status; 7] = [
        Status::Ok,
        Status::BadCrc,
        Status::UnknownCmd,
        Status::BadAddr,
        Status::BadLen,
        Status::Truncated,
        Status::Engine,
    ];

    pub fn from_code(code: u8) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::BadCrc,
            2 => Status::UnknownCmd,
            3 => Status::BadAddr,
            4 => Status::BadLen,
            5 => Status::Truncated,
            6 => Status::Engine,
            c => Status::Other(c),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::BadCrc => 1,
            Status::UnknownCmd => 2,
            Status::BadAddr => 3,
            Status::BadLen => 4,
            Status::Truncated => 5,
            Status::Engine => 6,
            Status::Other(c) => c,
        }
    }

    /// The name used in docs/protocol.md (and in the RTL's localparams, prefixed `ST_`).
    pub fn name(self) -> String {
        match self {
            Status::Ok => "OK".into(),
            Status::BadCrc => "BAD_CRC".into(),
            Status::UnknownCmd => "UNKNOWN_CMD".into(),
            Status::BadAddr => "BAD_ADDR".into(),
            Status::BadLen => "BAD_LEN".into(),
            Status::Truncated => "TRUNCATED".into(),
            Status::Engine => "ENGINE".into(),
            Status::Other(c) => format!("status {c}"),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Everything that can go wrong between a [`crate::host::Client`] call and its answer. Each
/// message says what happened and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    // ------------------------------------------------ refused before anything is sent
    #[error("a frame payload of {len} bytes does not fit the 16-bit length field (at most 65535); split the data over several frames")]
    PayloadTooLong { len: usize },
    #[error("wbytes {wbytes} is not a word size: use 1..=8 bytes per word")]
    BadWordBytes { wbytes: u8 },
    #[error("word {index} ({value}) does not fit in {wbytes} signed byte(s) ({min}..={max}); the device sign-extends, so it would arrive changed: use a wider wbytes")]
    ValueTooWide {
        index: usize,
        value: i64,
        wbytes: u8,
        min: i64,
        max: i64,
    },
    #[error("{what} of {count} words from address {addr} runs past the 32-bit address space; split it or start lower")]
    AddressOverflow {
        what: &'static str,
        addr: u32,
        count: usize,
    },
    #[error("max_payload {max_payload} is too small for {what}: the device's MAX_PAYLOAD parameter must be at least {need}; set Client::with_max_payload to the value the bitstream was built with")]
    MaxPayloadTooSmall {
        max_payload: usize,
        what: &'static str,
        need: usize,
    },

    // ------------------------------------------------ the response frame itself is broken
    #[error("empty response: the link returned no bytes (is the device powered and the link's port right?)")]
    EmptyResponse,
    #[error("response starts with 0x{got:02x}, not the sync byte 0x5a: the link is out of step or the baud rate is wrong; reset the device and reopen the link")]
    BadResponseSync { got: u8 },
    #[error("response frame is {got} bytes, shorter than its {need}-byte {part}: bytes were lost on the link; retry, or check the link's flow control")]
    ResponseTooShort {
        got: usize,
        need: usize,
        part: &'static str,
    },
    #[error("response frame has {extra} bytes after its CRC: the link returned more than one frame; it must return exactly one")]
    ResponseTrailing { extra: usize },
    #[error("response CRC is 0x{got:04x} but the frame's bytes give 0x{want:04x}: the response was corrupted on the way back; retry (a READ is safe to repeat; a WRITE may already have happened)")]
    ResponseCrc { got: u16, want: u16 },
    #[error("sent {sent} but the response is for {got}: an earlier response was left on the link; reset the device and reopen the link")]
    EchoMismatch { sent: String, got: String },
    #[error("{cmd} response has {got} payload bytes where {want} were expected: host and bitstream speak different protocol versions; regenerate the bitstream from this dfforge")]
    UnexpectedPayload {
        cmd: String,
        got: usize,
        want: String,
    },
    #[error("PING answered {got:02x?} instead of \"DFF1\" + ID: the device is not a dfforge engine (or speaks another protocol version)")]
    BadMagic { got: Vec<u8> },

    // ------------------------------------------------ the device refused the command
    #[error("device answered BAD_CRC to {cmd}: the command frame was corrupted on the way and the device did not act on it; check the link (baud rate, wiring) and resend")]
    BadCrc { cmd: String },
    #[error("device does not know {cmd}: host and bitstream speak different protocol versions; regenerate the bitstream from this dfforge")]
    UnknownCommand { cmd: String },
    #[error("the engine refused region 0x{region:02x} word address {addr} during {cmd} (the words before it were done): that address is outside the region — check the region map in docs/protocol.md against the engine's sizes")]
    BadAddr { cmd: String, region: u8, addr: u64 },
    #[error("device answered BAD_LEN to {cmd} with a {len}-byte payload: the length is wrong for the command, wbytes is outside 1..=8, or the frame (or a READ's answer) exceeds the device's MAX_PAYLOAD; use the Client methods, which split to max_payload, and set max_payload to the bitstream's MAX_PAYLOAD")]
    BadLen { cmd: String, len: usize },
    #[error("device answered TRUNCATED to {cmd}: it stopped receiving the frame mid-way for TIMEOUT cycles, so bytes were lost on the link; resend")]
    Truncated { cmd: String },
    #[error("the engine's {cmd} run ended with status {status} (result {result}): the engine reported a failure; see the engine's run status codes")]
    Engine { cmd: String, status: u8, result: u8 },
    #[error("device answered unknown status {status} to {cmd}: host and bitstream speak different protocol versions; regenerate the bitstream from this dfforge")]
    UnknownStatus { cmd: String, status: u8 },

    #[error(transparent)]
    Link(#[from] crate::host::link::LinkError),
}

/// A decoded response frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The command code echoed (0xFF for a TRUNCATED answer to a frame whose header was cut).
    pub cmd: u8,
    pub status: Status,
    pub payload: Vec<u8>,
}

/// A decoded command frame (what the device sees; used by tests and a software device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandFrame {
    pub cmd: u8,
    pub payload: Vec<u8>,
}

/// Encode a command frame: sync, code, length, payload, CRC over code..payload.
pub fn encode_command(cmd: u8, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let n = u16::try_from(payload.len())
        .map_err(|_| ProtocolError::PayloadTooLong { len: payload.len() })?;
    let mut f = Vec::with_capacity(payload.len() + CMD_OVERHEAD);
    f.push(CMD_SYNC);
    f.push(cmd);
    f.extend_from_slice(&n.to_le_bytes());
    f.extend_from_slice(payload);
    let crc = crc16(&f[1..]);
    f.extend_from_slice(&crc.to_le_bytes());
    Ok(f)
}

/// Encode a response frame (the device's side; used by tests and a software device).
pub fn encode_response(cmd: u8, status: Status, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let n = u16::try_from(payload.len())
        .map_err(|_| ProtocolError::PayloadTooLong { len: payload.len() })?;
    let mut f = Vec::with_capacity(payload.len() + RSP_OVERHEAD);
    f.push(RSP_SYNC);
    f.push(cmd);
    f.push(status.code());
    f.extend_from_slice(&n.to_le_bytes());
    f.extend_from_slice(payload);
    let crc = crc16(&f[1..]);
    f.extend_from_slice(&crc.to_le_bytes());
    Ok(f)
}

/// Shared strict frame decoder: `header` bytes after the sync, the length at `len_at`.
fn decode_frame(
    bytes: &[u8],
    sync: u8,
    header: usize,
    len_at: usize,
) -> Result<(usize, &[u8]), ProtocolError> {
    let Some(&first) = bytes.first() else {
        return Err(ProtocolError::EmptyResponse);
    };
    if first != sync {
        return Err(ProtocolError::BadResponseSync { got: first });
    }
    if bytes.len() < header {
        return Err(ProtocolError::ResponseTooShort {
            got: bytes.len(),
            need: header,
            part: "header",
        });
    }
    let n = usize::from(u16::from_le_bytes([bytes[len_at], bytes[len_at + 1]]));
    let total = header + n + 2;
    if bytes.len() < total {
        return Err(ProtocolError::ResponseTooShort {
            got: bytes.len(),
            need: total,
            part: "header, payload and CRC",
        });
    }
    if bytes.len() > total {
        return Err(ProtocolError::ResponseTrailing {
            extra: bytes.len() - total,
        });
    }
    let want = crc16(&bytes[1..header + n]);
    let got = u16::from_le_bytes([bytes[header + n], bytes[header + n + 1]]);
    if got != want {
        return Err(ProtocolError::ResponseCrc { got, want });
    }
    Ok((n, &bytes[header..header + n]))
}

/// Decode exactly one response frame (no bytes before or after it). Never panics.
pub fn decode_response(bytes: &[u8]) -> Result<Response, ProtocolError> {
    let (_, payload) = decode_frame(bytes, RSP_SYNC, 5, 3)?;
    Ok(Response {
        cmd: bytes[1],
        status: Status::from_code(bytes[2]),
        payload: payload.to_vec(),
    })
}

/// Decode exactly one command frame (no bytes before or after it). Never panics.
pub fn decode_command(bytes: &[u8]) -> Result<CommandFrame, ProtocolError> {
    let (_, payload) = decode_frame(bytes, CMD_SYNC, 4, 2)?;
    Ok(CommandFrame {
        cmd: bytes[1],
        payload: payload.to_vec(),
    })
}

/// The range of a `wbytes`-byte two's complement word.
pub fn word_range(wbytes: u8) -> (i64, i64) {
    if wbytes >= 8 {
        (i64::MIN, i64::MAX)
    } else {
        let bits = 8 * u32::from(wbytes);
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    }
}

/// Check `wbytes` is 1..=8.
pub fn check_wbytes(wbytes: u8) -> Result<(), ProtocolError> {
    if (1..=8).contains(&wbytes) {
        Ok(())
    } else {
        Err(ProtocolError::BadWordBytes { wbytes })
    }
}

/// WRITE payload: region, wbytes, addr, then each word's low `wbytes` bytes, little-endian.
/// Refuses values the device's sign extension would change.
pub fn write_payload(
    region: u8,
    wbytes: u8,
    addr: u32,
    words: &[i64],
) -> Result<Vec<u8>, ProtocolError> {
    check_wbytes(wbytes)?;
    let (min, max) = word_range(wbytes);
    let mut p = Vec::with_capacity(WRITE_HEADER + words.len() * usize::from(wbytes));
    p.push(region);
    p.push(wbytes);
    p.extend_from_slice(&addr.to_le_bytes());
    for (index, &value) in words.iter().enumerate() {
        if value < min || value > max {
            return Err(ProtocolError::ValueTooWide {
                index,
                value,
                wbytes,
                min,
                max,
            });
        }
        p.extend_from_slice(&value.to_le_bytes()[..usize::from(wbytes)]);
    }
    Ok(p)
}

/// READ payload: region, wbytes, addr, count.
pub fn read_payload(region: u8, wbytes: u8, addr: u32, count: u16) -> Vec<u8> {
    let mut p = vec![region, wbytes];
    p.extend_from_slice(&addr.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    p
}

/// Words of a READ response: each `wbytes` little-endian bytes, sign-extended to i64.
pub fn decode_words(bytes: &[u8], wbytes: u8) -> Vec<i64> {
    let wb = usize::from(wbytes.clamp(1, 8));
    bytes
        .chunks_exact(wb)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..wb].copy_from_slice(c);
            let v = i64::from_le_bytes(b);
            let sh = 64 - 8 * wb as u32;
            (v << sh) >> sh
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_is_ccitt_false_with_its_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn command_frame_layout() {
        let f = encode_command(Command::Read.code(), &read_payload(3, 2, 0x0102_0304, 5)).unwrap();
        assert_eq!(
            f[..12],
            [0xA5, 0x02, 8, 0, 3, 2, 0x04, 0x03, 0x02, 0x01, 5, 0]
        );
        let crc = crc16(&f[1..12]);
        assert_eq!(f[12..], crc.to_le_bytes());
        let d = decode_command(&f).unwrap();
        assert_eq!(d.cmd, 2);
        assert_eq!(d.payload, read_payload(3, 2, 0x0102_0304, 5));
    }

    #[test]
    fn response_round_trip_and_errors() {
        let f = encode_response(0x05, Status::Engine, &[43, 1]).unwrap();
        assert_eq!(f[..5], [0x5A, 0x05, 6, 2, 0]);
        let r = decode_response(&f).unwrap();
        assert_eq!(
            r,
            Response {
                cmd: 5,
                status: Status::Engine,
                payload: vec![43, 1]
            }
        );
        assert!(matches!(
            decode_response(&[]),
            Err(ProtocolError::EmptyResponse)
        ));
        assert!(matches!(
            decode_response(&[0xA5]),
            Err(ProtocolError::BadResponseSync { got: 0xA5 })
        ));
        assert!(matches!(
            decode_response(&f[..4]),
            Err(ProtocolError::ResponseTooShort { need: 5, .. })
        ));
        assert!(matches!(
            decode_response(&f[..f.len() - 1]),
            Err(ProtocolError::ResponseTooShort { need: 9, .. })
        ));
        let mut long = f.clone();
        long.push(0);
        assert!(matches!(
            decode_response(&long),
            Err(ProtocolError::ResponseTrailing { extra: 1 })
        ));
        let mut bad = f.clone();
        bad[5] ^= 0x10;
        let e = decode_response(&bad).unwrap_err();
        assert!(matches!(e, ProtocolError::ResponseCrc { .. }), "{e}");
        assert!(e.to_string().contains("corrupted"), "{e}");
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let f = encode_response(2, Status::Ok, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        for i in 0..f.len() * 8 {
            let mut g = f.clone();
            g[i / 8] ^= 1 << (i % 8);
            assert!(decode_response(&g).is_err(), "flip of bit {i} accepted");
        }
    }

    #[test]
    fn words_sign_extend_and_ranges_refuse() {
        let p = write_payload(1, 2, 7, &[-5, 300, -32768]).unwrap();
        assert_eq!(p[..6], [1, 2, 7, 0, 0, 0]);
        assert_eq!(decode_words(&p[6..], 2), vec![-5, 300, -32768]);
        assert_eq!(decode_words(&[0xff; 8], 8), vec![-1]);
        assert_eq!(decode_words(&[0x80, 0x7f], 1), vec![-128, 127]);
        let e = write_payload(0, 1, 0, &[1, 128]).unwrap_err();
        assert!(
            matches!(
                e,
                ProtocolError::ValueTooWide {
                    index: 1,
                    value: 128,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("use a wider wbytes"), "{e}");
        assert!(matches!(
            write_payload(0, 9, 0, &[]),
            Err(ProtocolError::BadWordBytes { wbytes: 9 })
        ));
        assert!(write_payload(0, 8, 0, &[i64::MIN, i64::MAX]).is_ok());
        assert!(matches!(
            encode_command(1, &vec![0; 65536]),
            Err(ProtocolError::PayloadTooLong { len: 65536 })
        ));
    }

    #[test]
    fn codes_round_trip() {
        for c in Command::ALL {
            assert_eq!(Command::from_code(c.code()), Some(c));
        }
        assert_eq!(Command::from_code(8), None);
        assert_eq!(cmd_name(0x2a), "command 0x2a");
        for s in Status::KNOWN {
            assert_eq!(Status::from_code(s.code()), s);
        }
        assert_eq!(Status::from_code(9), Status::Other(9));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_response(&bytes);
            let _ = decode_command(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_framed_garbage(
            cmd in any::<u8>(), status in any::<u8>(),
            len in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Plausible headers with arbitrary lengths reach the length and CRC paths.
            let mut f = vec![RSP_SYNC, cmd, status];
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&body);
            let _ = decode_response(&f);
            f[0] = CMD_SYNC;
            let _ = decode_command(&f[..f.len().min(4 + body.len())]);
        }

        #[test]
        fn responses_round_trip(cmd in any::<u8>(), status in any::<u8>(),
                                payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let f = encode_response(cmd, Status::from_code(status), &payload).unwrap();
            let r = decode_response(&f).unwrap();
            prop_assert_eq!(r.cmd, cmd);
            prop_assert_eq!(r.status.code(), status);
            prop_assert_eq!(r.payload, payload);
        }

        #[test]
        fn words_round_trip(wbytes in 1u8..=8, raw in proptest::collection::vec(any::<i64>(), 0..20)) {
            let (min, max) = word_range(wbytes);
            let words: Vec<i64> = raw.iter().map(|v| v.clamp(&min, &max).to_owned()).collect();
            let p = write_payload(0, wbytes, 0, &words).unwrap();
            prop_assert_eq!(decode_words(&p[WRITE_HEADER..], wbytes), words);
        }
    }
}
