//! The DNS server: hickory-server's UDP and TCP listeners around a
//! handler that asks the zone, and forwards what is not the zone's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_proto::xfer::Protocol;
use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use parking_lot::RwLock;
use tokio::net::{TcpListener, UdpSocket};

use crate::forward::Forwarder;
use crate::metrics::{Metrics, Observation};
use crate::zone::{Lookup, Zone};

/// The zone, shared by the watch loop (one writer) and the handler.
pub type SharedZone = Arc<RwLock<Zone>>;

/// How long an idle TCP connection stays open.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Handler {
    zone: SharedZone,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    /// CoreDNS's `server` label, `dns://:53`.
    server: String,
}

impl Handler {
    pub fn new(zone: SharedZone, forwarder: Forwarder, metrics: Arc<Metrics>, port: u16) -> Handler {
        Handler {
            zone,
            forwarder,
            metrics,
            server: format!("dns://:{port}"),
        }
    }

    async fn respond<R: ResponseHandler>(&self, request: &Request, mut response: R) -> io::Result<ResponseInfo> {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        if let Some(edns) = request.edns() {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload().clamp(512, 4096));
            builder.edns(ours);
        }
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            return response
                .send_response(builder.error_msg(request.header(), ResponseCode::NotImp))
                .await;
        }
        let Ok(info) = request.request_info() else {
            return response
                .send_response(builder.error_msg(request.header(), ResponseCode::FormErr))
                .await;
        };
        let qname: Name = info.query.name().into();
        let qtype = info.query.query_type();
        let lookup = self.zone.read().lookup(&qname, qtype);
        match lookup {
            Lookup::Answer(answer) => {
                header.set_authoritative(true);
                header.set_response_code(answer.rcode);
                let none: [Record; 0] = [];
                response
                    .send_response(builder.build(
                        header,
                        answer.answers.iter(),
                        answer.authority.iter(),
                        none.iter(),
                        answer.additionals.iter(),
                    ))
                    .await
            }
            Lookup::Forward => {
                let mut query = Message::new();
                query
                    .set_message_type(MessageType::Query)
                    .set_op_code(OpCode::Query)
                    .set_recursion_desired(request.recursion_desired())
                    .set_checking_disabled(request.checking_disabled());
                let mut q = Query::query(qname, qtype);
                q.set_query_class(info.query.query_class());
                query.add_query(q);
                let mut edns = Edns::new();
                edns.set_max_payload(1232);
                query.set_edns(edns);
                match self.forwarder.forward(&query).await {
                    Ok((upstream, to)) => {
                        self.metrics.forwarded(&to.to_string());
                        header.set_response_code(upstream.response_code());
                        header.set_authoritative(upstream.authoritative());
                        let none: [Record; 0] = [];
                        response
                            .send_response(builder.build(
                                header,
                                upstream.answers().iter(),
                                upstream.name_servers().iter(),
                                none.iter(),
                                upstream.additionals().iter(),
                            ))
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(name = %info.query.name(), error = %e, "forwarding failed");
                        response
                            .send_response(builder.error_msg(request.header(), ResponseCode::ServFail))
                            .await
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, response: R) -> ResponseInfo {
        let start = Instant::now();
        let info = match self.respond(request, response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(src = %request.src(), error = %e, "sending a response failed");
                let mut header = Header::response_from_request(request.header());
                header.set_response_code(ResponseCode::ServFail);
                header.into()
            }
        };
        let qtype = request
            .request_info()
            .map(|i| i.query.query_type().to_string())
            .unwrap_or_else(|_| "other".into());
        self.metrics.observe(&Observation {
            server: &self.server,
            proto: match request.protocol() {
                Protocol::Udp => "udp",
                Protocol::Tcp => "tcp",
                _ => "other",
            },
            family: if request.src().is_ipv4() { "1" } else { "2" },
            qtype: &qtype,
            rcode: &info.response_code().to_string(),
            seconds: start.elapsed().as_secs_f64(),
        });
        info
    }
}

/// A running DNS server: UDP and TCP on one port.
pub struct DnsServer {
    pub addr: SocketAddr,
    inner: ServerFuture<Handler>,
}

impl DnsServer {
    /// Binds UDP and TCP at `addr`; port 0 picks a port free for both.
    pub async fn bind(addr: SocketAddr, handler: Handler) -> io::Result<DnsServer> {
        let mut attempts = 0;
        let (udp, tcp) = loop {
            attempts += 1;
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if addr.port() == 0 && attempts < 20 && e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        };
        let addr = udp.local_addr()?;
        let mut inner = ServerFuture::new(handler);
        inner.register_socket(udp);
        inner.register_listener(tcp, TCP_IDLE_TIMEOUT);
        Ok(DnsServer { addr, inner })
    }

    /// Runs until the listeners fail or `shutdown` is called.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        self.inner.block_until_done().await?;
        Ok(())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.inner.shutdown_gracefully().await?;
        Ok(())
    }
}
