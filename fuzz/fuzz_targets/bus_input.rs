//! Bus input (`cluster::wire` decoding and `cluster::validate`): what any NATS publisher
//! on the cluster's subjects can send a node.
//!
//! Input: byte 0 picks the kind — 0: a publication in the binary layout; 1: a hello;
//! 2: an admin call; 3: a terminate request — the rest is the message. Checks: no panic; a publication that passes validation is one complete,
//! final, unmasked text/binary frame within the bound whose payload is JSON nested at most
//! 128 deep, and its deflated twin (if any) inflates to exactly that payload.
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringcast::cluster::validate::{
    check_admin, check_hello, check_publication, check_terminate, parse_control,
};
use ringcast::cluster::wire::{decode_publication, Admin, Hello, TerminateRequest};
use ringcast::protocol::deflate::Inflater;
use ringcast::protocol::nesting::{nesting_exceeds, MAX_JSON_NESTING};

const MAX_FRAME_BYTES: usize = 4096;

thread_local! {
    static INFLATER: RefCell<Inflater> = RefCell::new(Inflater::default());
    static CHECK: RefCell<Inflater> = RefCell::new(Inflater::default());
}

/// (opcode, payload start) of a frame the validator accepted, re-derived independently.
fn frame_parts(frame: &[u8]) -> (u8, usize) {
    let length = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame[0] & 0x0f, length)
}

fuzz_target!(|data: &[u8]| {
    let [selector, message @ ..] = data else {
        return;
    };
    match selector % 4 {
        0 => {
            let bytes = Bytes::copy_from_slice(message);
            let Some(publication) = decode_publication(&bytes) else {
                return;
            };
            let accepted = INFLATER.with(|inflater| {
                check_publication(&publication, MAX_FRAME_BYTES, &mut inflater.borrow_mut())
            });
            if accepted.is_err() {
                return;
            }
            let plain = &publication.plain;
            assert!(plain.len() <= MAX_FRAME_BYTES);
            assert_eq!(plain[0] & 0xf0, 0x80, "final, no RSV bits");
            assert_eq!(plain[1] & 0x80, 0, "unmasked");
            let (opcode, start) = frame_parts(plain);
            assert!(opcode == 1 || opcode == 2);
            let payload = &plain[start..];
            assert!(!nesting_exceeds(payload, MAX_JSON_NESTING));
            assert!(serde_json::from_slice::<&serde_json::value::RawValue>(payload).is_ok());
            if let Some(twin) = &publication.deflated {
                assert_eq!(twin[0] & 0xf0, 0xc0, "final, RSV1 only");
                let (twin_opcode, twin_start) = frame_parts(twin);
                assert_eq!(twin_opcode, opcode);
                CHECK.with(|inflater| {
                    let mut inflater = inflater.borrow_mut();
                    let inflated = inflater
                        .inflate(&twin[twin_start..], payload.len())
                        .expect("an accepted twin inflates");
                    assert_eq!(inflated, payload);
                });
            }
        }
        1 => {
            if let Ok(hello) = parse_control::<Hello>(message) {
                let _ = check_hello(&hello);
            }
        }
        2 => {
            if let Ok(admin) = parse_control::<Admin>(message) {
                let _ = check_admin(&admin);
            }
        }
        _ => {
            if let Ok(request) = parse_control::<TerminateRequest>(message) {
                let _ = check_terminate(&request);
            }
        }
    }
});
