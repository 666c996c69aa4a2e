//! The bus wire format: the binary publication message and the JSON control messages
//! (subjects: [`crate::cluster::subjects`]). Sans-IO; decoding never panics on any input
//! (another node, or anyone able to publish on the prefix, may send garbage: it is
//! counted and ignored).
//!
//! A publication carries the plain WebSocket frame as built by the publishing worker (and
//! its deflated twin): the receiving node queues the very same bytes to its subscribers.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Format version of publication messages; others are ignored.
const PUBLICATION_VERSION: u8 = 1;
const FLAG_DEFLATED: u8 = 1;

/// A publication as it crosses the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusPublication {
    pub origin: String,
    pub app: String,
    pub topic: String,
    pub plain: Bytes,
    pub deflated: Option<Bytes>,
}

/// Encodes: version, flags, then length-prefixed origin (u8), app (u8), topic (u16),
/// plain frame (u32) and, when flagged, the deflated frame (u32).
pub fn encode_publication(
    origin: &str,
    app: &str,
    topic: &str,
    plain: &[u8],
    deflated: Option<&[u8]>,
) -> Bytes {
    let size = 16 + origin.len() + app.len() + topic.len() + plain.len();
    let mut out = BytesMut::with_capacity(size + deflated.map_or(0, |d| d.len()));
    out.put_u8(PUBLICATION_VERSION);
    out.put_u8(if deflated.is_some() { FLAG_DEFLATED } else { 0 });
    out.put_u8(origin.len().min(255) as u8);
    out.put_slice(&origin.as_bytes()[..origin.len().min(255)]);
    out.put_u8(app.len().min(255) as u8);
    out.put_slice(&app.as_bytes()[..app.len().min(255)]);
    out.put_u16(topic.len() as u16);
    out.put_slice(topic.as_bytes());
    out.put_u32(plain.len() as u32);
    out.put_slice(plain);
    if let Some(deflated) = deflated {
        out.put_u32(deflated.len() as u32);
        out.put_slice(deflated);
    }
    out.freeze()
}

/// Reads a publication; `None` for anything malformed. The frames share `message`'s buffer.
pub fn decode_publication(message: &Bytes) -> Option<BusPublication> {
    let mut reader = Reader {
        bytes: message,
        at: 0,
    };
    if reader.u8()? != PUBLICATION_VERSION {
        return None;
    }
    let flags = reader.u8()?;
    let origin_len = reader.u8()? as usize;
    let origin = reader.text(origin_len)?;
    let app_len = reader.u8()? as usize;
    let app = reader.text(app_len)?;
    let topic_len = reader.u16()? as usize;
    let topic = reader.text(topic_len)?;
    let plain_len = reader.u32()? as usize;
    let plain = reader.slice(plain_len)?;
    let deflated = if flags & FLAG_DEFLATED != 0 {
        let len = reader.u32()? as usize;
        Some(reader.slice(len)?)
    } else {
        None
    };
    (reader.at == message.len()).then_some(BusPublication {
        origin,
        app,
        topic,
        plain,
        deflated,
    })
}

struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Option<std::ops::Range<usize>> {
        let end = self.at.checked_add(len)?;
        if end > self.bytes.len() {
            return None;
        }
        let range = self.at..end;
        self.at = end;
        Some(range)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes[self.take(1)?.start])
    }
    fn u16(&mut self) -> Option<u16> {
        let range = self.take(2)?;
        Some(u16::from_be_bytes(self.bytes[range].try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        let range = self.take(4)?;
        Some(u32::from_be_bytes(self.bytes[range].try_into().ok()?))
    }
    fn text(&mut self, len: usize) -> Option<String> {
        let range = self.take(len)?;
        String::from_utf8(self.bytes[range].to_vec()).ok()
    }
    fn slice(&mut self, len: usize) -> Option<Bytes> {
        let range = self.take(len)?;
        Some(self.bytes.slice(range))
    }
}

/// A node's arrival (`hello`), or an answer to one (`here`) from a node with the same
/// number: how two nodes configured with one `nodeNumber` find out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// `server.cluster.name`.
    pub node: String,
    /// `server.cluster.nodeNumber`.
    pub number: u16,
    /// This process (a restarted node is a new instance).
    pub instance: u64,
    /// `false` for a hello, `true` for the answer (never answered again).
    #[serde(default)]
    pub answer: bool,
}

/// Close one connection on the node holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminateRequest {
    pub app: String,
    pub connection: String,
}

/// Admin calls every node acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Admin {
    TerminateApp {
        origin: String,
        app: String,
    },
    Unsubscribe {
        origin: String,
        app: String,
        subject: String,
        patterns: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_round_trip() {
        for deflated in [None, Some(&b"\xc2\x05abcde"[..])] {
            let bytes = encode_publication("node-a", "app1", "chat/1", b"\x81\x02{}", deflated);
            let decoded = decode_publication(&bytes).unwrap();
            assert_eq!(decoded.origin, "node-a");
            assert_eq!(decoded.app, "app1");
            assert_eq!(decoded.topic, "chat/1");
            assert_eq!(&decoded.plain[..], b"\x81\x02{}");
            assert_eq!(decoded.deflated.as_deref(), deflated);
        }
    }

    #[test]
    fn malformed_publications_are_refused_at_every_cut() {
        let bytes = encode_publication("n", "a", "t", b"frame", Some(b"z"));
        for cut in 0..bytes.len() {
            assert_eq!(decode_publication(&bytes.slice(..cut)), None, "cut {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(decode_publication(&Bytes::from(longer)), None);
        let mut version = bytes.to_vec();
        version[0] = 9;
        assert_eq!(decode_publication(&Bytes::from(version)), None);
    }

    #[test]
    fn control_messages_are_json() {
        let hello = Hello {
            node: "a".into(),
            number: 3,
            instance: 7,
            answer: false,
        };
        let text = serde_json::to_string(&hello).unwrap();
        assert_eq!(serde_json::from_str::<Hello>(&text).unwrap(), hello);
        let admin: Admin =
            serde_json::from_str(r#"{"op":"terminate_app","origin":"a","app":"x"}"#).unwrap();
        assert_eq!(
            admin,
            Admin::TerminateApp {
                origin: "a".into(),
                app: "x".into()
            }
        );
    }
}
