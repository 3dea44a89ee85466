//! The panel: one HTML page, its stylesheet and its script, compiled into the binary.
//!
//! No build step and no files to deploy beside the binary: the page is plain HTML, CSS and
//! JavaScript that talks to the JSON API ([`crate::gateway::operator::api`]). The assets hold no data and no
//! secret, so they are served to anyone; everything they show comes from `/api/…`, which asks
//! for the admin token. The headers keep the page out of frames and forbid any script or
//! style that is not one of these files.

use crate::http1;
use std::io::Write;

const INDEX: &str = include_str!("index.html");
const CSS: &str = include_str!("panel.css");
const JS: &str = include_str!("panel.js");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The asset served at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX)),
        "/panel.css" => Some(("text/css; charset=utf-8", CSS)),
        "/panel.js" => Some(("text/javascript; charset=utf-8", JS)),
        _ => None,
    }
}

/// Writes the asset at `path` (a path [`asset`] knows).
pub fn write<W: Write>(out: &mut W, path: &str, keep_alive: bool) -> std::io::Result<()> {
    let Some((content_type, body)) = asset(path) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such panel asset",
        ));
    };
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), content_type.into()),
        ("Content-Length".into(), body.len().to_string()),
        ("Cache-Control".into(), "no-cache".into()),
        ("Content-Security-Policy".into(), CSP.into()),
        ("X-Content-Type-Options".into(), "nosniff".into()),
        ("X-Frame-Options".into(), "DENY".into()),
        ("Referrer-Policy".into(), "no-referrer".into()),
    ];
    if !keep_alive {
        headers.push(("Connection".into(), "close".into()));
    }
    http1::write_head(out, 200, &headers)?;
    out.write_all(body.as_bytes())?;
    out.flush()
}
