//! The maintainer side (DESIGN §5): `decrypt`, `list`, `fetch` and fetch tokens.
