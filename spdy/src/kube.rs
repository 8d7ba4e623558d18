//! Kubernetes' names for SPDY upgrades and streams
//! (`k8s.io/apimachinery/pkg/util/httpstream`, `k8s.io/api/core/v1`'s
//! stream types, `remotecommand` and `portforward` protocol names).

/// The `Upgrade` header value of a SPDY upgrade.
pub const UPGRADE: &str = "SPDY/3.1";
/// Request: the protocols a client offers (one header per protocol, in
/// order of preference); response: the one the server chose.
pub const PROTOCOL_VERSION_HEADER: &str = "X-Stream-Protocol-Version";
/// A refusal's list of what the server would have accepted.
pub const ACCEPTED_PROTOCOL_VERSIONS_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";

/// Stream header naming a stream's role.
pub const STREAM_TYPE: &str = "streamType";
pub const STREAM_TYPE_ERROR: &str = "error";
pub const STREAM_TYPE_STDIN: &str = "stdin";
pub const STREAM_TYPE_STDOUT: &str = "stdout";
pub const STREAM_TYPE_STDERR: &str = "stderr";
pub const STREAM_TYPE_RESIZE: &str = "resize";
pub const STREAM_TYPE_DATA: &str = "data";
/// Port-forward stream headers: the pod's port and the pair's id.
pub const PORT: &str = "port";
pub const REQUEST_ID: &str = "requestID";

/// Remote command (exec, attach) protocols, newest first. Over SPDY, v5
/// is v4 (stdin's end is the stream's FIN either way); v4's error stream
/// carries a `metav1.Status`, older ones an error message; v3 added the
/// resize stream.
pub const REMOTECOMMAND_V5: &str = "v5.channel.k8s.io";
pub const REMOTECOMMAND_V4: &str = "v4.channel.k8s.io";
pub const REMOTECOMMAND_V3: &str = "v3.channel.k8s.io";
pub const REMOTECOMMAND_V2: &str = "v2.channel.k8s.io";
pub const REMOTECOMMAND_V1: &str = "channel.k8s.io";
pub const REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    REMOTECOMMAND_V5,
    REMOTECOMMAND_V4,
    REMOTECOMMAND_V3,
    REMOTECOMMAND_V2,
    REMOTECOMMAND_V1,
];

/// The port-forward protocol over SPDY.
pub const PORTFORWARD_V1: &str = "portforward.k8s.io";

/// The WebSocket subprotocol prefix of SPDY tunnelled through a WebSocket
/// (kubectl 1.31+'s port-forward): `SPDY/3.1+portforward.k8s.io`.
pub const WEBSOCKET_TUNNEL_PREFIX: &str = "SPDY/3.1+";
