//! The WebSocket channel protocols (`k8s.io/apimachinery`'s wsstream):
//! each message carries one channel's bytes behind a channel number, a
//! byte in the binary protocols, an ASCII digit before base64 text in the
//! `base64.` ones. Negotiation, framing and the server handshake; no IO.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use tokio_tungstenite::tungstenite::Message;

use crate::status::{ApiError, ApiResult};

/// A negotiated channel protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// The `Sec-WebSocket-Protocol` value ("" when the client offered
    /// none: the binary protocol without a name).
    pub name: &'static str,
    pub base64: bool,
    /// Remote commands: the error channel carries a `metav1.Status`
    /// (v4 and later) rather than an error message.
    pub status: bool,
    /// v5: the client may close a channel (stdin) with channel 255.
    pub close: bool,
}

const fn protocol(name: &'static str, base64: bool, status: bool, close: bool) -> Protocol {
    Protocol {
        name,
        base64,
        status,
        close,
    }
}

/// Exec and attach, in the order the apiserver prefers them: v5 first, as
/// upstream's stream translator; then what kubelets have taken.
pub const REMOTECOMMAND: &[Protocol] = &[
    protocol("v5.channel.k8s.io", false, true, true),
    protocol("v4.channel.k8s.io", false, true, false),
    protocol("v4.base64.channel.k8s.io", true, true, false),
    protocol("channel.k8s.io", false, false, false),
    protocol("base64.channel.k8s.io", true, false, false),
];

/// Port-forward over channels (two per port), as the kubelet took it.
pub const PORTFORWARD: &[Protocol] = &[
    protocol("v4.channel.k8s.io", false, true, false),
    protocol("v4.base64.channel.k8s.io", true, true, false),
];

/// The unnamed protocol a client that offers none gets.
const UNNAMED: Protocol = protocol("", false, false, false);

/// The channel v5 clients use to close another channel.
pub const CLOSE_CHANNEL: u8 = 255;

/// The `Sec-WebSocket-Protocol` entries a request offers, in its order.
pub fn offered(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether a request asks to upgrade to a WebSocket.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The first of `supported` the client offers; the unnamed protocol when
/// it offers none; `Err` with upstream's message when none match.
pub fn negotiate(offered: &[String], supported: &[Protocol]) -> Result<Protocol, String> {
    if offered.is_empty() {
        return Ok(UNNAMED);
    }
    supported
        .iter()
        .find(|p| offered.iter().any(|o| o == p.name))
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = supported.iter().map(|p| p.name).collect();
            format!("requested protocol(s) are not supported: {offered:?}; supports {names:?}")
        })
}

impl Protocol {
    /// One channel's bytes as a message.
    pub fn message(&self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
            text.push(char::from(b'0' + channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            Message::text(text)
        } else {
            let mut bytes = Vec::with_capacity(1 + data.len());
            bytes.push(channel);
            bytes.extend_from_slice(data);
            Message::binary(bytes)
        }
    }

    /// A data message's channel and bytes; `None` for other messages and
    /// ones that do not parse. Text and binary frames alike, as upstream's
    /// wsstream reads both: the Python client sends a `str` as a text frame
    /// whose first character is the raw channel number.
    pub fn decode(&self, msg: &Message) -> Option<(u8, Vec<u8>)> {
        let bytes: &[u8] = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => t.as_bytes(),
            _ => return None,
        };
        let (&first, rest) = bytes.split_first()?;
        if self.base64 {
            let channel = first.checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            Some((channel, data))
        } else {
            Some((first, rest.to_vec()))
        }
    }
}

/// The 101 response accepting a WebSocket handshake with `protocol`
/// (RFC 6455: the accept key from the client's key).
pub fn accept(headers: &HeaderMap, protocol: &str) -> ApiResult<Response> {
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header is missing or blank",
            )
        })?;
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::bad_request(
            "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header",
        ));
    }
    let accept_key = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key);
    if !protocol.is_empty() {
        resp = resp.header(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocol).map_err(ApiError::internal)?,
        );
    }
    resp.body(axum::body::Body::empty()).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn negotiation_prefers_v5_takes_none_as_unnamed_and_refuses_unknowns() {
        for (offered, supported, want) in [
            (
                vec!["v4.channel.k8s.io", "v5.channel.k8s.io"],
                REMOTECOMMAND,
                Ok("v5.channel.k8s.io"),
            ),
            (
                vec!["base64.channel.k8s.io"],
                REMOTECOMMAND,
                Ok("base64.channel.k8s.io"),
            ),
            (vec![], REMOTECOMMAND, Ok("")),
            // kube-rs offers v5 and v4 for port-forward too; kubelets took v4.
            (
                vec!["v5.channel.k8s.io", "v4.channel.k8s.io"],
                PORTFORWARD,
                Ok("v4.channel.k8s.io"),
            ),
            (vec!["v5.channel.k8s.io"], PORTFORWARD, Err(())),
            (vec!["foo"], REMOTECOMMAND, Err(())),
        ] {
            let got = negotiate(&names(&offered), supported).map(|p| p.name).map_err(|_| ());
            assert_eq!(got, want, "{offered:?}");
        }
        let e = negotiate(&names(&["foo"]), PORTFORWARD).expect_err("refused");
        assert_eq!(
            e,
            "requested protocol(s) are not supported: [\"foo\"]; supports [\"v4.channel.k8s.io\", \"v4.base64.channel.k8s.io\"]"
        );
    }

    #[test]
    fn text_frames_carry_a_raw_channel_byte_and_binary_frames_base64_too() {
        let plain = REMOTECOMMAND
            .iter()
            .find(|p| p.name == "v4.channel.k8s.io")
            .expect("v4");
        assert_eq!(
            plain.decode(&Message::text("\u{0}echo hi\n")),
            Some((0, b"echo hi\n".to_vec()))
        );
        let b64 = REMOTECOMMAND
            .iter()
            .find(|p| p.name == "v4.base64.channel.k8s.io")
            .expect("v4 base64");
        assert_eq!(
            b64.decode(&Message::binary(b"0aGk=".to_vec())),
            Some((0, b"hi".to_vec()))
        );
        assert_eq!(plain.decode(&Message::text("")), None);
    }

    #[test]
    fn binary_and_base64_framing_round_trip() {
        let binary = REMOTECOMMAND[0];
        let m = binary.message(1, b"hi");
        assert_eq!(m, Message::binary(vec![1, b'h', b'i']));
        assert_eq!(binary.decode(&m), Some((1, b"hi".to_vec())));
        let b64 = REMOTECOMMAND[2];
        let m = b64.message(3, b"{}");
        assert_eq!(m, Message::text("3e30="));
        assert_eq!(b64.decode(&m), Some((3, b"{}".to_vec())));
        assert_eq!(binary.decode(&Message::text("\u{1}hi")), Some((1, b"hi".to_vec())));
        assert_eq!(binary.decode(&Message::binary(Vec::new())), None);
    }

    #[test]
    fn the_handshake_answers_with_the_accept_key_and_the_protocol() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        let r = accept(&h, "v5.channel.k8s.io").expect("accepted");
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455's example.
        assert_eq!(
            r.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_PROTOCOL], "v5.channel.k8s.io");
        assert!(
            !accept(&h, "")
                .expect("accepted")
                .headers()
                .contains_key(header::SEC_WEBSOCKET_PROTOCOL)
        );
        assert_eq!(accept(&HeaderMap::new(), "x").expect_err("no key").code(), 400);
    }
}
