//! A real browser (Debian's headless Chromium, JavaScript disabled) fills
//! the report form, attaches a file, submits it and gets the receipt; the
//! sealed report then holds every field and the file's bytes. And the
//! reporter channel end to end: the reply code from the receipt opens the
//! status page, which shows the maintainers' reply (never their notes) and
//! takes an answer with a file that the maintainers decrypt byte for byte;
//! wrong codes all look alike and a typo is told apart. Each page is
//! screenshotted at desktop and phone widths and must not scroll sideways.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;

use browser::Browser;
use common::{Site, random_bytes};
use embargo::id::ReportId;
use server::Server;

/// Where screenshots are kept for people to look at.
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

#[test]
fn chromium_without_javascript_submits_the_form_with_a_file() {
    assert!(
        browser::available(),
        "this test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
    );
    let site = Site::new();
    let secret = common::sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &common::armored_public(&secret));
    site.write_config("listen = \"127.0.0.1:0\"\npolicy_url = \"https://example.org/security\"\n[limits]\nrate_limit_per_minute = 1000\n");
    let srv = Server::start(&site);

    let mut poc = b"<!-- proof of concept -->\n".to_vec();
    poc.extend(random_bytes(300_000, 42));
    let poc_path = site.tmp_dir().join("poc-exploit.html");
    std::fs::write(&poc_path, &poc).unwrap();

    let b = Browser::start();
    // JavaScript is really off: a page's own script does not run, and
    // <noscript> content is parsed as elements.
    b.goto("data:text/html,<p id=js>off</p><noscript><p id=ns>no script</p></noscript><script>document.getElementById('js').textContent='on'</script>");
    assert_eq!(b.text_of("#js"), "off", "JavaScript must be disabled");
    assert_eq!(b.text_of("#ns"), "no script");

    b.goto(&srv.url("/"));
    assert!(
        b.title().contains("Report a vulnerability"),
        "{}",
        b.title()
    );

    let text_fields = [
        ("title", "Path traversal in the export endpoint"),
        ("affected_versions", "2.0.0 - 2.3.1"),
        ("environment", "Debian 12, default configuration"),
        (
            "cvss_vector",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        ),
        ("cwe", "CWE-22"),
        (
            "description",
            "GET /export?file=../../etc/passwd returns the file. Ünïcödé ✓",
        ),
        ("impact", "Read any file the service can read."),
        (
            "steps_to_reproduce",
            "1. Start the server\n2. Request the URL above",
        ),
        ("mitigations", "Canonicalise and check the path."),
        ("reporter_name", "Browser Tester"),
        ("reporter_email", "tester@example.org"),
    ];
    for (name, value) in text_fields {
        b.type_into(&format!("#f-{name}"), value);
    }
    b.click("#f-severity option[value=\"high\"]");
    b.click("#f-credit option[value=\"name\"]");
    b.type_into("#f-attachment", poc_path.to_str().unwrap());
    b.screenshot(&artifacts().join("browser-form.png"));
    b.click("button[type=submit]");

    let id = b.text_of("#report-id");
    id.parse::<ReportId>()
        .unwrap_or_else(|_| panic!("the receipt shows a report ID, got {id:?}"));
    assert!(b.title().contains("Report received"));
    let source = b.source();
    assert!(source.contains("BEGIN PGP SIGNED MESSAGE") && source.contains("poc-exploit.html"));
    b.screenshot(&artifacts().join("browser-receipt.png"));
    // The form on a phone-sized window: no horizontal scrolling needed.
    b.resize(390, 1400);
    b.goto(&srv.url("/"));
    b.screenshot(&artifacts().join("browser-form-phone.png"));
    drop(b);

    let opener = common::opener(&secret, Some(site.signing_cert()));
    let rid: ReportId = id.parse().unwrap();
    let manifest = opener.open_manifest(&site.store(), &rid).unwrap().manifest;
    assert_eq!(manifest.channel, embargo::seal::Channel::Web);
    let report = serde_json::to_value(&manifest.report).unwrap();
    for (name, value) in text_fields.iter().take(9) {
        match *name {
            "cvss_vector" => assert_eq!(report["cvss"]["vector"], *value),
            "cwe" => assert_eq!(report["cwe"][0], *value),
            // Browsers send textarea line breaks as CRLF.
            _ => assert_eq!(
                report[name].as_str().unwrap().replace("\r\n", "\n"),
                *value,
                "{name}"
            ),
        }
    }
    assert_eq!(report["severity"], "high");
    assert_eq!(manifest.reporter.name, "Browser Tester");
    assert_eq!(manifest.reporter.email, "tester@example.org");
    assert_eq!(manifest.reporter.credit, embargo::report::Credit::Name);
    assert_eq!(manifest.attachments.len(), 1);
    assert_eq!(manifest.attachments[0].name, "poc-exploit.html");
    assert_eq!(manifest.attachments[0].media_type, "text/html");
    let mut bytes = Vec::new();
    opener
        .decrypt_attachment(&site.store(), &rid, &manifest.attachments[0], &mut bytes)
        .unwrap();
    assert!(
        bytes == poc,
        "the attachment decrypts to the file's exact bytes"
    );
}

/// Where the reporter-channel screenshots go: `$EMBARGO_SHOTS`, else a
/// directory under Cargo's temporary directory for tests.
fn shots() -> PathBuf {
    let dir = std::env::var_os("EMBARGO_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-shots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The desktop and phone layouts every reporter page is checked at.
const DESKTOP: (u32, u32, bool) = (1280, 900, false);
const PHONE: (u32, u32, bool) = (390, 844, true);

/// Shows the current page at `size`, saves a viewport and a full-page
/// screenshot as `NAME-WIDTH[-full].png`, and checks nothing makes the
/// page scroll sideways.
fn shoot(b: &Browser, dir: &std::path::Path, name: &str, (w, h, mobile): (u32, u32, bool)) {
    b.emulate(w, h, mobile);
    let (content, _, viewport) = b.layout();
    // A desktop viewport loses its scrollbar's width.
    assert!(
        viewport <= f64::from(w) && viewport > f64::from(w) - 20.0,
        "{name}: the viewport is {viewport}px wide, not about {w} (a phone widens it to fit content that is too wide)"
    );
    assert!(
        content <= viewport,
        "{name} at {w}px scrolls sideways: content {content}px wide"
    );
    let shot = dir.join(format!("{name}-{w}.png"));
    b.screenshot(&shot);
    b.full_screenshot(&dir.join(format!("{name}-{w}-full.png")));
    println!("screenshot: {}", shot.display());
}

/// `embargo ARGS` in the site, with `stdin`; panics with its output if it fails.
fn embargo_ok(site: &Site, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = site
        .embargo()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "embargo {args:?}: {said}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chromium_without_javascript_reads_replies_and_answers_with_the_reply_code() {
    assert!(
        browser::available(),
        "this test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
    );
    let shots = shots();
    println!("screenshots in {}", shots.display());
    let site = Site::new();
    let work = tempfile::tempdir().unwrap();
    let (a, other) = (
        common::sequoia_key("Maintainer A <a@example.org>"),
        common::sequoia_key("Maintainer B <b@example.org>"),
    );
    site.add_key("a.asc", &common::armored_public(&a));
    site.add_key("b.asc", &common::armored_public(&other));
    let token_file = work.path().join("token");
    let entry = site.maintainer_token(&token_file);
    site.write_config(&format!(
        "listen = \"127.0.0.1:0\"\n[limits]\nrate_limit_per_minute = 1000\n[maintainers]\ntoken_sha256 = [{entry}]\n"
    ));
    let srv = Server::start(&site);
    let key_file = work.path().join("a.asc");
    std::fs::write(&key_file, common::armored_secret(&a)).unwrap();
    let (key, token) = (
        key_file.display().to_string(),
        token_file.display().to_string(),
    );
    let store = work.path().join("store-a").display().to_string();
    let fetch = || {
        embargo_ok(
            &site,
            &[
                "fetch",
                "--from",
                &srv.base,
                "--token-file",
                &token,
                "--store",
                &store,
            ],
            b"",
        )
    };
    let case = |action: &str, id: &str, extra: &[&str], stdin: &[u8]| {
        let mut args = vec![
            "case",
            action,
            id,
            "--store",
            &store,
            "--key",
            &key,
            "--intake",
            &srv.base,
            "--token-file",
            &token,
        ];
        args.extend(extra);
        embargo_ok(&site, &args, stdin)
    };

    let b = Browser::start();
    b.goto("data:text/html,<p id=js>off</p><script>document.getElementById('js').textContent='on'</script>");
    assert_eq!(b.text_of("#js"), "off", "JavaScript must be disabled");

    // 1. A report with a file through the form; the receipt shows the code.
    let poc_path = site.tmp_dir().join("poc.txt");
    std::fs::write(&poc_path, b"CANARY-FIRST-POC the first proof").unwrap();
    b.goto(&srv.url("/"));
    b.type_into("#f-title", "Session fixation in the login form");
    b.type_into(
        "#f-description",
        "The session ID survives the login, so a planted one is reused.",
    );
    b.type_into("#f-attachment", poc_path.to_str().unwrap());
    b.click("button[type=submit]");
    let id = b.text_of("#report-id");
    let rid: ReportId = id
        .parse()
        .unwrap_or_else(|_| panic!("the receipt shows a report ID, got {id:?}"));
    let code = b.text_of("#reply-code");
    assert_eq!(code.len(), 34, "seven groups of four: {code:?}");
    assert!(
        embargo::reply::ReplyCode::parse(&code).is_ok(),
        "the receipt shows a valid code: {code:?}"
    );
    assert!(b.source().contains("poc.txt"), "the receipt lists the file");
    for (size, max_lines) in [(DESKTOP, 1.0), (PHONE, 2.0)] {
        shoot(&b, &shots, "receipt", size);
        // The code is one piece, whole on screen, on one line (two on a
        // phone, broken between groups), selected with one tap.
        let (x, _, w, h) = b.rect("#reply-code");
        assert!(
            x >= 0.0 && x + w <= f64::from(size.0),
            "the code fits the width"
        );
        let line: f64 = b
            .css_value("#reply-code", "line-height")
            .trim_end_matches("px")
            .parse()
            .unwrap();
        assert!(
            h < (max_lines + 0.9) * line,
            "the code takes more than {max_lines} lines at {}px: {h}px high",
            size.0
        );
        assert_eq!(
            b.text_of("#reply-code"),
            code,
            "the code reads as one piece"
        );
        assert_eq!(b.css_value("#reply-code", "user-select"), "all");
    }

    // 2. The maintainer replies, and writes a note the reporter never sees.
    fetch();
    case(
        "reply",
        &id,
        &[],
        b"CANARY-BROWSER-REPLY: which browser did you use?",
    );
    case(
        "note",
        &id,
        &[],
        b"CANARY-BROWSER-NOTE internal only, do not show",
    );

    // 3. The reporter reads the reply with the code.
    b.emulate(DESKTOP.0, DESKTOP.1, DESKTOP.2);
    b.goto(&srv.url("/status"));
    assert!(b.title().contains("status"), "{}", b.title());
    shoot(&b, &shots, "status-form", DESKTOP);
    shoot(&b, &shots, "status-form", PHONE);
    b.emulate(DESKTOP.0, DESKTOP.1, DESKTOP.2);
    b.type_into("#code", &code);
    b.click("form[action=\"/status\"] button[type=submit]");
    assert_eq!(b.text_of("#report-id"), id);
    let timeline = b.text_of("#timeline");
    assert!(
        timeline.contains("CANARY-BROWSER-REPLY: which browser did you use?"),
        "{timeline}"
    );
    let source = b.source();
    assert!(
        !source.contains("CANARY-BROWSER-NOTE"),
        "a note reached the reporter"
    );
    assert!(!b.text_of("#case-state").is_empty());
    assert!(
        !b.text_of("#promises").contains("acknowledgement"),
        "a reply acknowledges: {}",
        b.text_of("#promises")
    );
    for size in [DESKTOP, PHONE] {
        shoot(&b, &shots, "status-case", size);
    }

    // 4. The reporter answers with a message and a file from the page.
    let mut answer_file = b"CANARY-ANSWER-FILE \x00\x01\xff second stage\n".to_vec();
    answer_file.extend(random_bytes(100_000, 7));
    let answer_path = site
        .tmp_dir()
        .join("stage2_session_fixation_exploit_for_the_login_form.bin");
    std::fs::write(&answer_path, &answer_file).unwrap();
    b.emulate(DESKTOP.0, DESKTOP.1, DESKTOP.2);
    b.type_into(
        "#message",
        "CANARY-BROWSER-ANSWER Chromium 120\nand the second stage is attached.",
    );
    b.type_into("#attachment", answer_path.to_str().unwrap());
    b.click("form[action=\"/status/messages\"] button[type=submit]");
    let notice = b.text_of("#status-notice");
    assert!(notice.contains("sent to the maintainers"), "{notice}");
    let mine = b.text_of("#timeline li.event.from-you");
    assert!(
        mine.contains("CANARY-BROWSER-ANSWER Chromium 120")
            && mine.contains("and the second stage is attached."),
        "{mine}"
    );
    assert!(
        mine.contains("stage2_session_fixation_exploit_for_the_login_form.bin"),
        "{mine}"
    );
    assert!(
        b.text_of("#timeline")
            .contains("CANARY-BROWSER-REPLY: which browser did you use?")
    );
    assert!(!b.source().contains("CANARY-BROWSER-NOTE"));
    for size in [DESKTOP, PHONE] {
        shoot(&b, &shots, "status-answered", size);
    }

    // 5. The maintainer sees the answer, and its file is the same bytes.
    fetch();
    let shown = case("show", &id, &[], b"");
    assert!(
        shown.contains("CANARY-BROWSER-ANSWER Chromium 120"),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&case("show", &id, &["--json"], b"")).unwrap();
    let entry = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["kind"] == "reporter-message")
        .unwrap_or_else(|| panic!("no reporter message in {json}"));
    assert_eq!(entry["verified"], true, "{entry}");
    let answer = &entry["event"];
    assert_eq!(
        answer["message"].as_str().unwrap().replace("\r\n", "\n"),
        "CANARY-BROWSER-ANSWER Chromium 120\nand the second stage is attached."
    );
    let files = answer["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{answer}");
    assert_eq!(
        files[0]["name"],
        "stage2_session_fixation_exploit_for_the_login_form.bin"
    );
    assert_eq!(files[0]["size"], answer_file.len());
    use sha2::Digest;
    assert_eq!(
        files[0]["sha256"],
        hex::encode(sha2::Sha256::digest(&answer_file))
    );
    let sealed = site
        .reports_dir()
        .join(rid.to_string())
        .join("files")
        .join(files[0]["file"].as_str().unwrap());
    let gpg = common::Gpg::new();
    gpg.import(&common::armored_secret(&a));
    let (plain, _) = gpg.decrypt(&sealed);
    assert!(
        plain == answer_file,
        "the follow-up file decrypts to the exact bytes"
    );

    // 6. Two wrong codes get the same page; a typo is told apart.
    let wrong_page = |wrong: &str| {
        b.goto(&srv.url("/status"));
        b.type_into("#code", wrong);
        b.click("form[action=\"/status\"] button[type=submit]");
        let error = b.text_of("#status-error");
        let source = b.source();
        assert!(!source.contains(&id), "a wrong code shows no report");
        assert!(!source.contains("CANARY"), "a wrong code shows nothing");
        (error, b.text_of("main"))
    };
    let one = embargo::reply::ReplyCode::generate().display().to_string();
    let two = embargo::reply::ReplyCode::generate().display().to_string();
    let (e1, page1) = wrong_page(&one);
    let (e2, page2) = wrong_page(&two);
    assert!(e1.contains("no report answers to this reply code"), "{e1}");
    assert_eq!(e1, e2, "two wrong codes get the same answer");
    assert_eq!(page1, page2);
    assert!(
        !page1.contains(&one) && !page1.contains(&two),
        "the page does not echo the code"
    );
    for size in [DESKTOP, PHONE] {
        shoot(&b, &shots, "status-wrong-code", size);
    }
    b.emulate(DESKTOP.0, DESKTOP.1, DESKTOP.2);
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    let (e3, _) = wrong_page(&typo);
    assert!(e3.contains("typo"), "{e3}");
    assert_ne!(e3, e1);
    shoot(&b, &shots, "status-typo", PHONE);
    drop(b);
    println!("screenshots in {}", shots.display());
}
