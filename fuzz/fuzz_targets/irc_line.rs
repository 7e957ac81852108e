#![no_main]
//! See `causeway_irc::fuzzing::line`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_irc::fuzzing::line(data));
