//! Which process answers on a port: a free port for a server the harness starts, the check
//! before it starts that nobody listens there yet, and the check after it starts that every
//! socket listening there belongs to the process it started.
//!
//! Responsibility: fail a run at once when another service holds or answers on the port
//! (such a run once measured another server's 404s for 70 s). Must not: start or stop
//! processes.
//!
//! How ownership is decided: `/proc/net/tcp` and `/proc/net/tcp6` list every listening
//! socket of this network namespace with its inode; `/proc/<pid>/fd` links to
//! `socket:[<inode>]` for each socket the process holds. A listener that can take a
//! connection to `127.0.0.1:<port>` (bound to 127.0.0.1, 0.0.0.0, `::` or
//! `::ffff:127.0.0.1`) and is not among the started process's sockets is someone else's.

use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// `st` of a listening socket in `/proc/net/tcp` (`TCP_LISTEN`).
const TCP_LISTEN_STATE: &str = "0A";
/// How long the pre-start probe waits for a connection to a port that should be free.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A port nobody listens on now (the kernel's choice for port 0). The server started on
/// it is checked with [`verify_owner`] afterwards, which catches another process taking
/// the port in between.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Fails when something already listens on `address` (before the harness starts a server
/// there), naming the holder when `/proc` shows it.
pub fn ensure_free(address: SocketAddr, what: &str) -> anyhow::Result<()> {
    let held = match TcpListener::bind(address) {
        Ok(probe) => {
            drop(probe);
            TcpStream::connect_timeout(&address, PROBE_TIMEOUT).is_ok()
        }
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => true,
        Err(error) => {
            return Err(error).with_context(|| format!("check that {address} is free"));
        }
    };
    if held {
        let holders = describe_holders(&listeners(address), &BTreeSet::new());
        bail!(
            "{address} is already in use{holders}: the {what} the harness would start there \
             could not listen, and the run would measure whatever answers instead; stop that \
             process or pick another --port (0, the default, picks a free port)"
        );
    }
    Ok(())
}

/// Fails unless process `pid` (the started `name`) holds every socket listening on
/// `address`, and at least one.
pub fn verify_owner(pid: u32, name: &str, address: SocketAddr) -> anyhow::Result<()> {
    let listening = listeners(address);
    let owned = socket_inodes(pid);
    if listening.is_empty() {
        bail!("nothing listens on {address} although it accepted a connection (the /proc/net tables are unreadable?); refusing to measure an unknown server");
    }
    let foreign: BTreeSet<u64> = listening.difference(&owned).copied().collect();
    if !foreign.is_empty() {
        bail!(
            "another process answers on {address}{}: the started {name} (pid {pid}) is not the \
             only listener, so the run would measure something else; stop that process or \
             pick another --port (0, the default, picks a free port)",
            describe_holders(&foreign, &owned)
        );
    }
    Ok(())
}

/// Inodes of the listening sockets that take connections to `address`.
fn listeners(address: SocketAddr) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(parse_listeners(&text, address));
        }
    }
    inodes
}

/// The inodes of `/proc/net/tcp{,6}` rows in the LISTEN state that would accept a
/// connection to `address` (same port; same address, or a wildcard).
fn parse_listeners(table: &str, address: SocketAddr) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != TCP_LISTEN_STATE {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            if u16::from_str_radix(port, 16).ok()? != address.port() {
                return None;
            }
            if !accepts_for(parse_address(ip)?, address.ip()) {
                return None;
            }
            inode.parse().ok()
        })
        .collect()
}

/// A `/proc/net/tcp{,6}` address: 8 or 32 hex digits, each 32-bit word in host order.
fn parse_address(hex: &str) -> Option<IpAddr> {
    let words: Vec<[u8; 4]> = (0..hex.len() / 8)
        .map(|word| {
            u32::from_str_radix(hex.get(word * 8..word * 8 + 8)?, 16)
                .ok()
                .map(u32::to_ne_bytes)
        })
        .collect::<Option<_>>()?;
    match (hex.len(), words.as_slice()) {
        (8, [word]) => Some(IpAddr::V4(Ipv4Addr::from(*word))),
        (32, [a, b, c, d]) => {
            let mut bytes = [0u8; 16];
            for (index, word) in [a, b, c, d].into_iter().enumerate() {
                bytes[index * 4..index * 4 + 4].copy_from_slice(word);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Whether a listener bound to `bound` takes connections to `target`.
fn accepts_for(bound: IpAddr, target: IpAddr) -> bool {
    let bound = match bound {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    bound == target || bound.is_unspecified()
}

/// Inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let link = std::fs::read_link(entry.path()).ok()?;
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// ` (held by pid 123 `name`)` for the processes this user may inspect that hold one of
/// `inodes`; empty when none is visible (another user's process, another namespace).
fn describe_holders(inodes: &BTreeSet<u64>, skip: &BTreeSet<u64>) -> String {
    let wanted: BTreeSet<u64> = inodes.difference(skip).copied().collect();
    if wanted.is_empty() {
        return String::new();
    }
    let mut holders = Vec::new();
    if let Ok(processes) = std::fs::read_dir("/proc") {
        for process in processes.flatten() {
            let Some(pid) = process
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if socket_inodes(pid).intersection(&wanted).next().is_some() {
                let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|text| text.trim().to_string())
                    .unwrap_or_default();
                holders.push(format!("pid {pid} `{command}`"));
            }
        }
    }
    if holders.is_empty() {
        String::new()
    } else {
        format!(" (held by {})", holders.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK_8080: &str = "127.0.0.1:8080";
    const LISTEN: &str = "0A";
    const ESTABLISHED: &str = "01";

    /// A `/proc/net/tcp{,6}` table: header, then one row per (local, remote, state, inode).
    fn table(rows: &[(&str, &str, &str, u64)]) -> String {
        let mut text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string();
        for (slot, (local, remote, state, inode)) in rows.iter().enumerate() {
            text.push_str(&format!(
                "   {slot}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0 100 0 0 10 0\n"
            ));
        }
        text
    }

    /// An IPv4 address as the kernel prints it (host-order word).
    fn word(bytes: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(bytes))
    }

    #[test]
    fn listening_rows_on_the_port_and_a_matching_address_are_found() {
        // 127.0.0.1:8080 (0x1F90) and 0.0.0.0:8080 listening; 127.0.0.2:8080 listening; an
        // established connection from 127.0.0.1:8080; a listener on another port.
        let loopback = word([127, 0, 0, 1]);
        let on = |ip: &str, port: &str| format!("{ip}:{port}");
        let (any, other) = (word([0, 0, 0, 0]), word([127, 0, 0, 2]));
        let text = table(&[
            (&on(&loopback, "1F90"), &on(&any, "0000"), LISTEN, 111),
            (&on(&any, "1F90"), &on(&any, "0000"), LISTEN, 222),
            (&on(&other, "1F90"), &on(&any, "0000"), LISTEN, 333),
            (
                &on(&loopback, "1F90"),
                &on(&loopback, "D431"),
                ESTABLISHED,
                444,
            ),
            (&on(&loopback, "1F91"), &on(&any, "0000"), LISTEN, 555),
        ]);
        let address: SocketAddr = LOOPBACK_8080.parse().unwrap();
        assert_eq!(parse_listeners(&text, address), vec![111, 222]);
    }

    #[test]
    fn ipv6_wildcard_and_mapped_loopback_listeners_count_for_an_ipv4_target() {
        let wildcard = "0".repeat(32);
        let mapped = [
            word([0, 0, 0, 0]),
            word([0, 0, 0, 0]),
            word([0, 0, 0xff, 0xff]),
            word([127, 0, 0, 1]),
        ]
        .concat();
        let v6_loopback = format!("{}{}", "0".repeat(24), word([0, 0, 0, 1]));
        let remote = format!("{wildcard}:0000");
        let text = table(&[
            (&format!("{wildcard}:1F90"), &remote, LISTEN, 10),
            (&format!("{mapped}:1F90"), &remote, LISTEN, 20),
            (&format!("{v6_loopback}:1F90"), &remote, LISTEN, 30),
        ]);
        let address: SocketAddr = LOOPBACK_8080.parse().unwrap();
        assert_eq!(parse_listeners(&text, address), vec![10, 20]);
    }

    #[test]
    fn a_port_held_by_a_listener_is_refused_before_start() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = held.local_addr().unwrap();
        let error = ensure_free(address, "ringcast").unwrap_err().to_string();
        assert!(error.contains("already in use"), "{error}");
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "the holder (this test) is named: {error}"
        );
        // No "free once closed" check here: the moment `held` closes, the ephemeral port may
        // be taken again by any socket of this machine (another test's client connection
        // got it in a CI run: bind then fails with AddrInUse and no listener to name).
    }

    #[test]
    fn only_the_process_holding_the_listener_passes_the_ownership_check() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        verify_owner(std::process::id(), "this test", address).expect("this process listens");
        // A process that exists but holds no socket: what the harness sees when the server
        // it started lost the port to another service.
        let mut bystander = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep starts");
        let error = verify_owner(bystander.id(), "ringcast", address)
            .unwrap_err()
            .to_string();
        bystander.kill().ok();
        bystander.wait().ok();
        assert!(error.contains("another process answers"), "{error}");
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(listener);
        assert!(
            verify_owner(std::process::id(), "this test", address).is_err(),
            "nobody listens any more"
        );
    }
}
