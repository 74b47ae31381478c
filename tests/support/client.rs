//! Real clients: HTTP/1.1 and HTTP/2 over rustls trusting the test CA, raw TLS streams, plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::certs::Issued;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A rustls client config trusting `ca_pem`, optionally presenting a client certificate.
pub fn tls_config(ca_pem: &str, client_cert: Option<&Issued>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A pooled HTTPS client; `h2` forces HTTP/2 (ALPN h2), otherwise HTTP/1.1.
pub fn https(ca_pem: &str, h2: bool) -> HttpsClient {
    // hyper-rustls sets ALPN itself from the enabled versions.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(tls_config(ca_pem, None, &[])))
        .https_only();
    let connector = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(connector)
}

/// A TLS connection to `addr` (SNI `localhost`).
pub async fn connect_tls(
    addr: SocketAddr,
    ca_pem: &str,
    client_cert: Option<&Issued>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = TlsConnector::from(tls_config(ca_pem, client_cert, alpn));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The serial number of the certificate the server presented.
pub fn peer_serial(stream: &TlsStream<TcpStream>) -> u64 {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server sent a certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let bytes = cert.raw_serial();
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// An HTTP/1.1 connection over an existing stream, kept open for several requests.
pub async fn h1_over<S>(stream: S) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/2 connection over an existing stream, and the task driving it.
pub async fn h2_over<S, B>(
    stream: S,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

/// An HTTP/2 connection over TLS (ALPN h2) to `addr`.
pub async fn h2<B>(addr: SocketAddr, ca_pem: &str) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = connect_tls(addr, ca_pem, None, &[b"h2"]).await.unwrap();
    h2_over(tls).await.0
}

/// A GET over plain HTTP; `(status, body)`, or `(0, error)` when the connection fails.
pub async fn get_text(url: &str) -> (u16, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    match client.get(url.parse().unwrap()).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The status code of a raw HTTP/1.1 answer (`HTTP/1.1 200 OK...`).
pub fn status_of(answer: &str) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// Reads a whole response body as JSON.
pub async fn json(resp: http::Response<hyper::body::Incoming>) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

/// A request with a body.
pub fn request(method: &str, url: &str, body: impl Into<Bytes>) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body.into()))
        .unwrap()
}
