//! Debian's headless Chromium driven over WebDriver (chromedriver), with
//! JavaScript disabled. Both processes stop when the guard drops.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether chromium and chromedriver are installed.
pub fn available() -> bool {
    Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()
}

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with JavaScript off.
    pub fn start() -> Browser {
        // Port 0: chromedriver binds a free port itself and announces it.
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg("--port=0")
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (apt-get install chromium-driver)");
        let out = crate::common::Logs::capture(driver.stdout.take().unwrap());
        let line = out.wait_for("started successfully on port ", Duration::from_secs(30));
        let port: u16 = line
            .rsplit(' ')
            .next()
            .and_then(|p| p.trim_end_matches('.').parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        crate::common::wait_until("chromedriver to be ready", Duration::from_secs(30), || {
            browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .and_then(|v| v["value"]["ready"].as_bool())
                == Some(true)
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1100,2600",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
                "prefs": { "profile.managed_default_content_settings.javascript": 2 }
            }
        }}});
        let v = browser.call("POST", "/session", Some(caps));
        browser.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        // Finding an element waits for the page that has it (a submit
        // returns before the next page has loaded on a busy machine).
        browser.call(
            "POST",
            &browser.s("/timeouts"),
            Some(json!({ "implicit": 10_000 })),
        );
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.http.post(url).json(&body.unwrap_or(json!({}))),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        };
        let v: Value = req.send().unwrap().json().unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path} failed: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    /// The element matching a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/value")),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.call("POST", &self.s(&format!("/element/{el}/click")), None);
    }

    pub fn text_of(&self, css: &str) -> String {
        let el = self.find(css);
        self.call("GET", &self.s(&format!("/element/{el}/text")), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Resizes the window (e.g. to a phone's width).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        );
    }

    pub fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.call("GET", &self.s("/title"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64_decode(v.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver screenshots).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
