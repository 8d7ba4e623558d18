//! Forwarding names outside the cluster domain to the upstream resolvers
//! of `--resolv-conf` (CoreDNS's `forward . /etc/resolv.conf`): UDP first,
//! TCP when the answer is truncated, each upstream in turn within one
//! overall deadline, so a cluster without reachable upstreams answers
//! SERVFAIL quickly.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers configured")]
    NoUpstreams,
    #[error("no upstream answered within {0:?}")]
    Timeout(Duration),
    #[error("upstream {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream {upstream}: {source}")]
    Proto {
        upstream: SocketAddr,
        source: hickory_proto::ProtoError,
    },
}

/// The nameservers of a resolv.conf, port 53, in order (at most three, as
/// the libc resolver reads).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?.trim();
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // A scoped IPv6 address (fe80::1%eth0) keeps its address only.
            let addr = words.next()?.split('%').next()?;
            addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .take(3)
        .collect()
}

#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder { upstreams, timeout }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` (its id is replaced) to the upstreams in turn; the
    /// first answer wins (returned with the upstream that gave it). Each
    /// upstream gets an equal share of what is left of the deadline.
    pub async fn forward(&self, query: &Message) -> Result<(Message, SocketAddr), ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let deadline = Instant::now() + self.timeout;
        let mut last = ForwardError::Timeout(self.timeout);
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / u32::try_from(self.upstreams.len() - i).unwrap_or(1);
            let attempt_deadline = Instant::now() + share;
            let mut query = query.clone();
            query.set_id(rand::random());
            match timeout_at(attempt_deadline, exchange(*upstream, &query)).await {
                Ok(Ok(answer)) => return Ok((answer, *upstream)),
                Ok(Err(e)) => {
                    tracing::debug!(%upstream, error = %e, "forward failed");
                    last = e;
                }
                Err(_) => {
                    tracing::debug!(%upstream, "forward timed out");
                    last = ForwardError::Timeout(self.timeout);
                }
            }
        }
        Err(last)
    }
}

async fn exchange(upstream: SocketAddr, query: &Message) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { upstream, source };
    let proto = |source| ForwardError::Proto { upstream, source };
    let bytes = query.to_vec().map_err(proto)?;
    let local: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(&bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.id() == query.id() => break m,
            // A late or foreign datagram: keep waiting.
            _ => continue,
        }
    };
    if !answer.truncated() {
        return Ok(answer);
    }
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
    stream.write_all(&bytes).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(io)?;
    Message::from_vec(&buf).map_err(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("nameserver 10.0.0.2\n", &["10.0.0.2:53"], "one"),
            (
                "# comment\nsearch a b\nnameserver 1.1.1.1\noptions ndots:5\nnameserver ::1\n",
                &["1.1.1.1:53", "[::1]:53"],
                "search, options and comments skipped; IPv6",
            ),
            ("nameserver fe80::1%eth0", &["[fe80::1]:53"], "zone id dropped"),
            ("nameserver nonsense\nnameserver", &[], "invalid lines skipped"),
            (
                "nameserver 1.0.0.1\nnameserver 1.0.0.2\nnameserver 1.0.0.3\nnameserver 1.0.0.4\n",
                &["1.0.0.1:53", "1.0.0.2:53", "1.0.0.3:53"],
                "at most three, as libc",
            ),
            (
                "  nameserver 9.9.9.9 ; trailing\n",
                &["9.9.9.9:53"],
                "leading space, ; comment",
            ),
        ];
        for (text, want, why) in cases {
            let got: Vec<String> = parse_resolv_conf(text).iter().map(ToString::to_string).collect();
            assert_eq!(got, *want, "{why}");
        }
    }

    /// An upstream that answers every query with one A record.
    async fn fake_upstream() -> SocketAddr {
        use hickory_proto::op::MessageType;
        use hickory_proto::rr::{RData, Record, rdata::A};
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut answer = query.clone();
                answer.set_message_type(MessageType::Response);
                let name = query.queries()[0].name().clone();
                answer.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1))));
                let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn first_answering_upstream_wins() {
        use hickory_proto::op::Query;
        use hickory_proto::rr::{Name, RecordType};
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let good = fake_upstream().await;
        let f = Forwarder::new(vec![silent.local_addr().unwrap(), good], Duration::from_secs(1));
        let mut query = Message::new();
        query.add_query(Query::query(Name::from_ascii("example.com.").unwrap(), RecordType::A));
        let (answer, from) = f.forward(&query).await.unwrap();
        assert_eq!(from, good);
        assert_eq!(answer.answers()[0].data().to_string(), "192.0.2.1");
    }

    #[tokio::test]
    async fn no_upstreams_fails_at_once() {
        let f = Forwarder::new(vec![], Duration::from_secs(2));
        assert!(matches!(
            f.forward(&Message::new()).await,
            Err(ForwardError::NoUpstreams)
        ));
    }

    #[tokio::test]
    async fn silent_upstream_times_out_within_the_deadline() {
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let f = Forwarder::new(
            vec![silent.local_addr().unwrap(), silent.local_addr().unwrap()],
            Duration::from_millis(300),
        );
        let start = std::time::Instant::now();
        assert!(f.forward(&Message::new()).await.is_err());
        assert!(start.elapsed() < Duration::from_millis(600), "{:?}", start.elapsed());
    }
}
