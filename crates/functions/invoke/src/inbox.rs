//! The instance's inbox: one MQTT 5 connection per warm `invoke` instance, subscribed once to a
//! reply space of its own, so a device's reply reaches the function that waits for it without
//! the rule → `ingest` → DynamoDB → polling round.
//!
//! - The connection's client id is the [`Inbox`] name (`tether-invoke-…`); it subscribes to
//!   `{prefix}/replies/+/+/{inbox}` and nothing else, so an instance never sees replies meant
//!   for another.
//! - A request names `{prefix}/replies/{deviceId}/{requestId}/{inbox}` as its MQTT 5 response
//!   topic. That topic also matches the reply rule (`{prefix}/replies/+/+/#`), so `ingest`
//!   still records every reply; the inbox only makes it arrive sooner.
//! - A reply is handed to the call waiting for that request id, and only if it comes from that
//!   call's device (the device's policy lets it publish only under its own id).
//! - Lambda freezes an instance between invocations; on thaw the connection may be dead. Before
//!   a call relies on the inbox, it checks when the broker was last heard from; if that is
//!   longer ago than the keep-alive, it subscribes again and waits briefly for the SUBACK (a
//!   round trip that proves the connection). No SUBACK in time: the call goes without the
//!   inbox, by the rule path, and the connection is re-established in the background. A dead
//!   connection can make a call slower, never unanswered: the record is still polled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    sign, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tether_domain::topics::{Inbox as InboxName, InvokeTopics};
use tether_domain::{DeviceId, RequestId};
use tokio::sync::{mpsc, Notify};

/// How often the client pings an idle broker; also how long the broker may stay silent before
/// a call checks the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Pause before reconnecting after a connection error.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Longest a reply may be (the API's payload limit is far below).
const MAX_PACKET: u32 = 256 * 1024;

/// Where the inbox connects (`REPLY_INBOX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `mqtt://host:port`: plain MQTT.
    Tcp { host: String, port: u16 },
    /// `ws://host:port/path`: MQTT over WebSocket, unsigned (local-iot).
    Ws { url: String, port: u16 },
    /// `wss://host[:port]/path`: MQTT over WebSocket with TLS, each connection presigned with
    /// SigV4 from the function's credentials (AWS IoT Core's `wss://{endpoint}/mqtt`).
    Wss { url: String, port: u16 },
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not mqtt://host:port, ws://… or wss://…"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("{text:?} has an invalid port"))?,
                ),
            ),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        match (scheme, port) {
            ("mqtt", Some(port)) if path.is_empty() => Ok(Self::Tcp {
                host: host.to_owned(),
                port,
            }),
            ("mqtt", _) => Err(format!("{text:?}: mqtt:// takes host:port and no path")),
            ("ws", port) => Ok(Self::Ws {
                url: text.to_owned(),
                port: port.unwrap_or(80),
            }),
            ("wss", port) => Ok(Self::Wss {
                url: text.to_owned(),
                port: port.unwrap_or(443),
            }),
            _ => Err(format!("{text:?}: the scheme is not mqtt, ws or wss")),
        }
    }

    /// The client options for this endpoint; `signer` presigns each `wss` connection.
    fn options(&self, client_id: &str, signer: Option<Presigner>) -> Result<MqttOptions, String> {
        Ok(match self {
            Self::Tcp { host, port } => MqttOptions::new(client_id, host.as_str(), *port),
            Self::Ws { url, port } => {
                let mut options = MqttOptions::new(client_id, url.as_str(), *port);
                options.set_transport(Transport::Ws);
                options
            }
            Self::Wss { url, port } => {
                let signer = signer.ok_or("wss:// needs AWS credentials to sign with")?;
                let mut options = MqttOptions::new(client_id, url.as_str(), *port);
                options.set_transport(Transport::wss_with_config(TlsConfiguration::Rustls(
                    tls_config()?,
                )));
                // Signed again on every (re)connection: credentials rotate and a presigned URL
                // is short-lived.
                options.set_request_modifier(move |request| {
                    let signer = signer.clone();
                    async move { signer.sign(request).await }
                });
                options
            }
        })
    }
}

/// TLS for `wss`: the system's trust store (one bundle when `SSL_CERT_FILE` names it), ring.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(format!("no trusted root certificates: {:?}", found.errors));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Presigns the WebSocket upgrade request for AWS IoT Core: SigV4 in the query string, service
/// `iotdevicegateway`, only `host` signed, and — as AWS IoT asks — a session token appended
/// after signing rather than signed.
#[derive(Clone)]
pub struct Presigner {
    region: String,
    credentials: SharedCredentialsProvider,
}

/// How long a presigned upgrade request is valid (it is used at once).
const PRESIGNED_FOR: Duration = Duration::from_secs(300);

impl Presigner {
    pub fn new(region: &str, credentials: SharedCredentialsProvider) -> Self {
        Self {
            region: region.to_owned(),
            credentials,
        }
    }

    /// The request with its URI replaced by the presigned one; on failure the request as it
    /// was (the connection is then refused, and retried).
    async fn sign(&self, request: http::Request<()>) -> http::Request<()> {
        match self
            .presigned(&request.uri().to_string(), SystemTime::now())
            .await
        {
            Ok(uri) => {
                let (mut parts, body) = request.into_parts();
                match uri.parse() {
                    Ok(uri) => parts.uri = uri,
                    Err(err) => tracing::warn!(error = %err, "the presigned URL does not parse"),
                }
                http::Request::from_parts(parts, body)
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not sign the inbox connection");
                request
            }
        }
    }

    /// `url` (`wss://host/path`) presigned at `time`.
    pub async fn presigned(&self, url: &str, time: SystemTime) -> Result<String, String> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("AWS credentials: {e}"))?;
        let token = credentials.session_token().map(str::to_owned);
        let identity: Identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(PRESIGNED_FOR);
        settings.session_token_mode = SessionTokenMode::Exclude;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("iotdevicegateway")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable =
            SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[]))
                .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let mut request = http::Request::builder()
            .uri(url)
            .body(())
            .map_err(|e| e.to_string())?;
        instructions.apply_to_request_http1x(&mut request);
        let mut signed = request.uri().to_string();
        if let Some(token) = token {
            signed.push_str("&X-Amz-Security-Token=");
            signed.push_str(&tether_domain::percent::encode(&token));
        }
        Ok(signed)
    }
}

/// A call waiting for its reply.
struct Waiter {
    device: DeviceId,
    /// Every message on the call's reply topic (progress, then the answer).
    reply: mpsc::UnboundedSender<Vec<u8>>,
}

#[derive(Default)]
struct Link {
    /// Subscribed on the current connection.
    subscribed: bool,
    /// When the broker was last heard from.
    heard: Option<Instant>,
}

struct Shared {
    topics: InvokeTopics,
    name: InboxName,
    waiting: Mutex<HashMap<RequestId, Waiter>>,
    link: Mutex<Link>,
    /// Woken on every SUBACK.
    subacked: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// A reply published to this inbox: handed to the call waiting for it, if the topic names
    /// that call's device.
    fn deliver(&self, topic: &str, payload: Vec<u8>) {
        let Ok(reply) = self.topics.parse_reply(topic) else {
            tracing::debug!(%topic, "not a reply topic");
            return;
        };
        if reply.inbox.as_ref() != Some(&self.name) {
            return;
        }
        let waiting = lock(&self.waiting);
        match waiting.get(&reply.request_id) {
            // The call stays registered until it ends: progress comes before the answer.
            Some(waiter) if waiter.device == reply.device => {
                let _ = waiter.reply.send(payload);
            }
            Some(_) => {
                tracing::warn!(device = %reply.device, request_id = %reply.request_id, "a reply from a device that was not asked; left to ingest");
            }
            None => tracing::debug!(request_id = %reply.request_id, "a reply no call waits for"),
        }
    }

    fn heard(&self) {
        lock(&self.link).heard = Some(Instant::now());
    }
}

/// The inbox of this instance.
pub struct Inbox {
    shared: Arc<Shared>,
    client: AsyncClient,
    filter: String,
}

/// A call's claim on its reply; dropping it stops waiting.
pub struct Listening {
    inbox: InboxName,
    reply: mpsc::UnboundedReceiver<Vec<u8>>,
    _claim: Option<Claim>,
}

/// Removes the call from the inbox's waiting list when it is done.
struct Claim {
    shared: Arc<Shared>,
    id: RequestId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.shared.waiting).remove(&self.id);
    }
}

impl Listening {
    /// A claim fed by a channel instead of a connection (the handler's unit tests).
    pub fn from_channel(inbox: InboxName, reply: mpsc::UnboundedReceiver<Vec<u8>>) -> Self {
        Self {
            inbox,
            reply,
            _claim: None,
        }
    }

    /// The inbox the request's response topic names.
    pub fn inbox(&self) -> &InboxName {
        &self.inbox
    }

    /// The next message on the call's reply topic, when it comes; `None` if the inbox went
    /// away.
    pub async fn reply(&mut self) -> Option<Vec<u8>> {
        self.reply.recv().await
    }
}

impl Inbox {
    /// Opens the connection and subscribes, waiting at most `within` for the SUBACK; the
    /// connection keeps (re)connecting in the background either way. `signer` signs `wss`
    /// connections.
    pub async fn open(
        endpoint: &Endpoint,
        signer: Option<Presigner>,
        topics: InvokeTopics,
        within: Duration,
    ) -> Result<Self, String> {
        let name = InboxName::random();
        let mut options = endpoint.options(name.as_str(), signer)?;
        options.set_keep_alive(KEEP_ALIVE);
        options.set_clean_start(true);
        options.set_max_packet_size(Some(MAX_PACKET));
        // rumqttc sizes its table of in-flight publishes by this bound (65,535 by default):
        // the inbox publishes nothing.
        options.set_outgoing_inflight_upper_limit(8);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let (client, eventloop) = AsyncClient::new(options, 16);
        let filter = topics.inbox_filter(&name);
        let shared = Arc::new(Shared {
            topics,
            name,
            waiting: Mutex::default(),
            link: Mutex::default(),
            subacked: Notify::new(),
        });
        let inbox = Self {
            shared: Arc::clone(&shared),
            client: client.clone(),
            filter: filter.clone(),
        };
        let subscribed = inbox.shared.subacked.notified();
        tokio::spawn(run(eventloop, client, filter, shared));
        if tokio::time::timeout(within, subscribed).await.is_err() {
            tracing::warn!(inbox = %inbox.shared.name, "the inbox is not subscribed yet; calls go by the rule path until it is");
        }
        Ok(inbox)
    }

    pub fn name(&self) -> &InboxName {
        &self.shared.name
    }

    /// Registers a call for its reply, if the inbox can be relied on: subscribed, and heard
    /// from within the keep-alive, or proven alive by a SUBACK within `probe`.
    pub async fn listen(
        &self,
        id: &RequestId,
        device: &DeviceId,
        probe: Duration,
    ) -> Option<Listening> {
        let (subscribed, heard) = {
            let link = lock(&self.shared.link);
            (link.subscribed, link.heard)
        };
        if !subscribed {
            return None;
        }
        let quiet = heard.map_or(Duration::MAX, |at| at.elapsed());
        if quiet > KEEP_ALIVE {
            // Maybe a thawed instance: prove the connection with a round trip.
            let subacked = self.shared.subacked.notified();
            if self
                .client
                .try_subscribe(self.filter.clone(), QoS::AtLeastOnce)
                .is_err()
                || tokio::time::timeout(probe, subacked).await.is_err()
            {
                tracing::info!(inbox = %self.shared.name, quiet_ms = quiet.as_millis() as u64, "the inbox did not answer; this call goes by the rule path");
                return None;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.waiting).insert(
            id.clone(),
            Waiter {
                device: device.clone(),
                reply: tx,
            },
        );
        Some(Listening {
            inbox: self.shared.name.clone(),
            reply: rx,
            _claim: Some(Claim {
                shared: Arc::clone(&self.shared),
                id: id.clone(),
            }),
        })
    }
}

/// The connection's event loop: subscribes on every (clean) connection, hands replies over,
/// notes when the broker was last heard from, and reconnects after errors.
async fn run(mut eventloop: EventLoop, client: AsyncClient, filter: String, shared: Arc<Shared>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(packet)) => {
                shared.heard();
                match packet {
                    Packet::ConnAck(_) => {
                        lock(&shared.link).subscribed = false;
                        if client
                            .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                            .is_err()
                        {
                            return;
                        }
                    }
                    Packet::SubAck(_) => {
                        lock(&shared.link).subscribed = true;
                        shared.subacked.notify_waiters();
                    }
                    Packet::Publish(publish) => {
                        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                        shared.deliver(&topic, publish.payload.to_vec());
                    }
                    Packet::Disconnect(_) => {
                        lock(&shared.link).subscribed = false;
                        tracing::warn!(inbox = %shared.name, "the broker disconnected the inbox");
                    }
                    _ => {}
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(ConnectionError::RequestsDone) => return,
            Err(err) => {
                lock(&shared.link).subscribed = false;
                tracing::debug!(inbox = %shared.name, error = %err, "inbox connection error; reconnecting");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            topics: InvokeTopics::default(),
            name: InboxName::parse("tether-invoke-abc").unwrap(),
            waiting: Mutex::default(),
            link: Mutex::default(),
            subacked: Notify::new(),
        }
    }

    fn wait(shared: &Shared, id: &str, device: &str) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&shared.waiting).insert(
            RequestId::parse(id).unwrap(),
            Waiter {
                device: DeviceId::parse(device).unwrap(),
                reply: tx,
            },
        );
        rx
    }

    #[test]
    fn a_reply_reaches_the_call_of_its_request_and_device_only() {
        let shared = shared();
        let mut r1 = wait(&shared, "r1", "dev-1");
        // Another device answering r1, another inbox, a request no one waits for: ignored.
        shared.deliver(
            "tether/replies/dev-2/r1/tether-invoke-abc",
            b"forged".to_vec(),
        );
        shared.deliver(
            "tether/replies/dev-1/r1/tether-invoke-xyz",
            b"other".to_vec(),
        );
        shared.deliver(
            "tether/replies/dev-1/r9/tether-invoke-abc",
            b"nobody".to_vec(),
        );
        shared.deliver("tether/replies/dev-1/r1", b"rule path".to_vec());
        assert!(r1.try_recv().is_err());
        assert_eq!(lock(&shared.waiting).len(), 1);

        let to_r1 = "tether/replies/dev-1/r1/tether-invoke-abc";
        shared.deliver(to_r1, b"progress".to_vec());
        shared.deliver(to_r1, b"answer".to_vec());
        assert_eq!(r1.try_recv().unwrap(), b"progress");
        assert_eq!(r1.try_recv().unwrap(), b"answer");
        // The call is removed when its claim ends, not by a message.
        assert_eq!(lock(&shared.waiting).len(), 1);
    }

    #[test]
    fn endpoints_are_mqtt_and_websocket_urls() {
        assert_eq!(
            Endpoint::parse("mqtt://127.0.0.1:1883").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(
            Endpoint::parse("ws://127.0.0.1:8083/mqtt").unwrap(),
            Endpoint::Ws {
                url: "ws://127.0.0.1:8083/mqtt".into(),
                port: 8083
            }
        );
        assert_eq!(
            Endpoint::parse("wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt").unwrap(),
            Endpoint::Wss {
                url: "wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt".into(),
                port: 443
            }
        );
        for bad in [
            "127.0.0.1:1883",
            "mqtt://x",
            "mqtt://x:1/path",
            "mqtt://:1",
            "mqtt://x:y",
            "http://x/mqtt",
            "wss:///mqtt",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_presigned_url_signs_only_the_host_for_iot_and_appends_the_token() {
        use aws_credential_types::Credentials;
        let signer = Presigner::new(
            "eu-west-1",
            SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                Some("token/with+chars=".into()),
                None,
                "test",
            )),
        );
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let url = signer
            .presigned("wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt", time)
            .await
            .unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt");
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .map(|p| p.split_once('=').unwrap())
            .collect();
        let get = |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20150830%2Feu-west-1%2Fiotdevicegateway%2Faws4_request")
        );
        assert_eq!(get("X-Amz-Date"), Some("20150830T123600Z"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(get("X-Amz-Expires"), Some("300"));
        assert_eq!(get("X-Amz-Signature").map(str::len), Some(64));
        // The token comes last, after the signature, encoded.
        assert_eq!(
            pairs.last(),
            Some(&("X-Amz-Security-Token", "token%2Fwith%2Bchars%3D"))
        );
        // Another time, another signature.
        let later = signer
            .presigned(
                "wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt",
                time + Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_ne!(later, url);
    }

    /// A thawed instance (the broker not heard from for longer than the keep-alive) proves its
    /// connection before a call relies on it; while the broker is away no call relies on it,
    /// and once the inbox is back calls do again. Against local-iot's broker, over WebSocket.
    #[tokio::test]
    async fn a_quiet_connection_is_proven_before_use_and_a_lost_one_is_not_used() {
        let iot = tether_local_iot::LocalIot::start(tether_local_iot::Config::default())
            .await
            .unwrap();
        let ws = format!("ws://{}/mqtt", iot.ws_addr().unwrap());
        let inbox = Inbox::open(
            &Endpoint::parse(&ws).unwrap(),
            None,
            InvokeTopics::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let (id, device) = (RequestId::random(), DeviceId::parse("dev-1").unwrap());
        let probe = Duration::from_millis(500);
        assert!(inbox.listen(&id, &device, probe).await.is_some());

        // As after a freeze: silent for longer than the keep-alive. The probe's SUBACK proves
        // the connection, and counts as hearing from the broker.
        lock(&inbox.shared.link).heard = Instant::now().checked_sub(KEEP_ALIVE * 2);
        assert!(inbox.listen(&id, &device, probe).await.is_some());
        assert!(lock(&inbox.shared.link).heard.unwrap().elapsed() < KEEP_ALIVE);

        // The broker drops every client and refuses them for a while: not relied on meanwhile.
        let outage = tokio::spawn({
            let iot = std::sync::Arc::new(iot);
            let during = std::sync::Arc::clone(&iot);
            async move {
                during.outage(Duration::from_secs(2)).await.unwrap();
                iot
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(inbox.listen(&id, &device, probe).await.is_none());
        let iot = outage.await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if inbox.listen(&id, &device, probe).await.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(back.is_ok(), "the inbox did not come back after the outage");
        drop(iot);
    }
}
