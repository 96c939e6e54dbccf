//! Typed host commands over any [`Link`]: one method per command of docs/protocol.md, with
//! long writes and reads split into frames that fit the device's `MAX_PAYLOAD`.

use super::link::Link;
use super::protocol::*;

/// A host talking to one device through `L`.
pub struct Client<L: Link> {
    link: L,
    max_payload: usize,
}

impl<L: Link> Client<L> {
    /// A client for a device built with the default `MAX_PAYLOAD` (1024 bytes).
    pub fn new(link: L) -> Self {
        Client {
            link,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }

    /// Use the `MAX_PAYLOAD` the device was built with (frames are split to fit it).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload;
        self
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn link(&self) -> &L {
        &self.link
    }

    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    pub fn into_link(self) -> L {
        self.link
    }

    /// Send raw bytes (need not be a valid frame) and return the raw response frame.
    pub fn transact(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        Ok(self.link.transact(bytes)?)
    }

    /// Send one command, decode its response and check the echo. Device statuses other than
    /// OK are returned as they are (the typed methods turn them into [`ProtocolError`]s).
    pub fn exchange(&mut self, cmd: u8, payload: &[u8]) -> Result<Response, ProtocolError> {
        let frame = encode_command(cmd, payload)?;
        self.exchange_frame(cmd, &frame)
    }

    /// Send a ready-made (possibly deliberately broken) frame for command `cmd`, decode the
    /// response and check its echo.
    pub fn exchange_frame(&mut self, cmd: u8, frame: &[u8]) -> Result<Response, ProtocolError> {
        let raw = self.link.transact(frame)?;
        let r = decode_response(&raw)?;
        // The echo is what the device received: a BAD_CRC answer may echo a corrupted code,
        // and a frame whose header was cut off is answered with 0xFF.
        let echo_ok = r.cmd == cmd
            || r.status == Status::BadCrc
            || (r.status == Status::Truncated && r.cmd == TRUNCATED_HEADER_CMD);
        if !echo_ok {
            return Err(ProtocolError::EchoMismatch {
                sent: cmd_name(cmd),
                got: cmd_name(r.cmd),
            });
        }
        Ok(r)
    }

    /// Like [`Client::exchange_frame`], with every status but OK turned into its typed
    /// error; returns the OK response's payload. For tests of the device's error paths.
    pub fn send_frame(&mut self, cmd: u8, frame: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let r = self.exchange_frame(cmd, frame)?;
        let payload = frame.get(4..frame.len().saturating_sub(2)).unwrap_or(&[]);
        status_to_result(r, payload)
    }

    /// Encode, send, and map the status.
    fn command(&mut self, cmd: Command, payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let r = self.exchange(cmd.code(), payload)?;
        status_to_result(r, payload)
    }

    fn expect_len(cmd: Command, p: &[u8], want: usize) -> Result<(), ProtocolError> {
        if p.len() == want {
            Ok(())
        } else {
            Err(ProtocolError::UnexpectedPayload {
                cmd: cmd.name().into(),
                got: p.len(),
                want: want.to_string(),
            })
        }
    }

    /// PING: checks the magic and returns the device's `ID` (the config hash prefix).
    pub fn ping(&mut self) -> Result<u64, ProtocolError> {
        let p = self.command(Command::Ping, &[])?;
        if p.len() != 12 || &p[..4] != PING_MAGIC {
            return Err(ProtocolError::BadMagic { got: p });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&p[4..]);
        Ok(u64::from_le_bytes(id))
    }

    /// Write `words` to `region` from word address `addr` upwards, `wbytes` bytes each
    /// (the device sign-extends them to 64 bits). Split into frames of at most `max_payload`.
    /// On BAD_ADDR, the words before the refused one have been written.
    pub fn write(
        &mut self,
        region: u8,
        wbytes: u8,
        addr: u32,
        words: &[i64],
    ) -> Result<(), ProtocolError> {
        check_wbytes(wbytes)?;
        let wb = usize::from(wbytes);
        let per_frame = self.max_payload.saturating_sub(WRITE_HEADER) / wb;
        if per_frame == 0 {
            return Err(ProtocolError::MaxPayloadTooSmall {
                max_payload: self.max_payload,
                what: "one WRITE word",
                need: WRITE_HEADER + wb,
            });
        }
        check_span("WRITE", addr, words.len())?;
        // Check every value before the first frame goes out: no half-done writes for a
        // value the host could have refused up front.
        write_payload(region, wbytes, addr, words)?;
        for (k, chunk) in words.chunks(per_frame).enumerate() {
            let a = addr + (k * per_frame) as u32;
            let p = write_payload(region, wbytes, a, chunk)?;
            let r = self.command(Command::Write, &p)?;
            Self::expect_len(Command::Write, &r, 0)?;
        }
        Ok(())
    }

    /// Read `count` words of `wbytes` bytes from `region` at `addr` upwards, sign-extended.
    pub fn read(
        &mut self,
        region: u8,
        wbytes: u8,
        addr: u32,
        count: usize,
    ) -> Result<Vec<i64>, ProtocolError> {
        check_wbytes(wbytes)?;
        let wb = usize::from(wbytes);
        let per_frame = (self.max_payload / wb).min(usize::from(u16::MAX));
        if per_frame == 0 {
            return Err(ProtocolError::MaxPayloadTooSmall {
                max_payload: self.max_payload,
                what: "one READ word",
                need: wb,
            });
        }
        check_span("READ", addr, count)?;
        let mut out = Vec::with_capacity(count);
        let mut done = 0;
        while done < count {
            let n = (count - done).min(per_frame);
            let a = addr + done as u32;
            let p = read_payload(region, wbytes, a, n as u16);
            let r = self.command(Command::Read, &p)?;
            Self::expect_len(Command::Read, &r, n * wb)?;
            out.extend(decode_words(&r, wbytes));
            done += n;
        }
        Ok(out)
    }

    /// SET_HYPER: write `value` to hyper-parameter `id` (bus region 0xF0, address `id`).
    pub fn set_hyper(&mut self, id: u8, value: i64) -> Result<(), ProtocolError> {
        let mut p = vec![id];
        p.extend_from_slice(&value.to_le_bytes());
        let r = self.command(Command::SetHyper, &p)?;
        Self::expect_len(Command::SetHyper, &r, 0)
    }

    /// TRAIN: one training step; returns the engine's result byte.
    pub fn train(&mut self) -> Result<u8, ProtocolError> {
        self.run(Command::Train)
    }

    /// INFER: one inference; returns the predicted class.
    pub fn infer(&mut self) -> Result<u8, ProtocolError> {
        self.run(Command::Infer)
    }

    fn run(&mut self, cmd: Command) -> Result<u8, ProtocolError> {
        let r = self.command(cmd, &[])?;
        Self::expect_len(cmd, &r, 1)?;
        Ok(r[0])
    }

    /// READ_COUNTERS: the device's `NCOUNTERS` 64-bit counters.
    pub fn read_counters(&mut self) -> Result<Vec<u64>, ProtocolError> {
        let r = self.command(Command::ReadCounters, &[])?;
        if r.len() % 8 != 0 {
            return Err(ProtocolError::UnexpectedPayload {
                cmd: Command::ReadCounters.name().into(),
                got: r.len(),
                want: "a multiple of 8".into(),
            });
        }
        Ok(r.chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect())
    }

    /// RESET: pulse the engine's soft reset.
    pub fn reset(&mut self) -> Result<(), ProtocolError> {
        let r = self.command(Command::Reset, &[])?;
        Self::expect_len(Command::Reset, &r, 0)
    }
}

/// (region, first word address) a command's payload addresses, for BAD_ADDR messages.
fn target(cmd: u8, p: &[u8]) -> (u8, u32) {
    match (Command::from_code(cmd), p) {
        (Some(Command::Write | Command::Read), [region, _, a0, a1, a2, a3, ..]) => {
            (*region, u32::from_le_bytes([*a0, *a1, *a2, *a3]))
        }
        (Some(Command::SetHyper), [id, ..]) => (REGION_HYPER, u32::from(*id)),
        (Some(Command::ReadCounters), _) => (REGION_COUNTERS, 0),
        _ => (0, 0),
    }
}

/// A response's status as a typed result (OK: its payload); `sent` is the command's payload.
fn status_to_result(r: Response, sent: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let name = cmd_name(r.cmd);
    match r.status {
        Status::Ok => Ok(r.payload),
        Status::BadCrc => Err(ProtocolError::BadCrc { cmd: name }),
        Status::UnknownCmd => Err(ProtocolError::UnknownCommand { cmd: name }),
        Status::BadLen => Err(ProtocolError::BadLen {
            cmd: name,
            len: sent.len(),
        }),
        Status::Truncated => Err(ProtocolError::Truncated { cmd: name }),
        Status::BadAddr => match r.payload[..] {
            [lo, hi] => {
                let index = u16::from_le_bytes([lo, hi]);
                let (region, addr) = target(r.cmd, sent);
                Err(ProtocolError::BadAddr {
                    cmd: name,
                    region,
                    addr: u64::from(addr) + u64::from(index),
                })
            }
            _ => Err(ProtocolError::UnexpectedPayload {
                cmd: format!("{name} (BAD_ADDR)"),
                got: r.payload.len(),
                want: "2".into(),
            }),
        },
        Status::Engine => match r.payload[..] {
            [result, status] => Err(ProtocolError::Engine {
                cmd: name,
                status,
                result,
            }),
            _ => Err(ProtocolError::UnexpectedPayload {
                cmd: format!("{name} (ENGINE)"),
                got: r.payload.len(),
                want: "2".into(),
            }),
        },
        Status::Other(status) => Err(ProtocolError::UnknownStatus { cmd: name, status }),
    }
}

fn check_span(what: &'static str, addr: u32, count: usize) -> Result<(), ProtocolError> {
    if u64::from(addr) + count as u64 > 1u64 << 32 {
        Err(ProtocolError::AddressOverflow { what, addr, count })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::link::LinkError;
    use std::collections::HashMap;

    /// A software device: the protocol of docs/protocol.md over a word map, for testing the
    /// client's splitting and error mapping without Verilator.
    struct Soft {
        mem: HashMap<(u8, u32), i64>,
        max_payload: usize,
        frames: usize,
        limit: u32,
    }

    impl Soft {
        fn new() -> Self {
            Soft {
                mem: HashMap::new(),
                max_payload: 64,
                frames: 0,
                limit: 100,
            }
        }
        fn answer(&mut self, f: &CommandFrame) -> (Status, Vec<u8>) {
            let p = &f.payload;
            match Command::from_code(f.cmd) {
                Some(Command::Write) => {
                    let (region, wb) = (p[0], p[1]);
                    let addr = u32::from_le_bytes([p[2], p[3], p[4], p[5]]);
                    for (i, w) in decode_words(&p[6..], wb).into_iter().enumerate() {
                        if addr + i as u32 >= self.limit {
                            return (Status::BadAddr, (i as u16).to_le_bytes().to_vec());
                        }
                        self.mem.insert((region, addr + i as u32), w);
                    }
                    (Status::Ok, vec![])
                }
                Some(Command::Read) => {
                    let (region, wb) = (p[0], p[1]);
                    let addr = u32::from_le_bytes([p[2], p[3], p[4], p[5]]);
                    let n = u16::from_le_bytes([p[6], p[7]]) as u32;
                    if n as usize * wb as usize > self.max_payload {
                        return (Status::BadLen, vec![]);
                    }
                    let mut out = vec![];
                    for i in 0..n {
                        let v = self.mem.get(&(region, addr + i)).copied().unwrap_or(0);
                        out.extend_from_slice(&v.to_le_bytes()[..wb as usize]);
                    }
                    (Status::Ok, out)
                }
                Some(Command::Train) => (Status::Engine, vec![43, 1]),
                Some(Command::Infer) => (Status::Ok, vec![42]),
                _ => (Status::UnknownCmd, vec![]),
            }
        }
    }

    impl Link for Soft {
        fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
            self.frames += 1;
            let f = decode_command(frame).map_err(|e| LinkError::Harness(e.to_string()))?;
            assert!(f.payload.len() <= self.max_payload, "frame too long");
            let (s, p) = self.answer(&f);
            Ok(encode_response(f.cmd, s, &p).unwrap())
        }
    }

    #[test]
    fn writes_and_reads_split_into_frames_that_fit() {
        let mut c = Client::new(Soft::new()).with_max_payload(64);
        let words: Vec<i64> = (0..50).map(|i| i * 1000 - 20000).collect();
        c.write(2, 3, 10, &words).unwrap();
        // (64 - 6) / 3 = 19 words per frame: 3 frames.
        assert_eq!(c.link().frames, 3);
        assert_eq!(c.read(2, 3, 10, 50).unwrap(), words);
        // 64 / 3 = 21 words per read frame: 3 more.
        assert_eq!(c.link().frames, 6);
    }

    #[test]
    fn errors_are_typed_and_name_the_address() {
        let mut c = Client::new(Soft::new()).with_max_payload(64);
        let e = c.write(0, 8, 95, &[1; 10]).unwrap_err();
        match &e {
            ProtocolError::BadAddr {
                region: 0,
                addr: 100,
                ..
            } => {}
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("address 100"), "{e}");
        let e = c.train().unwrap_err();
        assert!(matches!(
            e,
            ProtocolError::Engine {
                status: 1,
                result: 43,
                ..
            }
        ));
        assert_eq!(c.infer().unwrap(), 42);
        assert!(matches!(
            c.write(0, 1, 0, &[200]),
            Err(ProtocolError::ValueTooWide { .. })
        ));
        assert!(matches!(
            c.read(0, 8, u32::MAX, 2),
            Err(ProtocolError::AddressOverflow { .. })
        ));
        let mut tiny = Client::new(Soft::new()).with_max_payload(8);
        assert!(matches!(
            tiny.write(0, 4, 0, &[1]),
            Err(ProtocolError::MaxPayloadTooSmall { need: 10, .. })
        ));
    }
}
