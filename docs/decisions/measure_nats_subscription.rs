// Measures the RSS an async-nats subscription costs a client (docs/decisions/bus-interest.md).
// Build it as a one-file crate with async-nats 0.51 (features ["ring"]), tokio (rt, macros,
// time) and futures-util; run: `measure <nats-url> <subscriptions> <subscription_capacity>`.
use futures_util::stream::{SelectAll, StreamExt};
fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let cap: usize = std::env::args().nth(3).unwrap().parse().unwrap();
    let client = async_nats::ConnectOptions::new().subscription_capacity(cap).connect(url).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = rss_kb();
    let mut all = SelectAll::new();
    for i in 0..n {
        all.push(client.subscribe(format!("rc.v1.app.t.{i:08x}")).await.unwrap());
    }
    client.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after = rss_kb();
    println!("n={n} cap={cap} rss_before_kb={before} rss_after_kb={after} bytes_per_sub={}", (after - before) * 1024 / n as u64);
    let _ = all.next().now_or_never();
}
use futures_util::FutureExt;
