//! What the manifest says about a mailed report, read from the raw bytes
//! without trusting their structure.
//!
//! The MIME tree is walked in one forward pass with an explicit stack of the
//! open multipart boundaries, never by recursion: nesting depth, part count
//! and the bytes of each header are bounded by [`ParseLimits`] before
//! anything is decoded, so a hostile message costs time linear in its size
//! and memory independent of it. `mailparse` only ever sees such bounded
//! pieces (one cut header, one synthetic single-part body). Parsing never
//! fails: a message whose header block does not parse is still sealed
//! whole, titled "(unparseable message)".

use mailparse::{DispositionType, MailAddr, ParsedContentDisposition, ParsedContentType};
use zeroize::Zeroizing;

use crate::config::{self, Config};
use crate::report::{MAX_TITLE_CHARS, ReportBody, Reporter};
use crate::seal::EmailMeta;

/// Title of a message without a usable Subject.
pub const NO_SUBJECT: &str = "(no subject)";
/// Title of a message whose header block does not parse.
pub const UNPARSEABLE: &str = "(unparseable message)";

/// Longest MIME boundary honoured (RFC 2046 §5.1.1 allows 70 characters); a
/// part with a longer one is read as a leaf, keeping delimiter checks cheap.
/// An empty one is honoured as mailparse does: every `--` line delimits.
const MAX_BOUNDARY_BYTES: usize = 200;
/// `Authentication-Results` headers kept from the top of a message: only
/// the receiving server's (the topmost ones) can be trusted anyway.
const MAX_AUTH_RESULTS: usize = 16;
/// Longest attachment name listed, in characters.
const MAX_NAME_CHARS: usize = 255;
const PGP_MARKER: &[u8] = b"-----BEGIN PGP MESSAGE-----";

/// Bounds on what [`parse`] reads of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Bytes of the description kept (`[limits] max_field_bytes`).
    pub max_field_bytes: usize,
    /// Raw bytes of one header decoded (`[mailbox] max_header_bytes`).
    pub max_header_bytes: usize,
    /// Deepest MIME nesting walked (`[mailbox] max_mime_depth`).
    pub max_mime_depth: usize,
    /// Most MIME parts examined (`[mailbox] max_mime_parts`).
    pub max_mime_parts: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_field_bytes: config::Limits::default().max_field_bytes,
            max_header_bytes: config::DEFAULT_MAX_HEADER_BYTES,
            max_mime_depth: config::DEFAULT_MAX_MIME_DEPTH,
            max_mime_parts: config::DEFAULT_MAX_MIME_PARTS,
        }
    }
}

impl ParseLimits {
    /// The limits `config` sets (defaults without `[mailbox]`).
    pub fn from_config(config: &Config) -> ParseLimits {
        let mut limits = ParseLimits {
            max_field_bytes: config.limits.max_field_bytes,
            ..ParseLimits::default()
        };
        if let Some(m) = &config.mailbox {
            limits.max_header_bytes = m.max_header_bytes;
            limits.max_mime_depth = m.max_mime_depth;
            limits.max_mime_parts = m.max_mime_parts;
        }
        limits
    }
}

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
    /// The `Authentication-Results` headers, topmost (the receiving
    /// server's) first; see [`sender_authenticated`].
    pub auth_results: Vec<String>,
    /// The report's reply code, set once it is sealed: the
    /// acknowledgement is the only place it is ever written.
    pub code: Option<crate::reply::ReplyCode>,
}

impl std::fmt::Debug for MailFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailFacts(..)")
    }
}

/// Parses `raw` into manifest metadata within `limits` (the whole message
/// stays in the sealed original).
pub fn parse(raw: &[u8], limits: &ParseLimits) -> MailFacts {
    // Nothing below is expected to panic, but hostile input is normal: a
    // panic here must not stop the message from being sealed. (The walk is
    // iterative, so no input can overflow the stack, which no catch_unwind
    // could stop.)
    match std::panic::catch_unwind(|| parse_inner(raw, limits)) {
        Ok(Some(facts)) => facts,
        _ => unparseable(raw),
    }
}

fn unparseable(raw: &[u8]) -> MailFacts {
    let mut facts = MailFacts::default();
    facts.body.title = UNPARSEABLE.into();
    facts.email.encryption = if contains(raw, PGP_MARKER) {
        "inline-pgp"
    } else {
        "none"
    }
    .into();
    facts.reply.no_reply_reason = Some("the message could not be parsed");
    facts
}

/// The headers of one part that matter here, each cut to
/// `max_header_bytes` (name included) before anything decodes it.
#[derive(Default)]
struct Head<'a> {
    subject: Option<&'a [u8]>,
    from: Option<&'a [u8]>,
    date: Option<&'a [u8]>,
    message_id: Option<&'a [u8]>,
    references: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    disposition: Option<&'a [u8]>,
    encoding: Option<&'a [u8]>,
    auto_submitted: Option<&'a [u8]>,
    precedence: Option<&'a [u8]>,
    list: bool,
    auth_results: Vec<&'a [u8]>,
    /// Where the body starts.
    body: usize,
    /// Whether the block starts with a well-formed header field.
    well_formed: bool,
}

/// Index just past the line starting at `at` (past its `\n`, or the end).
fn line_end(raw: &[u8], at: usize) -> usize {
    raw[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |i| at + i + 1)
}

/// Reads the header block starting at `at` in one pass, keeping a cut
/// prefix of the fields that matter; `top` also keeps the
/// `Authentication-Results` headers. A delimiter line of an open `frames`
/// ends the block (and the part) early.
fn read_head<'a>(
    raw: &'a [u8],
    at: usize,
    max_header_bytes: usize,
    top: bool,
    frames: &[Frame],
) -> Head<'a> {
    let mut head = Head {
        body: raw.len(),
        ..Head::default()
    };
    let mut pos = at;
    let mut first = true;
    while pos < raw.len() {
        if raw[pos] == b'\n' {
            head.body = pos + 1;
            break;
        }
        if raw[pos..].starts_with(b"\r\n") {
            head.body = pos + 2;
            break;
        }
        if delimiter_of(&raw[pos..], frames).is_some() {
            head.body = pos;
            break;
        }
        // One field: its first line and every folded line after it.
        let start = pos;
        let first_end = line_end(raw, pos);
        let mut end = first_end;
        while end < raw.len() && (raw[end] == b' ' || raw[end] == b'\t') {
            end = line_end(raw, end);
        }
        pos = end;
        let Some(colon) = raw[start..first_end].iter().position(|&b| b == b':') else {
            first = false;
            continue;
        };
        let name = trim_end_wsp(&raw[start..start + colon]);
        if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
            first = false;
            continue;
        }
        if first {
            head.well_formed = true;
            first = false;
        }
        let field = cut_field(&raw[start..end], colon, max_header_bytes);
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"subject" => &mut head.subject,
            b"from" => &mut head.from,
            b"date" => &mut head.date,
            b"message-id" => &mut head.message_id,
            b"references" => &mut head.references,
            b"content-type" => &mut head.content_type,
            b"content-disposition" => &mut head.disposition,
            b"content-transfer-encoding" => &mut head.encoding,
            b"auto-submitted" => &mut head.auto_submitted,
            b"precedence" => &mut head.precedence,
            b"list-id" | b"list-unsubscribe" => {
                head.list = true;
                continue;
            }
            b"authentication-results" => {
                if top && head.auth_results.len() < MAX_AUTH_RESULTS {
                    head.auth_results.push(field);
                }
                continue;
            }
            _ => continue,
        };
        slot.get_or_insert(field);
    }
    head
}

fn trim_end_wsp(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `field` (name, colon at `colon`, value) cut to `max` bytes of value, at
/// the last whitespace when it has to be cut, so that no encoded word is
/// split.
fn cut_field(field: &[u8], colon: usize, max: usize) -> &[u8] {
    let limit = colon + 1 + max;
    if field.len() <= limit {
        return field;
    }
    let cut = &field[..limit];
    let floor = (colon + 1).max(limit.saturating_sub(1024));
    match cut[floor..].iter().rposition(|b| b.is_ascii_whitespace()) {
        Some(i) => &cut[..floor + i],
        None => cut,
    }
}

/// The decoded value of a cut header field (encoded words, unfolding).
fn decode(field: &[u8]) -> String {
    mailparse::parse_header(field)
        .map(|(h, _)| h.get_value())
        .unwrap_or_default()
}

/// One decoded header as a single clean line, if it has any text.
fn line(field: Option<&[u8]>) -> Option<String> {
    field
        .map(|f| clean_line(&decode(f)))
        .filter(|v| !v.is_empty())
}

fn parse_inner(raw: &[u8], limits: &ParseLimits) -> Option<MailFacts> {
    let top = read_head(raw, 0, limits.max_header_bytes, true, &[]);
    if !top.well_formed {
        return None;
    }
    let mut facts = MailFacts::default();
    let subject = line(top.subject);
    facts.body.title = subject
        .as_deref()
        .map(|s| truncate_chars(s, MAX_TITLE_CHARS))
        .unwrap_or_else(|| NO_SUBJECT.into());
    facts.email.subject = subject.unwrap_or_default();
    facts.email.date = line(top.date).unwrap_or_default();
    facts.email.message_id = line(top.message_id).unwrap_or_default();

    let from = top.from.map(decode).unwrap_or_default();
    facts.email.from = clean_line(&from);
    if let Some(single) = mailparse::addrparse(&from).ok().and_then(|list| {
        list.into_inner().into_iter().find_map(|a| match a {
            MailAddr::Single(s) => Some(s),
            MailAddr::Group(g) => g.addrs.into_iter().next(),
        })
    }) {
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

    let found = walk(raw, limits);
    facts.body.description = found.text.map(|t| t.to_string()).unwrap_or_default();
    facts.email.attachments = found.names;
    facts.email.encryption = if found.pgp_mime {
        "pgp-mime"
    } else if found.inline_pgp {
        "inline-pgp"
    } else {
        "none"
    }
    .into();
    facts.reply.message_id = Some(facts.email.message_id.clone()).filter(|m| is_msg_id(m));
    facts.reply.references = line(top.references)
        .map(|r| {
            r.split_whitespace()
                .filter(|id| is_msg_id(id))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|r| !r.is_empty());
    facts.reply.auth_results = top
        .auth_results
        .iter()
        .map(|f| clean_line(&decode(f)))
        .collect();
    facts.reply.no_reply_reason = no_reply_reason(&top, facts.reply.from_addr.as_deref());
    Some(facts)
}

/// What the walk found in the parts.
#[derive(Default)]
struct Found {
    /// The first inline text/plain part, cut to `max_field_bytes`.
    text: Option<Zeroizing<String>>,
    names: Vec<String>,
    pgp_mime: bool,
    inline_pgp: bool,
}

/// A multipart whose parts are being read.
struct Frame {
    /// `--` and the boundary.
    delimiter: Vec<u8>,
    depth: usize,
    digest: bool,
}

/// A part whose header block starts at `at`.
struct Pending {
    at: usize,
    depth: usize,
    /// In a multipart/digest, where parts default to message/rfc822.
    digest: bool,
}

/// A delimiter line found by [`next_delimiter`].
struct Delimiter {
    /// Where the line starts (the end of the part before it).
    at: usize,
    /// Index of the frame it belongs to.
    frame: usize,
    /// Whether it closes that multipart (`--boundary--`).
    close: bool,
    /// Where the next part starts (just past the line).
    next: usize,
}

/// The first delimiter line of any open frame at or after `from` (a line
/// start). The outermost frame wins, as an outer delimiter ends every part
/// nested in it. Each line is looked at once per walk.
fn next_delimiter(raw: &[u8], mut from: usize, frames: &[Frame]) -> Option<Delimiter> {
    if frames.is_empty() {
        return None;
    }
    while from < raw.len() {
        let rest = &raw[from..];
        if let Some(frame) = delimiter_of(rest, frames) {
            let after = &rest[frames[frame].delimiter.len()..];
            return Some(Delimiter {
                at: from,
                frame,
                close: after.starts_with(b"--"),
                next: line_end(raw, from),
            });
        }
        from = line_end(raw, from);
    }
    None
}

/// The frame (outermost first) whose delimiter starts `line`, if any.
fn delimiter_of(line: &[u8], frames: &[Frame]) -> Option<usize> {
    if !line.starts_with(b"--") {
        return None;
    }
    frames.iter().position(|f| line.starts_with(&f.delimiter))
}

/// The part body `raw[start..end]` without the line break that belongs to
/// the delimiter after it.
fn body_before(raw: &[u8], start: usize, mut end: usize) -> &[u8] {
    if end > start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    &raw[start..end]
}

/// Walks the MIME tree of `raw` depth first, iteratively, within `limits`.
fn walk(raw: &[u8], limits: &ParseLimits) -> Found {
    let mut found = Found::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut pending = Some(Pending {
        at: 0,
        depth: 0,
        digest: false,
    });
    let mut scan_from = 0;
    let mut parts = 0;
    loop {
        if let Some(part) = pending.take() {
            if parts >= limits.max_mime_parts {
                break;
            }
            parts += 1;
            let head = read_head(raw, part.at, limits.max_header_bytes, false, &frames);
            let ctype = head
                .content_type
                .map(|c| mailparse::parse_content_type(&decode(c)))
                .unwrap_or_else(|| {
                    let mut d = ParsedContentType::default();
                    if part.digest {
                        d.mimetype = "message/rfc822".into();
                    }
                    d
                });
            let encoding = head
                .encoding
                .map(|e| decode(e).trim().to_ascii_lowercase())
                .unwrap_or_default();
            let mime = ctype.mimetype.to_ascii_lowercase();
            let deeper = part.depth < limits.max_mime_depth;
            let boundary = ctype
                .params
                .get("boundary")
                .filter(|b| b.len() <= MAX_BOUNDARY_BYTES);
            if mime.starts_with("multipart/")
                && let Some(boundary) = boundary
                && deeper
            {
                found.visit(&head, &ctype, &encoding, None, limits);
                frames.push(Frame {
                    delimiter: [b"--", boundary.as_bytes()].concat(),
                    depth: part.depth,
                    digest: mime == "multipart/digest",
                });
                scan_from = head.body;
            } else if mime == "message/rfc822"
                && deeper
                && ["", "7bit", "8bit", "binary"].contains(&encoding.as_str())
            {
                // The body is a message: its header block starts right away,
                // and its extent is that of this part.
                found.visit(&head, &ctype, &encoding, None, limits);
                pending = Some(Pending {
                    at: head.body,
                    depth: part.depth + 1,
                    digest: false,
                });
                continue;
            } else {
                let delimiter = next_delimiter(raw, head.body, &frames);
                let start = head.body.min(raw.len());
                let body = match &delimiter {
                    Some(d) => body_before(raw, start.min(d.at), d.at),
                    None => &raw[start..],
                };
                found.visit(&head, &ctype, &encoding, Some(body), limits);
                match delimiter {
                    Some(d) => {
                        step(&mut frames, d, &mut pending, &mut scan_from);
                        if frames.is_empty() {
                            break;
                        }
                    }
                    None => break,
                }
                continue;
            }
        }
        // Between parts: a preamble, or the epilogue of a closed multipart.
        match next_delimiter(raw, scan_from, &frames) {
            Some(d) => {
                step(&mut frames, d, &mut pending, &mut scan_from);
                if frames.is_empty() {
                    break;
                }
            }
            None => break,
        }
    }
    found
}

/// Follows delimiter `d`: closes the frames nested in its own, then starts
/// the next part or (for a closing delimiter) closes its frame too.
fn step(
    frames: &mut Vec<Frame>,
    d: Delimiter,
    pending: &mut Option<Pending>,
    scan_from: &mut usize,
) {
    frames.truncate(d.frame + 1);
    if d.close {
        frames.pop();
        *scan_from = d.next;
    } else if let Some(frame) = frames.last() {
        *pending = Some(Pending {
            at: d.next,
            depth: frame.depth + 1,
            digest: frame.digest,
        });
    }
}

impl Found {
    /// Takes what one part says: PGP/MIME, an attachment name, and for a
    /// leaf (`body`), inline PGP and the description.
    fn visit(
        &mut self,
        head: &Head<'_>,
        ctype: &ParsedContentType,
        encoding: &str,
        body: Option<&[u8]>,
        limits: &ParseLimits,
    ) {
        let mime = ctype.mimetype.to_ascii_lowercase();
        if mime == "multipart/encrypted"
            && ctype
                .params
                .get("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
        {
            self.pgp_mime = true;
        }
        let disposition: ParsedContentDisposition = head
            .disposition
            .map(|d| mailparse::parse_content_disposition(&decode(d)))
            .unwrap_or_default();
        let name = disposition
            .params
            .get("filename")
            .or_else(|| ctype.params.get("name"));
        if let Some(name) = name {
            if self.names.len() < limits.max_mime_parts {
                self.names
                    .push(truncate_chars(&clean_line(name), MAX_NAME_CHARS));
            }
            return;
        }
        let Some(body) = body else { return };
        if !(mime.starts_with("text/") || mime.is_empty()) {
            return;
        }
        let wanted = self.text.is_none()
            && mime == "text/plain"
            && disposition.disposition != DispositionType::Attachment;
        if encoding == "base64" {
            // The marker is only visible once decoded: look in the same
            // bounded prefix the description comes from.
            let text = decode_text(body, encoding, &ctype.charset, limits.max_field_bytes);
            if let Some(text) = text {
                if contains(text.as_bytes(), PGP_MARKER) {
                    self.inline_pgp = true;
                }
                if wanted {
                    self.text = Some(text);
                }
            }
            return;
        }
        if contains(body, PGP_MARKER) {
            self.inline_pgp = true;
        }
        if wanted {
            self.text = decode_text(body, encoding, &ctype.charset, limits.max_field_bytes);
        }
    }
}

/// The start of a text body, decoded (transfer encoding, then charset)
/// and cut to `max` bytes. Only a prefix of the raw body that is certain
/// to hold `max` decoded bytes is ever decoded.
fn decode_text(
    body: &[u8],
    encoding: &str,
    charset: &str,
    max: usize,
) -> Option<Zeroizing<String>> {
    let (encoding, prefix): (&str, Zeroizing<Vec<u8>>) = match encoding {
        "base64" => {
            // 4 characters per 3 bytes; whitespace and junk are not counted.
            let want = (max / 3 + 2) * 4;
            let mut chars: Zeroizing<Vec<u8>> = Zeroizing::new(
                body.iter()
                    .copied()
                    .filter(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b))
                    .take(want)
                    .collect(),
            );
            if chars.len() == want {
                chars.truncate(want - want % 4);
            }
            ("base64", chars)
        }
        "quoted-printable" => {
            // At most 3 raw bytes per decoded byte; never split an escape.
            let mut end = body.len().min(max.saturating_mul(3).saturating_add(3));
            if end < body.len() {
                for back in 1..=2 {
                    if end >= back && body[end - back] == b'=' {
                        end -= back;
                        break;
                    }
                }
            }
            ("quoted-printable", Zeroizing::new(body[..end].to_vec()))
        }
        _ => {
            // Any charset yields at least one byte of UTF-8 for two raw
            // bytes; NUL bytes are dropped below, so keep a margin.
            let end = body.len().min(max.saturating_mul(2).saturating_add(8));
            ("8bit", Zeroizing::new(body[..end].to_vec()))
        }
    };
    let charset: String = charset
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        .take(64)
        .collect();
    let mut part = Zeroizing::new(Vec::with_capacity(prefix.len() + 128));
    part.extend_from_slice(b"Content-Type: text/plain; charset=\"");
    part.extend_from_slice(charset.as_bytes());
    part.extend_from_slice(b"\"\r\nContent-Transfer-Encoding: ");
    part.extend_from_slice(encoding.as_bytes());
    part.extend_from_slice(b"\r\n\r\n");
    part.extend_from_slice(&prefix);
    // A single text/plain part: mailparse does not recurse into it.
    let mail = mailparse::parse_mail(&part).ok()?;
    let text = Zeroizing::new(mail.get_body().ok()?);
    let text = Zeroizing::new(text.replace('\0', ""));
    Some(Zeroizing::new(truncate_bytes(&text, max)))
}

/// Why an automatic reply must not be sent (RFC 3834 §2, list and bounce
/// conventions), or `None` when it may.
fn no_reply_reason(head: &Head<'_>, from: Option<&str>) -> Option<&'static str> {
    let value = |field: Option<&[u8]>| field.map(|f| decode(f).trim().to_ascii_lowercase());
    if value(head.auto_submitted).is_some_and(|v| !v.starts_with("no")) {
        return Some("Auto-Submitted");
    }
    if value(head.precedence).is_some_and(|v| ["bulk", "list", "junk"].contains(&v.as_str())) {
        return Some("Precedence");
    }
    if head.list {
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

/// Whether the receiving mail server vouches for the `From` domain of
/// `reply`: the method that passed (`"dmarc"`, or `"spf"` when its
/// `smtp.mailfrom` domain is aligned with the From domain), or why not.
///
/// Only one `Authentication-Results` header is believed: the topmost one
/// carrying `authserv_id` when that is configured, else the topmost one.
/// A sender can add any such header to a message, but the receiving
/// server adds its own above everything the sender wrote (and RFC 8601 §5
/// has it remove forged ones with its own authserv-id).
pub fn sender_authenticated(
    reply: &ReplyFacts,
    authserv_id: Option<&str>,
) -> Result<&'static str, &'static str> {
    let from_domain = reply
        .from_addr
        .as_deref()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .ok_or("no usable From")?;
    let header = match authserv_id {
        Some(id) => reply.auth_results.iter().find_map(|h| {
            let results = AuthResults::parse(h);
            results
                .authserv_id
                .eq_ignore_ascii_case(id)
                .then_some(results)
        }),
        None => reply.auth_results.first().map(|h| AuthResults::parse(h)),
    }
    .ok_or("no Authentication-Results header from the receiving server")?;
    for result in &header.results {
        if !result.result.eq_ignore_ascii_case("pass") {
            continue;
        }
        let method = result.method.to_ascii_lowercase();
        let dmarc = method == "dmarc"
            && result
                .property("header.from")
                .is_none_or(|d| domain_of(d) == from_domain);
        if dmarc {
            return Ok("dmarc");
        }
        let spf = method == "spf"
            && result
                .property("smtp.mailfrom")
                .is_some_and(|m| aligned(&domain_of(m), &from_domain));
        if spf {
            return Ok("spf");
        }
    }
    Err("neither DMARC nor SPF aligned with the From domain passed")
}

/// The domain of an address or a bare domain, lower-cased.
fn domain_of(s: &str) -> String {
    s.rsplit_once('@')
        .map_or(s, |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Relaxed alignment (RFC 7489 §3.1.2) without a public-suffix list: the
/// same domain, or one a subdomain of the other where the shorter one is
/// not a bare top-level domain.
fn aligned(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (short.contains('.') && long.ends_with(&format!(".{short}")))
}

/// One `Authentication-Results` header (RFC 8601), leniently parsed.
struct AuthResults {
    authserv_id: String,
    results: Vec<AuthResult>,
}

/// One `method=result` with its `ptype.property=value` pairs.
struct AuthResult {
    method: String,
    result: String,
    properties: Vec<(String, String)>,
}

impl AuthResult {
    fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The double quote that opens and closes a quoted string.
const DQUOTE: char = '\u{22}';

impl AuthResults {
    /// Parses one decoded header value: comments dropped (nesting counted,
    /// not recursed), `;`-separated statements, quotes honoured.
    fn parse(value: &str) -> AuthResults {
        let mut statements = vec![String::new()];
        let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
        for c in value.chars() {
            let current = statements.last_mut();
            match c {
                _ if escaped => {
                    escaped = false;
                    if depth == 0
                        && let Some(s) = current
                    {
                        s.push(c);
                    }
                }
                '\\' if quoted || depth > 0 => escaped = true,
                DQUOTE if depth == 0 => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted && depth > 0 => depth -= 1,
                ';' if !quoted && depth == 0 => statements.push(String::new()),
                _ if depth == 0 => {
                    if let Some(s) = current {
                        s.push(c);
                    }
                }
                _ => {}
            }
        }
        let mut statements = statements.into_iter();
        let authserv_id = statements
            .next()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default();
        let results = statements
            .filter_map(|s| {
                let mut words = s.split_whitespace();
                let (method, result) = words.next()?.split_once('=')?;
                let method = method.split('/').next().unwrap_or(method).to_owned();
                let properties = words
                    .filter_map(|w| w.split_once('='))
                    .filter(|(k, _)| k.contains('.'))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Some(AuthResult {
                    method,
                    result: result.to_owned(),
                    properties,
                })
            })
            .collect();
        AuthResults {
            authserv_id,
            results,
        }
    }
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

    fn limits(max_field_bytes: usize) -> ParseLimits {
        ParseLimits {
            max_field_bytes,
            ..ParseLimits::default()
        }
    }

    #[test]
    fn plain_mail() {
        let raw = b"From: Alice Example <alice@example.org>\r\nSubject: RCE in =?utf-8?q?parser=E2=80=99s?= core\r\nMessage-ID: <a1@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nThe bug.\r\n";
        let f = parse(raw, &limits(1000));
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
        for raw in [
            &b"\xff\xfe\x00garbage without headers"[..],
            b"",
            b"just a line of text without any header\r\n",
            b" starts with a folded line: x\r\n\r\nbody",
        ] {
            let f = parse(raw, &limits(100));
            assert_eq!(f.body.title, UNPARSEABLE, "{raw:?}");
            assert!(f.reply.no_reply_reason.is_some());
        }
        let f = parse(b"X-Only: header\r\n\r\nbody", &limits(100));
        assert_eq!(f.body.title, NO_SUBJECT);
    }

    #[test]
    fn pgp_kinds_and_attachments() {
        let mime = b"From: b@example.org\r\nSubject: x\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n--b--\r\n";
        let f = parse(mime, &limits(100));
        assert_eq!(f.email.encryption, "pgp-mime");
        assert_eq!(f.email.attachments, vec!["encrypted.asc".to_string()]);
        let inline = b"From: b@example.org\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nabc\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(parse(inline, &limits(100)).email.encryption, "inline-pgp");
    }

    /// What the recursive mailparse tree says (the parser before the
    /// iterative walk), for messages shallow enough for it.
    fn reference(raw: &[u8], max: usize) -> (String, Vec<String>, &'static str) {
        fn visit<'a>(
            p: &'a mailparse::ParsedMail<'a>,
            depth: usize,
            out: &mut Vec<&'a mailparse::ParsedMail<'a>>,
        ) {
            if depth > DEFAULT_DEPTH {
                return;
            }
            out.push(p);
            for sub in &p.subparts {
                visit(sub, depth + 1, out);
            }
        }
        let mail = mailparse::parse_mail(raw).unwrap();
        let mut parts = Vec::new();
        visit(&mail, 0, &mut parts);
        let (mut text, mut names, mut pgp_mime, mut inline) = (None, Vec::new(), false, false);
        for part in parts {
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
            let d = part.get_content_disposition();
            if let Some(name) = d
                .params
                .get("filename")
                .or_else(|| part.ctype.params.get("name"))
            {
                names.push(truncate_chars(&clean_line(name), 255));
            } else if (mime.starts_with("text/") || mime.is_empty())
                && let Ok(body) = part.get_body()
            {
                inline |= body.contains("-----BEGIN PGP MESSAGE-----");
                if text.is_none()
                    && mime == "text/plain"
                    && d.disposition != DispositionType::Attachment
                {
                    text = Some(truncate_bytes(&body.replace('\0', ""), max));
                }
            }
        }
        let enc = if pgp_mime {
            "pgp-mime"
        } else if inline {
            "inline-pgp"
        } else {
            "none"
        };
        (text.unwrap_or_default(), names, enc)
    }

    /// On ordinary mail the bounded walk finds what mailparse's tree has.
    #[test]
    fn agrees_with_mailparse_on_ordinary_mail() {
        let mut inputs: Vec<Vec<u8>> = vec![
            b"From: a@example.org\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\npre\r\n--BOUND\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSee caf=C3=A9 PoC.=\r\nmore\r\n--BOUND\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"poc.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--BOUND\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--alt\r\nContent-Type: text/plain; name*=utf-8''na%C3%AFve.txt\r\n\r\ny\r\n--alt--\r\n--BOUND--\r\nepilogue\r\n".to_vec(),
            b"From: a@example.org\nSubject: lf only\nContent-Type: multipart/mixed; boundary=z\n\n--z\nContent-Transfer-Encoding: base64\n\naGVsbG8g\nd29ybGQ=\n--z\n\n-----BEGIN PGP MESSAGE-----\n--z--\n".to_vec(),
            b"From: a@example.org\r\n\r\nplain \x00 body\r\n".to_vec(),
            // A broken, empty boundary: every line starting "--" delimits.
            b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=;\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee it.\r\n--b1\r\nContent-Disposition: attachment; filename=\"poc.py\"\r\n\r\nx\r\n--b1--\r\n".to_vec(),
        ];
        for name in [
            "attachment",
            "nested",
            "pgp-mime",
            "plain",
            "inline-pgp",
            "injection",
            "auto-submitted",
        ] {
            let path = format!(
                "{}/fuzz/corpus-seeds/mail/{name}.eml",
                env!("CARGO_MANIFEST_DIR")
            );
            inputs.push(std::fs::read(path).unwrap());
        }
        for raw in &inputs {
            let f = parse(raw, &limits(1000));
            let (text, names, enc) = reference(raw, 1000);
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(f.body.description, text, "{shown}");
            assert_eq!(f.email.attachments, names, "{shown}");
            assert_eq!(f.email.encryption, enc, "{shown}");
        }
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
            let result = std::panic::catch_unwind(|| parse_inner(&m, &limits(100)));
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
                parse(raw.as_bytes(), &limits(10))
                    .reply
                    .no_reply_reason
                    .is_some(),
                "{h}"
            );
        }
        let raw = b"From: a@example.org\r\nAuto-Submitted: no\r\n\r\nx";
        assert_eq!(parse(raw, &limits(10)).reply.no_reply_reason, None);
        for from in [
            "MAILER-DAEMON@example.org",
            "noreply@example.org",
            "no-reply@x.example.org",
            "undisclosed",
        ] {
            let raw = format!("From: {from}\r\n\r\nx");
            assert!(
                parse(raw.as_bytes(), &limits(10))
                    .reply
                    .no_reply_reason
                    .is_some(),
                "{from}"
            );
        }
    }

    /// `levels` nested multipart/mixed parts around a text part.
    fn nested_multipart(levels: usize) -> Vec<u8> {
        let mut m = String::from("From: a@example.org\r\nSubject: deep\r\n");
        for i in 0..levels {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        m.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
        for i in (0..levels).rev() {
            m.push_str(&format!("--b{i}--\r\n"));
        }
        m.into_bytes()
    }

    /// `levels` message/rfc822 parts, each holding the next.
    fn nested_rfc822(levels: usize) -> Vec<u8> {
        let mut m = String::from("From: a@example.org\r\nSubject: deep\r\n");
        for _ in 0..levels {
            m.push_str("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n");
        }
        m.push_str("\r\ninnermost\r\n");
        m.into_bytes()
    }

    /// Nesting far deeper than any stack would survive in a recursive
    /// parser: bounded metadata, and parts below the depth limit ignored.
    #[test]
    fn deep_nesting_is_walked_to_the_depth_limit_only() {
        for raw in [nested_multipart(10_000), nested_rfc822(10_000)] {
            let f = parse(&raw, &limits(100));
            assert_eq!(f.body.title, "deep");
            assert_eq!(f.body.description, "", "the innermost text is too deep");
        }
        // Within the limit, the innermost text is the description.
        let f = parse(&nested_multipart(DEFAULT_DEPTH - 1), &limits(100));
        assert_eq!(f.body.description, "innermost");
        let f = parse(&nested_rfc822(DEFAULT_DEPTH), &limits(100));
        assert_eq!(f.body.description, "innermost\r\n");
        // A thread with a small stack, as the poller's blocking threads
        // might have: an iterative walk needs none.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let raw = nested_multipart(50_000);
                assert_eq!(parse(&raw, &limits(100)).body.title, "deep");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    const DEFAULT_DEPTH: usize = crate::config::DEFAULT_MAX_MIME_DEPTH;

    #[test]
    fn part_count_is_bounded() {
        let mut m = String::from(
            "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n",
        );
        for i in 0..100_000 {
            m.push_str(&format!(
                "--x\r\nContent-Disposition: attachment; filename=f{i}\r\n\r\n.\r\n"
            ));
        }
        m.push_str("--x--\r\n");
        let f = parse(m.as_bytes(), &limits(100));
        // The top part counts as one.
        assert_eq!(
            f.email.attachments.len(),
            crate::config::DEFAULT_MAX_MIME_PARTS - 1
        );
        assert_eq!(f.email.attachments[0], "f0");
    }

    #[test]
    fn huge_headers_are_cut_before_decoding() {
        let words: String = (0..1_500_000)
            .map(|i| format!("=?utf-8?q?caf=C3=A9{i}_?= "))
            .collect();
        assert!(words.len() > 25_000_000);
        let raw = format!(
            "From: Reporter {words}<r@example.org>\r\nSubject: {words}\r\nMessage-ID: <{words}>\r\nContent-Type: text/plain; name=\"{words}\"\r\n\r\nbody\r\n"
        );
        let f = parse(raw.as_bytes(), &limits(100));
        let expected: String = (0..)
            .map(|i| format!("café{i}"))
            .take(100)
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(MAX_TITLE_CHARS)
            .collect();
        assert_eq!(f.body.title, expected);
        let bound = crate::config::DEFAULT_MAX_HEADER_BYTES;
        assert!(
            f.email.subject.starts_with("café0 café1 "),
            "{}",
            &f.email.subject[..40]
        );
        assert!(f.email.subject.len() <= bound, "{}", f.email.subject.len());
        assert!(f.email.from.starts_with("Reporter café0 café1"));
        assert!(f.email.from.len() <= bound);
        // The address was past the cut: no reply to a half-read From.
        assert_eq!(f.reply.from_addr, None);
        assert!(f.email.message_id.len() <= bound);
        assert_eq!(f.reply.message_id, None);
        assert_eq!(f.email.attachments.len(), 1);
        assert_eq!(f.email.attachments[0].chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn folded_header_of_many_lines_is_cut() {
        let mut raw = String::from("From: a@example.org\r\nSubject: start");
        for _ in 0..500_000 {
            raw.push_str("\r\n x");
        }
        raw.push_str("\r\n\r\nbody\r\n");
        let f = parse(raw.as_bytes(), &limits(100));
        assert!(f.body.title.starts_with("start x x"));
        assert!(f.email.subject.len() <= crate::config::DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(f.body.description, "body\r\n");
        assert_eq!(f.reply.from_addr.as_deref(), Some("a@example.org"));
    }

    #[test]
    fn big_text_bodies_are_cut_before_decoding() {
        let line = "0123456789".repeat(7);
        let body: String = (0..300_000).map(|_| format!("{line}\r\n")).collect();
        for (encoding, encoded) in [
            ("8bit", body.clone()),
            ("quoted-printable", body.replace("0", "=30")),
            ("base64", base64_lines(body.as_bytes())),
        ] {
            let raw = format!(
                "From: a@example.org\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{encoded}"
            );
            let f = parse(raw.as_bytes(), &limits(1000));
            assert_eq!(f.body.description.len(), 1000, "{encoding}");
            assert_eq!(f.body.description, body[..1000], "{encoding}");
        }
    }

    fn base64_lines(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    A[((n >> (18 - 6 * i)) & 63) as usize]
                } else {
                    b'='
                });
            }
        }
        out.chunks(76)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect()
    }

    #[test]
    fn multipart_parts_end_at_outer_delimiters() {
        // The inner multipart is never closed; the outer delimiter ends it,
        // and a delimiter line inside a part's header block ends the part.
        let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\npreamble\r\n--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nfirst text\r\n--out\r\nContent-Disposition: attachment; filename=a.txt\r\n--out\r\nContent-Type: text/plain; name=b.bin\r\n\r\nx\r\n--out--\r\nepilogue\r\n";
        let f = parse(raw, &limits(100));
        assert_eq!(f.body.description, "first text");
        assert_eq!(f.email.attachments, vec!["a.txt", "b.bin"]);
        // multipart/digest parts default to message/rfc822.
        let digest = b"From: a@example.org\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ndigest text\r\n--d--\r\n";
        assert_eq!(parse(digest, &limits(100)).body.description, "digest text");
    }

    fn with_auth(results: &[&str]) -> ReplyFacts {
        let mut raw = String::new();
        for r in results {
            raw.push_str(&format!("Authentication-Results: {r}\r\n"));
        }
        raw.push_str("From: Alice <alice@example.org>\r\nSubject: x\r\n\r\nbody\r\n");
        parse(raw.as_bytes(), &limits(100)).reply
    }

    #[test]
    fn only_the_receiving_servers_authentication_results_count() {
        let ok = |r: &[&str], id: Option<&str>| sender_authenticated(&with_auth(r), id);
        assert_eq!(
            ok(
                &["mx.example.net; dmarc=pass header.from=example.org"],
                None
            ),
            Ok("dmarc")
        );
        assert_eq!(
            ok(
                &[
                    "mx.example.net 1; spf=pass (sender ok; really) smtp.mailfrom=bounce@mail.example.org; dmarc=none"
                ],
                None
            ),
            Ok("spf")
        );
        assert_eq!(
            ok(
                &[
                    "mx.example.net;\r\n  dkim=pass header.d=example.org;\r\n  dmarc=pass (p=reject) header.from=\"example.org\""
                ],
                None
            ),
            Ok("dmarc")
        );
        // Failing, unaligned or absent results.
        assert!(ok(&[], None).is_err());
        assert!(
            ok(
                &["mx.example.net; dmarc=fail header.from=example.org"],
                None
            )
            .is_err()
        );
        assert!(
            ok(
                &["mx.example.net; dmarc=pass header.from=evil.example"],
                None
            )
            .is_err()
        );
        assert!(
            ok(
                &["mx.example.net; spf=pass smtp.mailfrom=evil.example"],
                None
            )
            .is_err()
        );
        assert!(ok(&["mx.example.net; spf=pass smtp.mailfrom=x@org"], None).is_err());
        assert!(ok(&["mx.example.net; spf=pass"], None).is_err());
        assert!(ok(&["mx.example.net; none"], None).is_err());
        assert!(
            ok(
                &["mx.example.net; (dmarc=pass header.from=example.org)"],
                None
            )
            .is_err()
        );
        // A forged pass below the receiving server's own header is ignored.
        let forged = [
            "mx.example.net; dmarc=fail header.from=example.org",
            "mx.example.net; dmarc=pass",
        ];
        assert!(ok(&forged, None).is_err());
        assert!(ok(&forged, Some("mx.example.net")).is_err());
        // With the authserv-id configured, headers of other servers are skipped.
        let relayed = [
            "relay.example.com; dmarc=fail",
            "mx.example.net; dmarc=pass",
        ];
        assert!(ok(&relayed, None).is_err());
        assert_eq!(ok(&relayed, Some("MX.example.net")), Ok("dmarc"));
        assert!(ok(&["evil.example; dmarc=pass"], Some("mx.example.net")).is_err());
        // Nested comments are counted, not recursed into.
        let nested = format!(
            "mx.example.net; dmarc=pass {}x{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert_eq!(ok(&[&nested], None), Ok("dmarc"));
    }
}
