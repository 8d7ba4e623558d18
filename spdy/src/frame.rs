//! SPDY/3.1 frames and their encoding: plain data and functions, no IO.
//!
//! Every frame starts with 8 bytes. A control frame: the control bit and
//! the version (3), its type, flags and a 24-bit length. A data frame: a
//! 31-bit stream id, flags and a 24-bit length. Header blocks (in
//! SYN_STREAM, SYN_REPLY and HEADERS) are one zlib stream per direction
//! of a connection, primed with SPDY's dictionary and sync-flushed after
//! each block, so the encoder and decoder keep state across frames and
//! must see every header block in order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub const VERSION: u16 = 3;

/// The largest payload a frame's 24-bit length can carry.
pub const MAX_FRAME_LENGTH: usize = (1 << 24) - 1;

/// A decoded header block larger than this is refused (a zlib bomb).
const MAX_HEADER_BLOCK: usize = 1 << 20;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// A stream's headers: lower-case names (SPDY requires it; Go's
/// framer rejects others), each once, several values of one name joined
/// by NUL as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value; a name already present gets it appended.
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => self.0.push((name, value.to_string())),
        }
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of a header (names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) triples.
    Settings {
        clear: bool,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("invalid {0} frame")]
    Invalid(&'static str),
    #[error("frame of {0} bytes exceeds the 24-bit length")]
    TooLarge(usize),
    #[error("header block: {0}")]
    HeaderBlock(String),
}

/// Encodes frames; owns the connection's outgoing header compression.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(crate::dictionary::dictionary())
            .expect("a fresh zlib stream takes a dictionary");
        Self { deflate }
    }

    /// Appends `frame`'s bytes to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::Data { stream_id, fin, data } => {
                if data.len() > MAX_FRAME_LENGTH {
                    return Err(FrameError::TooLarge(data.len()));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((u32::from(flag(*fin, FLAG_FIN)) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                control(out, TYPE_SYN_STREAM, flags, 10 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(0); // credential slot
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                control(out, kind, flag(*fin, FLAG_FIN), 4 + block.len())?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, TYPE_RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { clear, entries } => {
                control(out, TYPE_SETTINGS, flag(*clear, 0x01), 4 + 8 * entries.len())?;
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32((u32::from(*flags) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control(out, TYPE_PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, TYPE_GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, TYPE_WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
        }
        Ok(())
    }

    /// A header block, compressed and sync-flushed.
    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let mut plain = Vec::new();
        plain.put_u32(headers.0.len() as u32);
        for (name, value) in &headers.0 {
            plain.put_u32(name.len() as u32);
            plain.put_slice(name.as_bytes());
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = (self.deflate.total_in() - start) as usize;
            self.deflate
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
            let consumed = (self.deflate.total_in() - start) as usize;
            // Done once all input is in and the flush left room unused.
            if consumed == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    if len > MAX_FRAME_LENGTH {
        return Err(FrameError::TooLarge(len));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

/// Decodes frames; owns the connection's incoming header decompression.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }

    /// Takes one whole frame off the front of `buf`; `None` until `buf`
    /// holds one. Control frames of unknown types are skipped, as SPDY
    /// asks.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
            if buf.len() < 8 + len {
                buf.reserve(8 + len - buf.len());
                return Ok(None);
            }
            let mut head = buf.split_to(8);
            let mut payload = buf.split_to(len).freeze();
            let first = head.get_u32();
            let flags = head.get_u8();
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: first & 0x7fff_ffff,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(FrameError::Version(version));
            }
            let fin = flags & FLAG_FIN != 0;
            let frame = match (first & 0xffff) as u16 {
                TYPE_SYN_STREAM => {
                    if len < 10 {
                        return Err(FrameError::Invalid("SYN_STREAM"));
                    }
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let associated_to = payload.get_u32() & 0x7fff_ffff;
                    let priority = payload.get_u8() >> 5;
                    payload.advance(1);
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        fin,
                        unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                        headers: self.header_block(&payload)?,
                    }
                }
                kind @ (TYPE_SYN_REPLY | TYPE_HEADERS) => {
                    if len < 4 {
                        return Err(FrameError::Invalid("SYN_REPLY"));
                    }
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let headers = self.header_block(&payload)?;
                    if kind == TYPE_SYN_REPLY {
                        Frame::SynReply {
                            stream_id,
                            fin,
                            headers,
                        }
                    } else {
                        Frame::Headers {
                            stream_id,
                            fin,
                            headers,
                        }
                    }
                }
                TYPE_RST_STREAM => {
                    if len != 8 {
                        return Err(FrameError::Invalid("RST_STREAM"));
                    }
                    Frame::RstStream {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                TYPE_SETTINGS => {
                    if len < 4 {
                        return Err(FrameError::Invalid("SETTINGS"));
                    }
                    let n = payload.get_u32() as usize;
                    if payload.remaining() != n.saturating_mul(8) {
                        return Err(FrameError::Invalid("SETTINGS"));
                    }
                    let entries = (0..n)
                        .map(|_| {
                            let id = payload.get_u32();
                            ((id >> 24) as u8, id & 0x00ff_ffff, payload.get_u32())
                        })
                        .collect();
                    Frame::Settings { clear: fin, entries }
                }
                TYPE_PING => {
                    if len != 4 {
                        return Err(FrameError::Invalid("PING"));
                    }
                    Frame::Ping { id: payload.get_u32() }
                }
                TYPE_GOAWAY => {
                    if len != 8 {
                        return Err(FrameError::Invalid("GOAWAY"));
                    }
                    Frame::GoAway {
                        last_good_stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                TYPE_WINDOW_UPDATE => {
                    if len != 8 {
                        return Err(FrameError::Invalid("WINDOW_UPDATE"));
                    }
                    Frame::WindowUpdate {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        delta: payload.get_u32() & 0x7fff_ffff,
                    }
                }
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let err = |m: &str| FrameError::HeaderBlock(m.to_string());
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let start = self.inflate.total_in();
        loop {
            let consumed = (self.inflate.total_in() - start) as usize;
            let produced = out.len();
            match self
                .inflate
                .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Err(err("zlib stream ended")),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(crate::dictionary::dictionary())
                        .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(FrameError::HeaderBlock(e.to_string())),
            }
            let now_consumed = (self.inflate.total_in() - start) as usize;
            if now_consumed == compressed.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() >= MAX_HEADER_BLOCK {
                return Err(err("header block too large"));
            }
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            } else if now_consumed == consumed && out.len() == produced {
                return Err(err("truncated"));
            }
        }
        parse_header_block(&out)
    }
}

fn parse_header_block(mut b: &[u8]) -> Result<Headers, FrameError> {
    let err = || FrameError::HeaderBlock("malformed name/value block".into());
    let take = |b: &mut &[u8]| -> Result<String, FrameError> {
        if b.len() < 4 {
            return Err(err());
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(err());
        }
        let s = String::from_utf8_lossy(&b[..n]).into_owned();
        b.advance(n);
        Ok(s)
    };
    if b.len() < 4 {
        return Err(err());
    }
    let count = b.get_u32();
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take(&mut b)?;
        let value = take(&mut b)?;
        if headers.get(&name).is_some() {
            return Err(FrameError::HeaderBlock(format!("duplicate header {name:?}")));
        }
        headers.0.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = Encoder::new();
        let mut buf = BytesMut::new();
        for f in frames {
            enc.encode(f, &mut buf).expect("encode");
        }
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        // Byte by byte: a frame decodes only once whole.
        let mut input = BytesMut::new();
        for b in buf {
            input.put_u8(b);
            while let Some(f) = dec.decode(&mut input).expect("decode") {
                out.push(f);
            }
        }
        assert!(input.is_empty());
        out
    }

    #[test]
    fn every_frame_type_round_trips_and_header_state_carries_across_frames() {
        let h = Headers::new()
            .with("streamType", "error")
            .with("port", "8080")
            .with("requestID", "0");
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                unidirectional: false,
                headers: h.clone(),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: Headers::new(),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                fin: true,
                unidirectional: true,
                headers: h.clone().with("port", "9090"),
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Headers {
                stream_id: 3,
                fin: false,
                headers: h,
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Settings {
                clear: false,
                entries: vec![(0, 7, 65536)],
            },
            Frame::Ping { id: 2 },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1024,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: goaway::OK,
            },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    #[test]
    fn header_names_are_lower_case_and_repeated_values_share_one_entry() {
        let h = Headers::new()
            .with("X-Stream-Protocol-Version", "v4.channel.k8s.io")
            .with("x-stream-protocol-version", "v3.channel.k8s.io");
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            vec![("x-stream-protocol-version", "v4.channel.k8s.io\0v3.channel.k8s.io")]
        );
        assert_eq!(h.get("X-STREAM-PROTOCOL-VERSION"), Some("v4.channel.k8s.io"));
    }

    #[test]
    fn wire_layout_of_a_data_frame_and_a_control_frame() {
        let mut enc = Encoder::new();
        let mut buf = BytesMut::new();
        let data = Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::from_static(b"ab"),
        };
        enc.encode(&data, &mut buf).expect("encode");
        assert_eq!(&buf[..], &[0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        buf.clear();
        enc.encode(&Frame::Ping { id: 7 }, &mut buf).expect("encode");
        assert_eq!(&buf[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
    }

    #[test]
    fn the_first_header_block_names_the_dictionary() {
        // zlib header with FDICT set, then the dictionary's Adler-32, as Go's
        // zlib.NewWriterLevelDict writes (and its reader expects).
        let mut enc = Encoder::new();
        let block = enc.header_block(&Headers::new().with("a", "b")).expect("block");
        assert_eq!(block[0] & 0x0f, 8, "deflate");
        assert_ne!(block[1] & 0x20, 0, "FDICT");
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // Sync-flushed: ends with an empty stored block.
        assert_eq!(&block[block.len() - 4..], &[0, 0, 0xff, 0xff]);
    }

    #[test]
    fn unknown_control_frames_are_skipped_and_bad_ones_refused() {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::from(&[0x80, 3, 0, 0x0a, 0, 0, 0, 1, 9, 0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(dec.decode(&mut buf).expect("decode"), Some(Frame::Ping { id: 1 }));
        let mut buf = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::Version(2)));
        let mut buf = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::Invalid("RST_STREAM")));
    }
}
