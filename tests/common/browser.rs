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

    /// Runs a Chrome DevTools Protocol command through chromedriver (it
    /// does not need the page's JavaScript).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            "POST",
            &self.s("/goog/cdp/execute"),
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// Lays pages out as on a device `width` by `height` CSS pixels wide;
    /// `mobile` also honours `<meta name=viewport>` as a phone does.
    pub fn emulate(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// The page's layout in CSS pixels: (content width, content height,
    /// viewport width). Content wider than the viewport scrolls sideways.
    pub fn layout(&self) -> (f64, f64, f64) {
        let m = self.cdp("Page.getLayoutMetrics", json!({}));
        let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("layout metrics: {m}"));
        (
            num(&m["cssContentSize"]["width"]),
            num(&m["cssContentSize"]["height"]),
            num(&m["cssLayoutViewport"]["clientWidth"]),
        )
    }

    /// The rectangle (x, y, width, height) of the element matching `css`.
    pub fn rect(&self, css: &str) -> (f64, f64, f64, f64) {
        let el = self.find(css);
        let r = self.call("GET", &self.s(&format!("/element/{el}/rect")), None);
        let num = |k: &str| r[k].as_f64().unwrap();
        (num("x"), num("y"), num("width"), num("height"))
    }

    /// A computed CSS property of the element matching `css`.
    pub fn css_value(&self, css: &str, property: &str) -> String {
        let el = self.find(css);
        self.call(
            "GET",
            &self.s(&format!("/element/{el}/css/{property}")),
            None,
        )
        .as_str()
        .unwrap()
        .to_string()
    }

    /// Saves a PNG screenshot of the whole page (not only the viewport).
    pub fn full_screenshot(&self, path: &Path) {
        let (width, height, _) = self.layout();
        let v = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
            }),
        );
        let png = base64_decode(v["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
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
        // Chromium's processes too, should the session not have closed:
        // each by PID, and only while it is still the process it was.
        let mut started = Vec::new();
        let mut todo = vec![self.driver.id()];
        while let Some(pid) = todo.pop() {
            for child in crate::common::child_pids(pid) {
                started.extend(start_time(child).map(|t| (child, t)));
                todo.push(child);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        for (pid, t) in started {
            if start_time(pid) == Some(t) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// When process `pid` started (field 22 of /proc/PID/stat), to tell it
/// from a later process given the same PID.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
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
