//! Hostile and careless clients against the real listeners on 127.0.0.1: slow bodies, slow
//! or idle connections, Telegraf batches with string fields, and StatsD floods beyond the
//! socket buffer. Every wait is bounded.

use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::*;

/// Opens a connection, sends the headers of a POST announcing `content_length` bytes, and
/// then sends one byte every `every` until the server answers or closes (or `give_up`).
/// Returns what the server sent back.
async fn dribble(addr: &str, content_length: usize, every: Duration, give_up: Duration) -> String {
    let mut sock = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v2/write HTTP/1.1\r\nhost: x\r\ncontent-length: {content_length}\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.expect("headers");
    let (mut rd, mut wr) = sock.into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(give_up, rd.read_to_end(&mut got)).await;
        String::from_utf8_lossy(&got).into_owned()
    });
    let writer = async {
        let end = Instant::now() + give_up;
        while Instant::now() < end {
            if wr.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::pin!(writer);
    tokio::pin!(reader);
    tokio::select! {
        answer = &mut reader => answer.unwrap_or_default(),
        () = &mut writer => reader.await.unwrap_or_default(),
    }
}

/// Issue 9, item 6: four clients that announce a large body and then send 6 bytes a second
/// took every `max_in_flight` slot (default 4) for as long as they liked, and everyone else
/// got 429. With the default timeouts a normal client gets in within a bounded time while
/// they are still dribbling, and each of them is answered 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_cannot_lock_a_normal_client_out() {
    let s = start(BASIC).await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                dribble(
                    &addr,
                    1_000_000,
                    Duration::from_millis(166),
                    Duration::from_secs(40),
                )
                .await
            })
        })
        .collect();
    // Let them take every slot first.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.shared.in_flight.available_permits() > 0 {
        assert!(Instant::now() < deadline, "the slow clients took no slots");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (code, body) = s.post("/api/v2/write", "", "normal v=1\n").await;
    assert_eq!(
        code, 429,
        "the slow clients hold every slot at first: {body}"
    );

    let started = Instant::now();
    let bound = Duration::from_secs(20);
    let mut last = (0, String::new());
    while started.elapsed() < bound {
        last = s.post("/api/v2/write", "", "normal v=1\n").await;
        if last.0 == 204 {
            break;
        }
        assert_eq!(last.0, 429, "{}", last.1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last.0,
        204,
        "the normal client was locked out for {:?}: {}",
        started.elapsed(),
        last.1
    );
    assert_eq!(s.value("normal_v", &[]), Some(1.0));
    for answer in slow {
        let answer = answer.await.expect("slow client");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""reason":"body_rate""#), "{answer}");
        assert!(
            answer.contains("ingest.http.min_body_rate (4096 bytes/s after 5s)"),
            "{answer}"
        );
    }
    assert_eq!(
        s.shared
            .stats
            .rejected_count(Source::Influx, Reason::BodyRate),
        4
    );
}

/// A body that keeps up the minimum rate but not the whole-body deadline is cut at the
/// deadline; the refusal names the setting and is counted with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_cut_at_its_deadline() {
    let s = start(
        "http: { listen: \"127.0.0.1:0\", body_timeout: 1s, min_body_rate: 10, body_rate_grace: 200ms }",
    )
    .await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let started = Instant::now();
    // 20 bytes a second: above the floor, but 1,000 bytes take far longer than 1 s.
    let answer = dribble(
        &addr,
        1_000,
        Duration::from_millis(50),
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""reason":"body_timeout""#), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        s.shared
            .stats
            .rejected_count(Source::Influx, Reason::BodyTimeout),
        1
    );
    // A prompt request right after is fine.
    assert_eq!(s.post("/api/v2/write", "", "after v=1\n").await.0, 204);
}

/// Connections are bounded (`max_connections`): idle ones and ones that never finish their
/// headers are closed after `header_timeout`, so they cannot hold file descriptors for
/// ever; a stalled header is counted, a quiet keep-alive connection is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_bounded_and_closed() {
    let s =
        start("http: { listen: \"127.0.0.1:0\", header_timeout: 1s, max_connections: 2 }").await;
    let addr = s.url.trim_start_matches("http://").to_string();
    // One connection says nothing, one stalls in the middle of its headers.
    let idle = TcpStream::connect(&addr).await.expect("connect");
    let mut partial = TcpStream::connect(&addr).await.expect("connect");
    partial
        .write_all(b"POST /api/v2/write HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A third connection waits: both connections are taken.
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    third
        .write_all(b"GET /-/healthy HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(400), third.read(&mut buf)).await;
    assert!(early.is_err(), "answered beyond max_connections: {early:?}");

    // After the header timeout both are closed by the server, and the third is served.
    let closed = |mut sock: TcpStream| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest))
            .await
            .map(|r| r.map(|_| rest.len()).unwrap_or(0))
    };
    let (a, b) = tokio::join!(closed(idle), closed(partial));
    assert!(a.is_ok() && b.is_ok(), "not closed: {a:?} {b:?}");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("served once a connection was free")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Counted when the server gives up on the connection, which the client may see first.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.shared.stats.http_rejected_count(Reason::HeaderTimeout) == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled header was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.shared.stats.http_rejected_count(Reason::HeaderTimeout),
        1,
        "the idle connection is not a refusal"
    );
}

/// Issue 9, item 7: a Telegraf batch carrying a line with only string fields (here the
/// `system` plugin's `uptime_format`, as Telegraf sends it) lost the whole request. The
/// line is skipped and counted; every numeric line of the batch is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegraf_batch_with_string_only_lines_keeps_its_numbers() {
    let s = start(BASIC).await;
    let batch = "\
cpu,cpu=cpu-total,host=web1 usage_user=12.5,usage_system=3.25,usage_idle=84.25 1700000000000000000
system,host=web1 load1=0.42,load5=0.37,n_cpus=8i,n_users=2i 1700000000000000000
system,host=web1 uptime_format=\"12 days, 3:04\" 1700000000000000000
system,host=web1 uptime=1047840u 1700000000000000000
docker_container_status,container_name=db,host=web1 state=\"running\",health_status=\"healthy\" 1700000000000000000
mem,host=web1 used_percent=61.5,available=6442450944i,ok=true 1700000000000000000
";
    let (code, body) = s.post("/api/v2/write?precision=ns", "", batch).await;
    assert_eq!((code, body.as_str()), (204, ""));
    let web1 = [("host", "web1")];
    assert_eq!(
        s.store
            .window("cpu_usage_user", &labels(&[("cpu", "cpu-total")]), 0)[0]
            .points[0]
            .value,
        12.5
    );
    assert_eq!(
        s.store.window("system_n_cpus", &labels(&web1), 0)[0].points[0].value,
        8.0
    );
    assert_eq!(
        s.store.window("system_uptime", &labels(&web1), 0)[0].points[0].value,
        1_047_840.0
    );
    assert_eq!(
        s.store.window("mem_ok", &labels(&web1), 0)[0].points[0].value,
        1.0
    );
    assert!(
        s.store
            .window("system_uptime_format", &Labels::new(), 0)
            .is_empty()
    );
    assert!(
        s.store
            .window("docker_container_status_state", &Labels::new(), 0)
            .is_empty()
    );
    assert_eq!(
        s.shared
            .stats
            .skipped_count(Source::Influx, influx::STRING_FIELDS),
        2
    );
    assert_eq!(s.shared.stats.accepted_count(Source::Influx), 11);
    // Published like the other self-metrics.
    let published = s.shared.stats.samples(now_ms(), &[]);
    assert!(
        published
            .iter()
            .any(|p| p.name.as_str() == "telltale_ingest_skipped_total"
                && p.labels.get("source").map(String::as_str) == Some("influx")
                && p.labels.get("reason").map(String::as_str) == Some("string_fields")
                && p.value == 2.0),
        "{published:?}"
    );

    // A refused request counts nothing as skipped: all or nothing holds.
    let (code, _) = s
        .post("/api/v2/write", "", "s,host=a state=\"x\"\nbroken v=\n")
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        s.shared
            .stats
            .skipped_count(Source::Influx, influx::STRING_FIELDS),
        2
    );
}

/// The drops the kernel reports for a UDP socket, by its local port, read by the test
/// itself from `/proc/self/net/udp`: local addresses are `HEXIP:HEXPORT`.
fn kernel_reported_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/self/net/udp").ok()?;
    let port = format!(":{port:04X}");
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        cols.get(1)?
            .ends_with(&port)
            .then(|| cols.get(12)?.parse().ok())
            .flatten()
    })
}

/// Issue 9, item 7: datagrams the kernel drops because the socket's buffer is full were
/// counted nowhere. With a tiny receive buffer forced, a flood from another thread overruns
/// the listener; the published drop count equals what the kernel reports for the socket,
/// and with what was received accounts for every datagram sent.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_kernel_drops_are_published() {
    let s = start(
        "http: { listen: \"127.0.0.1:0\" }\n\
         statsd: { listen: \"127.0.0.1:0\", flush_interval: 50ms, receive_buffer: 1 }\n\
         pushgateway: { republish: 50ms }",
    )
    .await;
    let to = s.udp.expect("udp addr");
    // The buffer is set when the listener starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    let granted = loop {
        if let Some(b) = s.shared.stats.get(statsd::RECEIVE_BUFFER) {
            break b;
        }
        assert!(Instant::now() < deadline, "no receive buffer published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(granted > 0.0 && granted < 65_536.0, "granted {granted}");

    const SENT: u64 = 20_000;
    let sender = std::thread::spawn(move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for i in 0..SENT {
            sock.send_to(format!("flood:1|c|#i:{}", i % 10).as_bytes(), to)
                .expect("send");
        }
    });
    tokio::task::spawn_blocking(move || sender.join())
        .await
        .expect("join")
        .expect("sender");

    // Once the queue is drained, the published count must match the kernel's, and every
    // datagram is either received (one sample each) or dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kernel = kernel_reported_drops(to.port()).expect("socket row in /proc/self/net/udp");
        let published = s.shared.stats.get(statsd::KERNEL_DROPS);
        let received = s.shared.stats.accepted_count(Source::Statsd);
        if published == Some(kernel as f64) && received + kernel == SENT {
            assert!(
                kernel > 0,
                "nothing dropped: the flood did not overrun the buffer"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published {published:?}, kernel {kernel}, received {received} of {SENT}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it reaches the store with the other self-metrics.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.value(statsd::KERNEL_DROPS, &[]).unwrap_or(0.0) == 0.0 {
        assert!(Instant::now() < deadline, "not in the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn drops_are_read_from_the_row_of_the_socket() {
    let table = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5551 2 0000000000000000 0
  101: 0100007F:1FBD 00000000:0000 07 00000000:00001200 00:00000000 00000000     0        0 5552 2 0000000000000000 1234
";
    assert_eq!(statsd::drops_in(table, 5552), Some(1234));
    assert_eq!(statsd::drops_in(table, 5551), Some(0));
    assert_eq!(statsd::drops_in(table, 9), None);
}
