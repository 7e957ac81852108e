#![no_main]
//! See `causeway::fuzzing::component_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway::fuzzing::component_stream(data));
