//! Entry points for the fuzz targets (`fuzz/`) and their corpus tests: the stream codec
//! driven with arbitrary bytes, as the XMPP server's side of the link would send them.

use tokio_xmpp::Stanza;

use super::codec::{self, Frame, Framer, Incoming, ParseCache};

/// Feed `data` to the codec as a stream arriving in pieces (the first byte sets their
/// size), parsing every element it cuts out. Every stanza it accepts must write out as XML
/// that it reads back as the same kind of stanza: what the gateway sends on is never
/// something it could not read itself.
pub fn stream(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut framer = Framer::default();
    let mut cache = ParseCache::default();
    for piece in data.chunks(step) {
        framer.buffer(piece.len()).extend_from_slice(piece);
        loop {
            match framer.next_frame() {
                Err(_) | Ok(Some(Frame::End)) => return,
                Ok(None) => break,
                Ok(Some(Frame::Header(xml))) => {
                    let _ = codec::header_id(xml);
                }
                Ok(Some(Frame::Element(xml))) => {
                    let xml = xml.to_vec();
                    match codec::parse(&xml, &mut cache) {
                        Err(_) => return,
                        Ok(Incoming::Stanza(stanza)) => written_and_read_back(&stanza),
                        Ok(_) => {}
                    }
                }
            }
        }
    }
}

/// One top-level element, as the stream would hand it to the gateway core.
pub fn stanza(xml: &[u8]) -> Option<Stanza> {
    match codec::parse(xml, &mut ParseCache::default()) {
        Ok(Incoming::Stanza(stanza)) => Some(stanza),
        _ => None,
    }
}

fn written_and_read_back(stanza: &Stanza) {
    let mut out = Vec::new();
    codec::write_stanza(&mut out, stanza);
    let again = codec::parse(&out, &mut ParseCache::default());
    let same_kind = matches!(
        (stanza, &again),
        (Stanza::Message(_), Ok(Incoming::Stanza(Stanza::Message(_))))
            | (
                Stanza::Presence(_),
                Ok(Incoming::Stanza(Stanza::Presence(_)))
            )
            | (Stanza::Iq(_), Ok(Incoming::Stanza(Stanza::Iq(_))))
    );
    assert!(
        same_kind,
        "a stanza written out does not read back as one: {} -> {again:?}",
        String::from_utf8_lossy(&out)
    );
}
