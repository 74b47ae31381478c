//! Echoes through drawbridge's server-side TLS (rustls's unbuffered API, pooled buffers) against
//! the same echo through tokio-rustls's server stream (rustls's buffered connection), over real
//! loopback sockets in one single-threaded runtime, so each figure is the CPU of both ends.
//!
//! Run: `cargo bench --bench tls`
//!
//! Compare the two within one run: `tls/<size>/unbuffered` against `tls/<size>/tokio_rustls`.
//! 1 KiB is one record each way (the websocket echo row of `benches/e2e`); 64 KiB is four full
//! records each way, where the unbuffered stream takes all four in one `recv` and tokio-rustls
//! reads 4 KiB at a time.
//!
//! Medians from `cargo bench --bench tls` on 2026-12-07, 2 vCPU x86_64 (shared), Rust 1.95:
//!
//! | echo   | unbuffered | tokio_rustls | ratio |
//! |--------|-----------:|-------------:|------:|
//! | 1 KiB  | 17.2 µs    | 16.7 µs      | 1.03  |
//! | 64 KiB | 156 µs     | 182 µs       | 0.86  |
//!
//! The 1 KiB pair is within the spread of repeated runs (the first run gave 17.40 against
//! 17.29 µs); `perf record` of both shows the stream's own code at about 1 % of the CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Client = tokio_rustls::client::TlsStream<TcpStream>;

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Echoes everything back until the client leaves.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A client connected to an echo server of the kind `unbuffered` names.
async fn connect(unbuffered: bool) -> Client {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        if unbuffered {
            echo(drawbridge::bench::accept_tls(tcp, server).await.unwrap()).await;
        } else {
            let acceptor = tokio_rustls::TlsAcceptor::from(server);
            echo(acceptor.accept(tcp).await.unwrap()).await;
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tls");
    for size in [1024usize, 64 * 1024] {
        group.throughput(Throughput::Bytes(size as u64));
        for (name, unbuffered) in [("unbuffered", true), ("tokio_rustls", false)] {
            let mut client = rt.block_on(connect(unbuffered));
            let message = vec![7u8; size];
            let mut back = vec![0u8; size];
            group.bench_function(BenchmarkId::new(format!("{}KiB", size / 1024), name), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iters {
                            client.write_all(&message).await.unwrap();
                            client.read_exact(&mut back).await.unwrap();
                        }
                        started.elapsed()
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
