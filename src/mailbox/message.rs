//! What the manifest says about a mailed report, parsed with `mailparse`
//! from the raw bytes. Parsing never fails: a message that does not parse is
//! still sealed whole, with "(unparseable message)" defaults.

use mailparse::{DispositionType, MailAddr, MailHeaderMap, ParsedMail};
use zeroize::Zeroizing;

use crate::report::{MAX_TITLE_CHARS, ReportBody, Reporter};
use crate::seal::EmailMeta;

/// Title of a message without a usable Subject.
pub const NO_SUBJECT: &str = "(no subject)";
/// Title of a message `mailparse` could not read.
pub const UNPARSEABLE: &str = "(unparseable message)";

/// Deepest MIME nesting walked for attachment names and the description;
/// deeper parts stay inside the sealed original anyway.
const MAX_DEPTH: usize = 16;

/// Everything the poller derives from one message: the manifest fields, and
/// what an acknowledgement needs. None of it is ever logged.
#[derive(Default)]
pub struct MailFacts {
    pub body: ReportBody,
    pub reporter: Reporter,
    pub email: EmailMeta,
    pub reply: ReplyFacts,
}

/// Threading and addressing facts for the acknowledgement.
#[derive(Default, Clone)]
pub struct ReplyFacts {
    /// The bare address of the first `From` mailbox, when it looks usable.
    pub from_addr: Option<String>,
    /// `Message-ID` as written (with angle brackets).
    pub message_id: Option<String>,
    /// `References` of the message (for threading the reply).
    pub references: Option<String>,
    /// Why no automatic reply may be sent, if any (RFC 3834 and friends).
    pub no_reply_reason: Option<&'static str>,
}

impl std::fmt::Debug for MailFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailFacts(..)")
    }
}

/// Parses `raw` into manifest metadata. `max_field_bytes` bounds the
/// description (the whole text stays in the sealed original).
pub fn parse(raw: &[u8], max_field_bytes: usize) -> MailFacts {
    // mailparse is not expected to panic, but hostile input is normal: a
    // panic here must not stop the message from being sealed.
    match std::panic::catch_unwind(|| parse_inner(raw, max_field_bytes)) {
        Ok(Some(facts)) => facts,
        _ => unparseable(raw),
    }
}

fn unparseable(raw: &[u8]) -> MailFacts {
    let mut facts = MailFacts::default();
    facts.body.title = UNPARSEABLE.into();
    facts.email.encryption = if contains(raw, b"-----BEGIN PGP MESSAGE-----") {
        "inline-pgp"
    } else {
        "none"
    }
    .into();
    facts.reply.no_reply_reason = Some("the message could not be parsed");
    facts
}

fn parse_inner(raw: &[u8], max_field_bytes: usize) -> Option<MailFacts> {
    let mail = mailparse::parse_mail(raw).ok()?;
    let headers = &mail.headers;
    let header = |name: &str| {
        headers
            .get_first_value(name)
            .map(|v| clean_line(&v))
            .filter(|v| !v.is_empty())
    };

    let mut facts = MailFacts::default();
    let subject = header("Subject");
    facts.body.title = subject
        .as_deref()
        .map(|s| truncate_chars(s, MAX_TITLE_CHARS))
        .unwrap_or_else(|| NO_SUBJECT.into());
    facts.email.subject = subject.unwrap_or_default();
    facts.email.date = header("Date").unwrap_or_default();
    facts.email.message_id = header("Message-ID").unwrap_or_default();

    let from = header("From");
    facts.email.from = from.clone().unwrap_or_default();
    if let Some(single) = headers
        .get_first_header("From")
        .and_then(|h| mailparse::addrparse_header(h).ok())
        .and_then(|list| {
            list.into_inner().into_iter().find_map(|a| match a {
                MailAddr::Single(s) => Some(s),
                MailAddr::Group(g) => g.addrs.into_iter().next(),
            })
        })
    {
        facts.reporter.name = single
            .display_name
            .as_deref()
            .map(clean_line)
            .unwrap_or_default();
        let addr = clean_line(&single.addr);
        if is_usable_address(&addr) {
            facts.reporter.email = addr.clone();
            facts.reply.from_addr = Some(addr);
        }
    }

    let mut text = None;
    let mut names = Vec::new();
    let mut pgp_mime = false;
    let mut inline_pgp = false;
    walk(&mail, 0, &mut |part| {
        let mime = part.ctype.mimetype.to_ascii_lowercase();
        if mime == "multipart/encrypted"
            && part
                .ctype
                .params
                .get("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
        {
            pgp_mime = true;
        }
        let disposition = part.get_content_disposition();
        let name = disposition
            .params
            .get("filename")
            .or_else(|| part.ctype.params.get("name"));
        if let Some(name) = name {
            names.push(truncate_chars(&clean_line(name), 255));
        } else if mime.starts_with("text/") || mime.is_empty() {
            // Inline text: the description, and a place inline PGP shows up.
            if let Ok(body) = part.get_body() {
                let body = Zeroizing::new(body);
                if body.contains("-----BEGIN PGP MESSAGE-----") {
                    inline_pgp = true;
                }
                if text.is_none()
                    && mime == "text/plain"
                    && disposition.disposition != DispositionType::Attachment
                {
                    text = Some(truncate_bytes(&body.replace('\0', ""), max_field_bytes));
                }
            }
        }
    });
    facts.body.description = text.unwrap_or_default();
    facts.email.attachments = names;
    facts.email.encryption = if pgp_mime {
        "pgp-mime"
    } else if inline_pgp {
        "inline-pgp"
    } else {
        "none"
    }
    .into();
    facts.reply.message_id = Some(facts.email.message_id.clone()).filter(|m| is_msg_id(m));
    facts.reply.references = header("References").filter(|r| r.split_whitespace().all(is_msg_id));
    facts.reply.no_reply_reason = no_reply_reason(&mail, facts.reply.from_addr.as_deref());
    Some(facts)
}

fn walk<'a>(part: &'a ParsedMail<'a>, depth: usize, f: &mut dyn FnMut(&'a ParsedMail<'a>)) {
    if depth > MAX_DEPTH {
        return;
    }
    f(part);
    for sub in &part.subparts {
        walk(sub, depth + 1, f);
    }
}

/// Why an automatic reply must not be sent (RFC 3834 §2, list and bounce
/// conventions), or `None` when it may.
fn no_reply_reason(mail: &ParsedMail<'_>, from: Option<&str>) -> Option<&'static str> {
    let headers = &mail.headers;
    let value = |name: &str| {
        headers
            .get_first_value(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if value("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return Some("Auto-Submitted");
    }
    if value("Precedence").is_some_and(|v| ["bulk", "list", "junk"].contains(&v.as_str())) {
        return Some("Precedence");
    }
    if headers.get_first_header("List-Id").is_some()
        || headers.get_first_header("List-Unsubscribe").is_some()
    {
        return Some("mailing list");
    }
    let Some(from) = from else {
        return Some("no usable From");
    };
    let local = from
        .rsplit_once('@')
        .map(|(l, _)| l)
        .unwrap_or(from)
        .to_ascii_lowercase();
    if local == "mailer-daemon"
        || local == "postmaster"
        || local.contains("noreply")
        || local.contains("no-reply")
        || local.contains("do-not-reply")
    {
        return Some("automated sender");
    }
    None
}

/// A plain `local@domain` without spaces, brackets or control characters.
fn is_usable_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && addr.len() <= 254
        && addr
            .chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c))
}

fn is_msg_id(s: &str) -> bool {
    s.len() <= 998
        && s.starts_with('<')
        && s.ends_with('>')
        && s.chars().all(|c| c.is_ascii_graphic())
}

/// One line of header text: control characters become spaces, whitespace runs collapse.
fn clean_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mail() {
        let raw = b"From: Alice Example <alice@example.org>\r\nSubject: RCE in =?utf-8?q?parser=E2=80=99s?= core\r\nMessage-ID: <a1@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nThe bug.\r\n";
        let f = parse(raw, 1000);
        assert_eq!(f.body.title, "RCE in parser\u{2019}s core");
        assert_eq!(f.body.description, "The bug.\r\n");
        assert_eq!(f.reporter.email, "alice@example.org");
        assert_eq!(f.reporter.name, "Alice Example");
        assert_eq!(f.email.encryption, "none");
        assert_eq!(f.reply.message_id.as_deref(), Some("<a1@example.org>"));
        assert_eq!(f.reply.no_reply_reason, None);
    }

    #[test]
    fn missing_headers_and_garbage() {
        let f = parse(b"\xff\xfe\x00garbage without headers", 100);
        assert!(f.body.title == NO_SUBJECT || f.body.title == UNPARSEABLE);
        assert!(f.reply.no_reply_reason.is_some());
        let f = parse(b"", 100);
        assert!(f.reply.no_reply_reason.is_some());
    }

    #[test]
    fn pgp_kinds_and_attachments() {
        let mime = b"From: b@example.org\r\nSubject: x\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n--b--\r\n";
        let f = parse(mime, 100);
        assert_eq!(f.email.encryption, "pgp-mime");
        assert_eq!(f.email.attachments, vec!["encrypted.asc".to_string()]);
        let inline = b"From: b@example.org\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nabc\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(parse(inline, 100).email.encryption, "inline-pgp");
    }

    /// Mutated messages never make the parser panic (the `catch_unwind` in
    /// [`parse`] is a last resort, not the plan).
    #[test]
    fn mutated_mail_never_panics() {
        let seeds: [&[u8]; 3] = [
            b"From: a@example.org\r\nSubject: =?utf-8?q?x?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b\r\nContent-Disposition: attachment; filename*=utf-8''x%20y\r\n\r\nz\r\n--b--\r\n",
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"q\"\r\n\r\n--q\r\n\r\n--q\r\n",
            b"Subject: =?iso-8859-1?B?/w==?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9=\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut m = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % (m.len() + 1);
                match next() % 4 {
                    0 if at < m.len() => m[at] = next() as u8,
                    1 if at < m.len() => {
                        m.remove(at);
                    }
                    2 => m.insert(
                        at,
                        [b'\r', b'\n', b'-', b'=', b';', b'"', 0, 0xff][(next() % 8) as usize],
                    ),
                    _ => m.truncate(at),
                }
            }
            let result = std::panic::catch_unwind(|| parse_inner(&m, 100));
            assert!(result.is_ok(), "mailparse panicked on {m:?}");
        }
    }

    #[test]
    fn auto_replies_are_not_answered() {
        for h in [
            "Auto-Submitted: auto-replied",
            "Precedence: bulk",
            "List-Id: <l.example.org>",
        ] {
            let raw = format!("From: a@example.org\r\n{h}\r\n\r\nx");
            assert!(
                parse(raw.as_bytes(), 10).reply.no_reply_reason.is_some(),
                "{h}"
            );
        }
        let raw = b"From: a@example.org\r\nAuto-Submitted: no\r\n\r\nx";
        assert_eq!(parse(raw, 10).reply.no_reply_reason, None);
        for from in [
            "MAILER-DAEMON@example.org",
            "noreply@example.org",
            "no-reply@x.example.org",
            "undisclosed",
        ] {
            let raw = format!("From: {from}\r\n\r\nx");
            assert!(
                parse(raw.as_bytes(), 10).reply.no_reply_reason.is_some(),
                "{from}"
            );
        }
    }
}
