//! The main command-line mistakes, pinned whole: for each, the exact exit
//! code, stdout and stderr of the real binary (temporary paths replaced by
//! `[SITE]`, log timestamps by `[TIME]`), so a change to any of these
//! messages is a deliberate one.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{Site, armored_public, armored_secret, sequoia_key};

/// What a run printed, normalised for comparison.
#[derive(Debug, PartialEq)]
struct Seen {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `embargo ARGS` from `site` with the environment a user has (no
/// EMBARGO_LOG, no config variable) and normalises what it printed.
fn run(site: &Site, args: &[&str]) -> Seen {
    let out = assert_cmd::Command::new(common::embargo_bin())
        .current_dir(site.path())
        .env_remove("EMBARGO_CONFIG")
        .env_remove("EMBARGO_LOG")
        .env_remove("EMBARGO_LOG_FORMAT")
        .env_remove("EMBARGO_MAINTAINER")
        .env("XDG_CONFIG_HOME", "/nonexistent/embargo-tests")
        .env("NO_COLOR", "1")
        .env("TMPDIR", site.tmp_dir())
        .args(args)
        .output()
        .unwrap();
    let clean = |bytes: &[u8]| normalise(site, &String::from_utf8_lossy(bytes));
    Seen {
        code: out.status.code(),
        stdout: clean(&out.stdout),
        stderr: clean(&out.stderr),
    }
}

/// Replaces the site's path by `[SITE]` and a leading log timestamp by `[TIME]`.
fn normalise(site: &Site, text: &str) -> String {
    let text = text.replace(&site.path().display().to_string(), "[SITE]");
    text.split_inclusive('\n')
        .map(|line| match line.split_once(' ') {
            Some((first, rest))
                if first.len() > 20
                    && first.ends_with('Z')
                    && first.as_bytes()[4] == b'-'
                    && first.as_bytes()[10] == b'T' =>
            {
                format!("[TIME] {rest}")
            }
            _ => line.to_string(),
        })
        .collect()
}

fn seen(code: i32, stdout: &str, stderr: &str) -> Seen {
    Seen {
        code: Some(code),
        stdout: stdout.to_string(),
        stderr: stderr.to_string(),
    }
}

/// The site path as a string, for arguments.
fn at(site: &Site, name: &str) -> String {
    site.path().join(name).display().to_string()
}

/// A site with one usable maintainer certificate; returns its secret key file.
fn site_with_key() -> (Site, PathBuf) {
    let site = Site::new();
    let cert = sequoia_key("Maintainer <m@example.org>");
    site.add_key("maintainer.asc", &armored_public(&cert));
    let key = site.path().join("maintainer-secret.asc");
    fs::write(&key, armored_secret(&cert)).unwrap();
    (site, key)
}

#[test]
fn a_missing_config_file() {
    let site = Site::new();
    let missing = at(&site, "missing.toml");
    assert_eq!(
        run(&site, &["keys", "check", "-c", &missing]),
        seen(
            1,
            "",
            "embargo: error: cannot read config file [SITE]/missing.toml: No such file or directory (os error 2); check the path given with -c or EMBARGO_CONFIG\n"
        )
    );
}

#[test]
fn a_config_with_an_unknown_key() {
    let site = Site::new();
    site.write_config("bogus_key = 1");
    let config = at(&site, "embargo.toml");
    assert_eq!(
        run(&site, &["keys", "check", "-c", &config]),
        seen(
            1,
            "",
            "embargo: error: invalid config file [SITE]/embargo.toml: TOML parse error at line 5, column 1\n  |\n5 | bogus_key = 1\n  | ^^^^^^^^^\nunknown field `bogus_key`, expected one of `listen`, `keys_dir`, `state_dir`, `store`, `message_format`, `key_expiry_warning`, `project_name`, `policy_url`, `public_url`, `security_txt_expires`, `metrics_listen`, `limits`, `policy`, `maintainers`, `smtp`, `mailbox`, `retention`, `advisory`\n"
        )
    );
}

#[test]
fn a_config_with_a_bad_value() {
    let site = Site::new();
    site.write_config("listen = 5");
    let config = at(&site, "embargo.toml");
    assert_eq!(
        run(&site, &["keys", "check", "-c", &config]),
        seen(
            1,
            "",
            "embargo: error: invalid config file [SITE]/embargo.toml: TOML parse error at line 5, column 10\n  |\n5 | listen = 5\n  |          ^\ninvalid type: integer `5`, expected a string\n"
        )
    );
}

#[test]
fn seal_with_a_missing_report_file() {
    let (site, _) = site_with_key();
    let (config, report) = (at(&site, "embargo.toml"), at(&site, "nope.json"));
    assert_eq!(
        run(&site, &["seal", "-c", &config, "--report", &report]),
        seen(
            1,
            "",
            "embargo: error: cannot read the report file [SITE]/nope.json: No such file or directory (os error 2); check the path given with --report\n"
        )
    );
}

#[test]
fn seal_with_invalid_report_json() {
    let (site, _) = site_with_key();
    fs::write(site.path().join("bad.json"), "{\"report\": ").unwrap();
    let (config, report) = (at(&site, "embargo.toml"), at(&site, "bad.json"));
    assert_eq!(
        run(&site, &["seal", "-c", &config, "--report", &report]),
        seen(
            1,
            "",
            "embargo: error: the report is invalid: report is not valid input JSON: EOF while parsing a value at line 1 column 11; fix the input JSON and run again (nothing was stored)\n"
        )
    );
    assert!(site.report_ids().is_empty());
}

#[test]
fn decrypt_without_key_or_gpg_is_a_usage_error() {
    let (site, _) = site_with_key();
    let store = site.store_dir().display().to_string();
    assert_eq!(
        run(
            &site,
            &["decrypt", "K7Q3M-2XDA9-TF4BC-1ZP0R", "--store", &store]
        ),
        seen(
            2,
            "",
            "embargo: error: no secret key: give --key FILE or --gpg (or `key` or `gpg = true` in the maintainer profile, maintainer.toml)\n"
        )
    );
}

#[test]
fn decrypt_of_an_id_not_in_the_store() {
    let (site, key) = site_with_key();
    site.store();
    let store = site.store_dir().display().to_string();
    let key = key.display().to_string();
    assert_eq!(
        run(
            &site,
            &[
                "decrypt",
                "K7Q3M-2XDA9-TF4BC-1ZP0R",
                "--store",
                &store,
                "--key",
                &key
            ]
        ),
        seen(
            1,
            "",
            "embargo: error: report K7Q3M-2XDA9-TF4BC-1ZP0R is not in the store (or is incomplete)\n"
        )
    );
}

#[test]
fn list_with_no_store() {
    let (site, key) = site_with_key();
    let key = key.display().to_string();
    assert_eq!(
        run(&site, &["list", "--key", &key]),
        seen(
            2,
            "",
            "embargo: error: no store given: use --store DIR (the directory holding reports/) or -c FILE\n"
        )
    );
}

#[test]
fn fetch_with_a_missing_token_file() {
    let site = Site::new();
    let (token, local) = (at(&site, "no-token"), at(&site, "local"));
    assert_eq!(
        run(
            &site,
            &[
                "fetch",
                "--from",
                "https://security.example.org",
                "--token-file",
                &token,
                "--store",
                &local
            ]
        ),
        seen(
            1,
            "",
            "embargo: error: cannot read [SITE]/no-token: No such file or directory (os error 2)\n"
        )
    );
}

#[test]
fn keys_check_with_no_usable_certificate() {
    let site = Site::new();
    let config = at(&site, "embargo.toml");
    assert_eq!(
        run(&site, &["keys", "check", "-c", &config]),
        seen(
            1,
            "Certificates in [SITE]/keys:\n  (none: put the maintainers' public certificates here as *.asc or *.pgp)\n0 of 0 certificates usable.\n",
            "embargo: error: no usable maintainer certificate in [SITE]/keys (the directory holds no *.asc or *.pgp certificate): reports are refused until one is added (run `embargo keys check` for each certificate's status)\n"
        )
    );
}

#[test]
fn token_new_onto_an_existing_file() {
    let site = Site::new();
    fs::write(site.path().join("existing"), "keep me\n").unwrap();
    let existing = at(&site, "existing");
    assert_eq!(
        run(&site, &["token", "new", "--out", &existing]),
        seen(
            1,
            "",
            "embargo: error: [SITE]/existing already exists: `token new` never overwrites a file; choose another --out or remove it first\n"
        )
    );
    assert_eq!(
        fs::read_to_string(site.path().join("existing")).unwrap(),
        "keep me\n"
    );
}

#[test]
fn a_bad_now() {
    let (site, key) = site_with_key();
    site.store();
    let store = site.store_dir().display().to_string();
    let key = key.display().to_string();
    assert_eq!(
        run(
            &site,
            &[
                "list",
                "--store",
                &store,
                "--key",
                &key,
                "--now",
                "yesterday"
            ]
        ),
        seen(
            2,
            "",
            "embargo: error: --now \"yesterday\" is not an RFC 3339 time like 2026-11-23T16:40:00Z\n"
        )
    );
}

/// Too many attachments is a usage mistake: exit 2, and nothing stored.
#[test]
fn seal_with_too_many_attachments_is_a_usage_error() {
    let (site, _) = site_with_key();
    site.write_config("[limits]\nmax_attachments = 1");
    fs::write(
        site.path().join("report.json"),
        common::report_json("t", "d"),
    )
    .unwrap();
    fs::write(site.path().join("a.txt"), "a").unwrap();
    fs::write(site.path().join("b.txt"), "b").unwrap();
    let config = at(&site, "embargo.toml");
    let (report, a, b) = (
        at(&site, "report.json"),
        at(&site, "a.txt"),
        at(&site, "b.txt"),
    );
    assert_eq!(
        run(&site, &["seal", "-c", &config, "--report", &report, &a, &b]),
        seen(
            2,
            "",
            "embargo: error: 2 attachments given, but [limits] max_attachments is 1; attach fewer files (an archive holds many) or raise the limit\n"
        )
    );
    assert!(site.report_ids().is_empty());
}
