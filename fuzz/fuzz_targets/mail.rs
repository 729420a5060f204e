//! The mail metadata parser and classifier (what the poller writes into a
//! mailed report's manifest, and whether it may answer), then the
//! acknowledgement built from what it found: a hostile message must not
//! panic the parser (nor overflow its stack: the walk is iterative), must
//! stay within its bounds, and must not inject a header or a recipient
//! into the reply.
#![no_main]

use embargo::config::Policy;
use embargo::id::ReportId;
use embargo::mailbox::ack::{Sender, compose};
use embargo::mailbox::message;
use libfuzzer_sys::fuzz_target;

const MAX_FIELD_BYTES: usize = 4096;
const MAX_HEADER_BYTES: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let limits = message::ParseLimits {
        max_field_bytes: MAX_FIELD_BYTES,
        max_header_bytes: MAX_HEADER_BYTES,
        max_mime_depth: 8,
        max_mime_parts: 64,
    };
    let facts = message::parse(data, &limits);
    // Every header is cut before it is decoded; a decoded value may grow
    // (an encoded word can hold more bytes than it takes), but boundedly.
    for line in [&facts.email.subject, &facts.email.from, &facts.email.date, &facts.email.message_id] {
        assert!(line.len() <= 4 * MAX_HEADER_BYTES, "a header was not cut");
    }
    assert!(facts.email.attachments.len() <= limits.max_mime_parts);
    // The Authentication-Results reader takes whatever the message says.
    let _ = message::sender_authenticated(&facts.reply, None);
    let _ = message::sender_authenticated(&facts.reply, Some("mx.example.org"));
    for line in [&facts.body.title, &facts.email.subject, &facts.email.from, &facts.email.date] {
        assert!(!line.contains(['\r', '\n', '\0']), "a one-line field holds a line break or NUL");
    }
    assert!(facts.body.description.len() <= MAX_FIELD_BYTES);
    assert!(["pgp-mime", "inline-pgp", "none"].contains(&facts.email.encryption.as_str()));
    if facts.reply.no_reply_reason.is_some() || facts.reply.from_addr.is_none() {
        return;
    }
    let from = "security@project.example".parse().expect("a valid address");
    let policy = Policy::default();
    let sender = Sender { from: &from, project: "fuzz", policy: &policy, policy_url: None, status_url: "https://intake.example/status" };
    let Ok(reply) = compose(&sender, &ReportId::random(), &facts.reply) else { return };
    let bytes = reply.formatted();
    let parsed = mailparse::parse_mail(&bytes).expect("our own acknowledgement parses");
    let names: Vec<String> = parsed.headers.iter().map(|h| h.get_key().to_ascii_lowercase()).collect();
    for name in &names {
        assert!(
            ["from", "to", "subject", "auto-submitted", "content-type", "in-reply-to", "references", "date",
             "message-id", "mime-version", "content-transfer-encoding"]
                .contains(&name.as_str()),
            "unexpected header {name:?} in an acknowledgement"
        );
    }
    assert_eq!(names.iter().filter(|n| *n == "to").count(), 1);
    let to = mailparse::addrparse_header(parsed.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case("to")).unwrap())
        .expect("the To header parses");
    assert_eq!(to.len(), 1, "one recipient only");
});
