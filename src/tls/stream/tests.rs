//! The unbuffered TLS stream against rustls's own buffered client (through tokio-rustls), over
//! real sockets, with a certificate made for the test.

use std::io::Write as _;
use std::task::Waker;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

type Client = tokio_rustls::client::TlsStream<TcpStream>;

struct Certs {
    server: Arc<ServerConfig>,
    roots: RootCertStore,
}

fn certs() -> Certs {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    Certs {
        server: Arc::new(server),
        roots,
    }
}

fn client_config(certs: &Certs, version: &'static SupportedProtocolVersion) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(certs.roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A listener whose first connection runs drawbridge's side of a handshake.
async fn accepting(
    certs: &Certs,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<io::Result<TlsStream>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = certs.server.clone();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsStream::accept(tcp, server).await
    });
    (addr, accepted)
}

/// A handshaken pair: drawbridge's end and a tokio-rustls client.
async fn pair(version: &'static SupportedProtocolVersion) -> (TlsStream, Client) {
    let certs = certs();
    let (addr, accepted) = accepting(&certs).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(&certs, version));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    (accepted.await.unwrap().unwrap(), client)
}

/// One read of `stream` into `buf`, polled once with a waker that does nothing.
fn read_once(stream: &mut TlsStream, buf: &mut [u8]) -> Poll<io::Result<()>> {
    let mut buf = ReadBuf::new(buf);
    Pin::new(stream).poll_read(&mut Context::from_waker(Waker::noop()), &mut buf)
}

/// What the server holds while a read waits: (receive, send) buffer bytes allocated.
fn held(stream: &TlsStream) -> (usize, usize) {
    (stream.rx.mem.len(), stream.tx.mem.len())
}

#[tokio::test]
async fn bytes_cross_both_ways_under_tls13_and_tls12_and_alpn_is_negotiated() {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (mut server, mut client) = pair(version).await;
        assert_eq!(server.session().protocol_version(), Some(version.version));
        assert_eq!(server.session().alpn_protocol(), Some(&b"http/1.1"[..]));
        let message: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = message.clone();
        let writer = tokio::spawn(async move {
            // Odd sizes, so records and reads never line up.
            for chunk in sent.chunks(7_919) {
                client.write_all(chunk).await.unwrap();
            }
            client.flush().await.unwrap();
            let mut back = vec![0u8; sent.len()];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, sent);
            client
        });
        let mut got = vec![0u8; message.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message);
        for chunk in got.chunks(100_003) {
            server.write_all(chunk).await.unwrap();
        }
        server.flush().await.unwrap();
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffer() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    client.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    server.write_all(b"world").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"world");
    // A read now waits on the socket, as every open tunnel's does.
    let mut idle = [0u8; 128];
    assert!(read_once(&mut server, &mut idle).is_pending());
    assert_eq!(held(&server), (0, 0));
    assert!(server.plain.capacity() == 0);
}

// The hand-driven client blocks its thread: the server runs on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_record_is_kept_at_its_own_size_then_completed() {
    let certs = certs();
    let (addr, accepted) = accepting(&certs).await;
    // A client of rustls's own, driven by hand, so a record can be sent in pieces.
    let mut conn = ClientConnection::new(
        client_config(&certs, &rustls::version::TLS13),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let mut server = accepted.await.unwrap().unwrap();
    conn.writer().write_all(&[7u8; 1000]).unwrap();
    let mut record = Vec::new();
    conn.write_tls(&mut record).unwrap();
    tcp.write_all(&record[..100]).unwrap();
    tcp.flush().unwrap();

    let mut buf = vec![0u8; 2000];
    for _ in 0..100 {
        assert!(read_once(&mut server, &mut buf).is_pending());
        if server.rx.len() == 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The 100 bytes, not a pooled buffer.
    assert_eq!(held(&server), (100, 0));

    tcp.write_all(&record[100..]).unwrap();
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], &[7u8; 1000][..]);
}

#[tokio::test]
async fn a_small_reader_gets_a_record_over_several_reads() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    let message: Vec<u8> = (0..1024u32).map(|i| (i % 256) as u8).collect();
    client.write_all(&message).await.unwrap();
    let mut got = Vec::new();
    let mut small = [0u8; 128];
    while got.len() < message.len() {
        let n = server.read(&mut small).await.unwrap();
        assert!(n > 0 && n <= 128);
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, message);
}

#[tokio::test]
async fn four_full_records_arrive_in_one_read() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    let message = vec![9u8; 64 * 1024];
    client.write_all(&message).await.unwrap();
    client.flush().await.unwrap();
    // Wait until all of it is in the socket, then read once.
    for _ in 0..200 {
        let mut peek = vec![0u8; 70 * 1024];
        if server.tcp.peek(&mut peek).await.unwrap() >= 64 * 1024 + 4 * 22 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut buf = vec![0u8; 64 * 1024];
    assert_eq!(server.read(&mut buf).await.unwrap(), 64 * 1024);
    assert_eq!(buf, message);
}

#[tokio::test]
async fn close_notify_is_a_clean_end_and_a_bare_fin_is_not() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    client.write_all(b"last").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last");

    let (mut server, client) = pair(&rustls::version::TLS13).await;
    let (mut tcp, _) = client.into_inner();
    // A FIN with no close_notify before it (dropping the socket could reset it instead).
    tcp.shutdown().await.unwrap();
    let error = server.read(&mut [0u8; 16]).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn shutdown_sends_close_notify_the_client_reads_as_a_clean_end() {
    let (mut server, mut client) = pair(&rustls::version::TLS12).await;
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    // tokio-rustls fails this read with UnexpectedEof if no close_notify came.
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye");
    assert!(server.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn a_forged_record_fails_the_read_and_the_client_gets_an_alert() {
    // TLS 1.2, whose record header shows an alert as one (TLS 1.3 hides it as application data).
    let (mut server, client) = pair(&rustls::version::TLS12).await;
    let (mut tcp, _) = client.into_inner();
    // An application-data record whose tag cannot verify.
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    forged.extend_from_slice(&[0xAB; 32]);
    tcp.write_all(&forged).await.unwrap();
    let error = server.read(&mut [0u8; 16]).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    // The alert record (content type 21), then the end.
    drop(server);
    let mut back = Vec::new();
    let _ = tcp.read_to_end(&mut back).await;
    assert_eq!(back.first(), Some(&0x15), "{back:?}");
}

#[tokio::test]
async fn a_client_that_is_not_tls_fails_the_handshake() {
    let certs = certs();
    let (addr, accepted) = accepting(&certs).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let error = accepted.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);

    // And one that leaves half-way.
    let (addr, accepted) = accepting(&certs).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    drop(tcp);
    let error = accepted.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn vectored_writes_gather_small_slices_into_one_record() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
    let slices = [io::IoSlice::new(head), io::IoSlice::new(b"hello")];
    let n = server.write_vectored(&slices).await.unwrap();
    assert_eq!(n, head.len() + 5);
    server.flush().await.unwrap();
    let mut got = vec![0u8; n];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..head.len()], head);
    assert_eq!(&got[head.len()..], b"hello");
}
