//! `embargo list`: the reports of a store, most urgent first, as a table
//! (or JSON for scripts).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use embargo::clock::{Clock, parse_rfc3339, rfc3339};
use embargo::reveal::{self, list::ListRow, list::Listing, names::one_line};

use super::Maintainer;
use crate::cli::RevealOpts;
use crate::output::{Cell, Output, Table, UNCHECKED_SIGNATURE_WARNING, human_size};

/// Titles longer than this are cut in the table (not in JSON).
const TITLE_COLUMN_CHARS: usize = 50;
/// Errors longer than this are cut in the table.
const ERROR_COLUMN_CHARS: usize = 120;
/// Beside the state of a case whose reporter wrote and waits for an answer.
pub(super) const REPLY_WAITING: &str = "REPLY WAITING";

pub fn run(
    opts: RevealOpts,
    json: bool,
    all: bool,
    clock: Clock,
    out: &Output,
) -> Result<ExitCode> {
    let m = Maintainer::resolve(opts, out)?;
    let store = reveal::store_root(m.store.as_deref(), None)?;
    // Without maintainer certificates no event verifies: every case reads as new.
    let maintainers = reveal::maintainer_keyring(&store, m.keys_dir.as_deref(), clock)
        .ok()
        .flatten()
        .map(|k| k.entries.into_iter().map(|e| e.cert).collect())
        .unwrap_or_default();
    let listing = reveal::list(&reveal::ListArgs {
        store,
        keys: m.keys,
        signer: m.signer,
        policy: m.policy,
        clock,
        maintainers,
        all,
    })?;
    if listing.any_unchecked() {
        out.line(UNCHECKED_SIGNATURE_WARNING);
    }
    if json {
        out.data(listing.to_json());
    } else {
        out.data_raw(&table(&listing).render(out.stdout_colour));
        out.data_raw(&totals(&listing));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(listing: &Listing) -> Table {
    let mut table = Table::new(vec![
        "ID",
        "RECEIVED (UTC)",
        "AGE",
        "SEVERITY",
        "STATE",
        "FILES",
        "SIZE",
        "ACK DUE",
        "FIX DUE",
        "TITLE",
    ]);
    for r in &listing.rows {
        table.push(row(r));
    }
    table
}

fn row(r: &ListRow) -> Vec<Cell> {
    let mut row = vec![Cell::plain(r.id.clone())];
    if let Some(error) = &r.error {
        row.extend((0..8).map(|_| Cell::plain("-")));
        row.push(Cell::alert(
            format!("CANNOT OPEN: {}", one_line(error, ERROR_COLUMN_CHARS)),
            true,
        ));
        return row;
    }
    let received = r.received_at.as_deref().and_then(parse_rfc3339);
    row.push(Cell::plain(
        received.map(short_time).unwrap_or_else(|| "?".into()),
    ));
    row.push(Cell::plain(
        r.age_seconds
            .map(|s| age(Duration::from_secs(s)))
            .unwrap_or_else(|| "?".into()),
    ));
    let severity = r.severity.map(|s| s.to_string()).unwrap_or_default();
    row.push(Cell::plain(match r.cvss_score {
        Some(score) => format!("{severity} {score:.1}"),
        None => severity,
    }));
    let state = r.state.map_or("-", |s| s.as_str());
    row.push(if r.reply_waiting {
        Cell::alert(format!("{state} {REPLY_WAITING}"), true)
    } else {
        Cell::plain(state)
    });
    row.push(Cell::plain(r.attachments.unwrap_or(0).to_string()));
    row.push(Cell::plain(human_size(r.attachments_bytes.unwrap_or(0))));
    for (due, overdue) in [
        (&r.acknowledge_by, r.acknowledge_overdue),
        (&r.fix_by, r.fix_overdue),
    ] {
        let text = due
            .as_deref()
            .and_then(parse_rfc3339)
            .map(short_time)
            .unwrap_or_else(|| "-".into());
        let text = if overdue {
            format!("{text} OVERDUE")
        } else {
            text
        };
        row.push(Cell::alert(text, overdue));
    }
    row.push(Cell::plain(one_line(
        r.title.as_deref().unwrap_or(""),
        TITLE_COLUMN_CHARS,
    )));
    row
}

/// The line under the table: how many, how many overdue or unreadable.
fn totals(listing: &Listing) -> String {
    let rows = &listing.rows;
    let unreadable = rows.iter().filter(|r| r.error.is_some()).count();
    let overdue = rows
        .iter()
        .filter(|r| r.acknowledge_overdue || r.fix_overdue)
        .count();
    let waiting = rows.iter().filter(|r| r.reply_waiting).count();
    let waiting = if waiting > 0 {
        format!(", {waiting} waiting for a reply")
    } else {
        String::new()
    };
    format!(
        "{} report{}, {overdue} overdue{waiting}, {unreadable} cannot be opened with this key (now {}).\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        rfc3339(listing.now)
    )
}

fn short_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    t.format(&format).unwrap_or_else(|_| "?".into())
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 7200)), "3d 2h");
        assert_eq!(age(Duration::from_secs(59)), "0m");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
