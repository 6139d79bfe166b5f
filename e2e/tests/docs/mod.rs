//! The developer docs against the tree: every file or folder
//! `docs/architecture.md` and `SECURITY.md` cite exists, so a move or a
//! rename that leaves them behind fails here.

mod paths;
