//! The mailbox poller (DESIGN §8): IMAP and Maildir intake, exactly once.
