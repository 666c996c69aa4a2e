//! Bounded inflate of permessage-deflate messages (`protocol::deflate::Inflater`).
//!
//! Input: byte 0 picks the bound; the rest is a compressed message body (sync tail
//! stripped, as on the wire). Checks: no panic; the output never exceeds the bound; the
//! same inflater gives the same answer twice (each message starts from a clean state);
//! what inflates within the bound also inflates, identically, with a larger bound.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::deflate::Inflater;

const BOUNDS: [usize; 4] = [0, 1, 1000, 65_536];

thread_local! {
    /// Reused across inputs, as a worker reuses its one inflater for every connection.
    static INFLATER: RefCell<Inflater> = RefCell::new(Inflater::default());
}

fuzz_target!(|data: &[u8]| {
    let [selector, compressed @ ..] = data else {
        return;
    };
    let bound = BOUNDS[usize::from(selector & 3)];
    INFLATER.with(|inflater| {
        let mut inflater = inflater.borrow_mut();
        let first = inflater.inflate(compressed, bound).map(<[u8]>::to_vec);
        if let Ok(output) = &first {
            assert!(
                output.len() <= bound,
                "{} bytes over a {bound}-byte bound",
                output.len()
            );
        }
        let second = inflater.inflate(compressed, bound).map(<[u8]>::to_vec);
        assert_eq!(first, second, "the inflater kept state between messages");
        if let Ok(output) = &first {
            let larger = inflater
                .inflate(compressed, bound * 2 + 1024)
                .map(<[u8]>::to_vec);
            assert_eq!(
                larger.as_ref(),
                Ok(output),
                "a larger bound changed the result"
            );
        }
    });
});
