//! [`SerialLink`]: protocol frames over a serial port — the board's USB serial (the ULX3S's
//! FT231X, `/dev/ttyUSB0`) or a pseudo-terminal in front of a simulated board
//! ([`crate::sim::pty`]). The port is opened raw, 8N1, no flow control, at the baud rate the
//! bitstream was built for (`dfforge board --baud`, 115200 by default).
//!
//! A transaction drops stale input, writes the command frame, then reads until one complete
//! response frame has arrived: bytes before the sync byte 0x5A are skipped, the header gives
//! the payload length, and the frame ends after the payload and its two CRC bytes (the
//! [`crate::host::Client`] checks the CRC). If no byte arrives for
//! [`SerialOptions::timeout`], the transaction fails with an error that says what did arrive.

use super::link::{Link, LinkError};
use super::protocol::{RSP_OVERHEAD, RSP_SYNC};
use serialport::{ClearBuffer, DataBits, FlowControl, Parity, SerialPort, StopBits};
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

/// How a [`SerialLink`] talks to its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialOptions {
    /// Baud rate (the board top's `CLKS_PER_BIT` = clock / baud).
    pub baud: u32,
    /// Longest silence while waiting for a response (covers the device's work, e.g. a TRAIN
    /// run, before its first response byte).
    pub timeout: Duration,
}

impl Default for SerialOptions {
    fn default() -> Self {
        SerialOptions {
            baud: 115_200,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What went wrong on a serial link; every message names the port and what to check.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("cannot open {path}: {msg} — is the board plugged in? pass --backend serial:PATH with its device (look for /dev/ttyUSB* or /dev/ttyACM*; on the ULX3S it is the FT231X on the US1 port)")]
    Open { path: String, msg: String },
    #[error("cannot open {path}: permission denied — add your user to the group that owns it (`ls -l {path}`; usually `dialout`: sudo usermod -aG dialout $USER, then log in again)")]
    Permission { path: String },
    #[error("cannot open {path}: it is in use by another program (close the other terminal program, e.g. screen, minicom or openFPGALoader)")]
    Busy { path: String },
    #[error("serial port {path}: {what} failed: {msg} — was the board unplugged?")]
    Io {
        path: String,
        what: &'static str,
        msg: String,
    },
    #[error("no complete response frame from {path} after {secs:.1} s of silence ({} byte(s) arrived{}): {hint}", bytes.len(), if bytes.is_empty() { String::new() } else { format!(": {bytes:02x?}") })]
    Timeout {
        path: String,
        secs: f64,
        bytes: Vec<u8>,
        hint: String,
    },
}

/// If `buf` holds a complete response frame after skipping bytes before the first sync byte,
/// return (start, length) of the first one.
pub fn find_response(buf: &[u8]) -> Option<(usize, usize)> {
    let start = buf.iter().position(|&b| b == RSP_SYNC)?;
    let f = &buf[start..];
    if f.len() < 5 {
        return None;
    }
    let n = usize::from(u16::from_le_bytes([f[3], f[4]]));
    let len = RSP_OVERHEAD + n;
    (f.len() >= len).then_some((start, len))
}

/// Protocol frames over a serial port (see the module docs).
pub struct SerialLink {
    port: Box<dyn SerialPort>,
    path: String,
    opts: SerialOptions,
}

impl std::fmt::Debug for SerialLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialLink")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .finish()
    }
}

impl SerialLink {
    /// Open `path` raw (8N1, no flow control) at `opts.baud`.
    pub fn open(path: &str, opts: SerialOptions) -> Result<SerialLink, SerialError> {
        let open_err = |msg: String| SerialError::Open {
            path: path.to_string(),
            msg,
        };
        if path.is_empty() {
            return Err(open_err("the device path is empty".into()));
        }
        if opts.baud == 0 {
            return Err(open_err("baud rate 0".into()));
        }
        if !std::path::Path::new(path).exists() {
            return Err(open_err("no such device".into()));
        }
        let port = serialport::new(path, opts.baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .timeout(Duration::from_millis(100))
            .open()
            .map_err(|e| match e.kind() {
                serialport::ErrorKind::Io(ErrorKind::PermissionDenied) => {
                    SerialError::Permission { path: path.into() }
                }
                serialport::ErrorKind::NoDevice if e.description.contains("busy") => {
                    SerialError::Busy { path: path.into() }
                }
                _ if e.description.contains("typewriter")
                    || e.description.contains("Inappropriate ioctl") =>
                {
                    open_err("it is not a serial port (not a terminal device)".into())
                }
                _ => open_err(e.description),
            })?;
        let mut link = SerialLink {
            port,
            path: path.to_string(),
            opts,
        };
        link.clear_input()?;
        Ok(link)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn options(&self) -> &SerialOptions {
        &self.opts
    }

    fn io(&self, what: &'static str, msg: impl std::fmt::Display) -> SerialError {
        SerialError::Io {
            path: self.path.clone(),
            what,
            msg: msg.to_string(),
        }
    }

    /// Drop whatever is waiting in the input buffer (power-up noise, or the late answer to a
    /// command that timed out).
    fn clear_input(&mut self) -> Result<(), SerialError> {
        self.port
            .clear(ClearBuffer::Input)
            .map_err(|e| self.io("clearing the input buffer", e))
    }

    fn send(&mut self, frame: &[u8]) -> Result<Vec<u8>, SerialError> {
        self.clear_input()?;
        self.port
            .write_all(frame)
            .map_err(|e| self.io("write", e))?;
        self.port.flush().map_err(|e| self.io("flush", e))?;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut last = Instant::now();
        loop {
            if let Some((start, len)) = find_response(&buf) {
                return Ok(buf[start..start + len].to_vec());
            }
            let idle = last.elapsed();
            if idle >= self.opts.timeout {
                return Err(self.timeout_error(buf));
            }
            let wait = (self.opts.timeout - idle)
                .clamp(Duration::from_millis(1), Duration::from_millis(200));
            self.port
                .set_timeout(wait)
                .map_err(|e| self.io("setting the read timeout", e))?;
            match self.port.read(&mut chunk) {
                Ok(0) => {}
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    last = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::Interrupted | ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(self.io("read", e)),
            }
        }
    }

    fn timeout_error(&self, bytes: Vec<u8>) -> SerialError {
        let baud = self.opts.baud;
        let hint = match bytes.iter().position(|&b| b == RSP_SYNC) {
            None if bytes.is_empty() => format!(
                "the device did not answer — is the dfforge bitstream loaded (the board's LEDs: \
                 led[0] blinks, led[1] flashes when bytes arrive), was it built for {baud} baud, \
                 and is the cable on the FTDI port? If it was only slow, allow more time (--timeout SECS)"
            ),
            None => format!(
                "bytes came back but none is the response sync 0x5a — the baud rate ({baud}) is \
                 probably not the one the bitstream was built for (dfforge board --baud)"
            ),
            Some(start) => {
                let got = bytes.len() - start;
                let want = if got >= 5 {
                    format!(
                        "{}",
                        RSP_OVERHEAD
                            + usize::from(u16::from_le_bytes([bytes[start + 3], bytes[start + 4]]))
                    )
                } else {
                    "at least 7".into()
                };
                format!(
                    "the response stopped after {got} of {want} bytes — bytes were lost on the \
                     line (check the baud rate, {baud}, and the cable) or the device hung"
                )
            }
        };
        SerialError::Timeout {
            path: self.path.clone(),
            secs: self.opts.timeout.as_secs_f64(),
            bytes,
            hint,
        }
    }
}

impl Link for SerialLink {
    fn transact(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        Ok(self.send(frame)?)
    }
    fn set_timeout(&mut self, t: Duration) {
        self.opts.timeout = t;
    }
}

/// Parse a `--backend` value of the form `serial:PATH` or `serial:PATH@BAUD`.
pub fn parse_backend(spec: &str) -> Result<(String, SerialOptions), String> {
    let rest = spec.strip_prefix("serial:").ok_or_else(|| {
        format!("unknown backend `{spec}`: use serial:PATH or serial:PATH@BAUD (e.g. serial:/dev/ttyUSB0@115200)")
    })?;
    let (path, baud) = match rest.rsplit_once('@') {
        Some((p, b)) => {
            let baud: u32 = b
                .parse()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| format!("`{b}` in `{spec}` is not a baud rate: use serial:PATH@BAUD, e.g. serial:/dev/ttyUSB0@115200"))?;
            (p, baud)
        }
        None => (rest, SerialOptions::default().baud),
    };
    if path.is_empty() {
        return Err(format!(
            "`{spec}` has no device path: use serial:PATH, e.g. serial:/dev/ttyUSB0"
        ));
    }
    Ok((
        path.to_string(),
        SerialOptions {
            baud,
            ..SerialOptions::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::protocol::{encode_response, Status};

    #[test]
    fn finds_one_frame_after_noise() {
        let f = encode_response(2, Status::Ok, &[1, 2, 3]).unwrap();
        let mut buf = vec![0x00, 0xff, 0x13];
        for k in 0..f.len() {
            assert_eq!(
                find_response(&[&buf[..], &f[..k]].concat()),
                None,
                "prefix {k}"
            );
        }
        buf.extend_from_slice(&f);
        buf.extend_from_slice(&[0x5a, 0x00]);
        assert_eq!(find_response(&buf), Some((3, f.len())));
        assert_eq!(find_response(&[]), None);
    }

    #[test]
    fn missing_device_says_what_to_do() {
        let e = SerialLink::open("/dev/ttyUSB_dfforge_missing", SerialOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot open /dev/ttyUSB_dfforge_missing: no such device"),
            "{e}"
        );
        assert!(
            e.contains("is the board plugged in? pass --backend serial:PATH"),
            "{e}"
        );
        let e = SerialLink::open("", SerialOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        // A path that exists but is no serial port.
        let e = SerialLink::open("/dev/null", SerialOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot open /dev/null: it is not a serial port"),
            "{e}"
        );
    }

    #[test]
    fn backend_specs() {
        assert_eq!(
            parse_backend("serial:/dev/ttyUSB0").unwrap(),
            ("/dev/ttyUSB0".to_string(), SerialOptions::default())
        );
        let (p, o) = parse_backend("serial:/dev/pts/3@921600").unwrap();
        assert_eq!((p.as_str(), o.baud), ("/dev/pts/3", 921_600));
        for bad in [
            "usb:/dev/ttyUSB0",
            "serial:",
            "serial:/dev/x@fast",
            "serial:/dev/x@0",
        ] {
            let e = parse_backend(bad).unwrap_err();
            assert!(e.contains("serial:PATH"), "{bad}: {e}");
        }
    }
}
