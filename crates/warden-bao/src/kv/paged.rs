//! A list too long for one KV v2 value, kept as a small head plus pages (ADR 0014).
//!
//! OpenBao refuses a request body with more than 1,000 JSON strings
//! (`max_request_json_strings`), and raft refuses a storage entry above `max_entry_size`
//! (1 MiB by default). A record that lists one item per identity (the ownership record, a
//! purpose's credentials) reaches the first at a few hundred identities if it is a JSON array,
//! and the second at some tens of thousands if it is one string. So such a list is stored as:
//!
//! - **pages**: KV v2 entries `<folder>/0`, `<folder>/1`, …, each with one field
//!   [`PAGE_FIELD`] holding items joined by `\n`, at most [`PAGE_BYTES`] bytes per page — one
//!   JSON string per request, far below every limit at any size;
//! - **a head** ([`PageHead`]) inside the record itself: how many pages and items, and a
//!   checksum of the whole list, so a reader notices a list whose pages were not all written
//!   (an apply that died half way) instead of trusting a mix of old and new pages.
//!
//! Writers write the pages first and the head last. Pages are a pure function of the list
//! ([`split`]), so an unchanged list produces byte-identical pages and a no-op writer can skip
//! them. Where the pages live is the caller's contract (`warden_spec::naming`); this module
//! only knows a folder's `data/` path.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Error;
use crate::retry::Idempotent;

/// The one field of a page.
pub const PAGE_FIELD: &str = "lines";

/// Largest page, in bytes of joined items: a quarter of raft's default `max_entry_size`,
/// leaving room for KV v2's envelope, and one string however many items it holds.
pub const PAGE_BYTES: usize = 256 * 1024;

/// Pages read at once: enough to keep one keep-alive client busy, few enough to be polite to a
/// shared server.
const READ_CONCURRENCY: usize = 8;

/// What a record says about its pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageHead {
    /// Number of pages (`<folder>/0` … `<folder>/<pages - 1>`).
    pub pages: usize,
    /// Number of items across all pages.
    pub items: usize,
    /// `fnv1a64:<16 hex digits>` of the items joined by `\n`: detects a torn write, not an
    /// attacker (whoever can write the pages can write the head).
    pub checksum: String,
}

/// A list cut into pages, with its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged {
    /// The head to store in the record.
    pub head: PageHead,
    /// Each page's [`PAGE_FIELD`] value, in order.
    pub pages: Vec<String>,
}

impl Paged {
    /// The body to write to page `n`.
    pub fn page_body(&self, n: usize) -> Value {
        json!({ "data": { PAGE_FIELD: self.pages[n] } })
    }
}

/// Why a paged list could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PagedError {
    /// A page could not be read.
    #[error("reading page {path}: {source}")]
    Read {
        /// The page's API path.
        path: String,
        /// The client's error (boxed: it is large, and this error is returned often).
        #[source]
        source: Box<Error>,
    },
    /// A page the head names does not exist or has no [`PAGE_FIELD`].
    #[error(
        "page {path} is missing (the head names {pages} pages); the writer stopped half way: write the record again"
    )]
    Missing {
        /// The page's API path.
        path: String,
        /// Pages the head names.
        pages: usize,
    },
    /// The pages do not add up to what the head says.
    #[error(
        "the pages under {folder} do not match their head ({reason}); the writer stopped half way: write the record again"
    )]
    Torn {
        /// The pages' folder (`data/` path).
        folder: String,
        /// What differs.
        reason: String,
    },
}

/// `fnv1a64:<hex>` of `items` joined by `\n`.
pub fn checksum<S: AsRef<str>>(items: &[S]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, item) in items.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"\n" };
        for b in sep.iter().chain(item.as_ref().as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("fnv1a64:{h:016x}")
}

/// Cuts `items` into pages of at most [`PAGE_BYTES`]. Items must not contain `\n` (ids and
/// credential references never do); an item longer than a page gets a page of its own.
pub fn split<S: AsRef<str>>(items: &[S]) -> Paged {
    split_at(items, PAGE_BYTES)
}

fn split_at<S: AsRef<str>>(items: &[S], page_bytes: usize) -> Paged {
    let mut pages: Vec<String> = Vec::new();
    let mut page = String::new();
    for item in items {
        let item = item.as_ref();
        debug_assert!(!item.contains('\n'), "a paged item holds a newline");
        if !page.is_empty() && page.len() + 1 + item.len() > page_bytes {
            pages.push(std::mem::take(&mut page));
        }
        if !page.is_empty() {
            page.push('\n');
        }
        page.push_str(item);
    }
    if !page.is_empty() {
        pages.push(page);
    }
    Paged {
        head: PageHead {
            pages: pages.len(),
            items: items.len(),
            checksum: checksum(items),
        },
        pages,
    }
}

/// The items of `pages`, checked against `head`; `folder` names them in errors.
pub fn join(head: &PageHead, pages: &[String], folder: &str) -> Result<Vec<String>, PagedError> {
    let torn = |reason: String| PagedError::Torn {
        folder: folder.to_owned(),
        reason,
    };
    if pages.len() != head.pages {
        return Err(torn(format!(
            "{} pages, the head names {}",
            pages.len(),
            head.pages
        )));
    }
    let items: Vec<String> = pages
        .iter()
        .flat_map(|p| p.split('\n'))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if items.len() != head.items {
        return Err(torn(format!(
            "{} items, the head says {}",
            items.len(),
            head.items
        )));
    }
    let sum = checksum(&items);
    if sum != head.checksum {
        return Err(torn(format!(
            "checksum {sum}, the head says {}",
            head.checksum
        )));
    }
    Ok(items)
}

/// The `data/` path of page `n` in `folder` (itself a `data/` path).
pub fn page_path(folder: &str, n: usize) -> String {
    format!("{folder}/{n}")
}

/// Reads the pages `head` names under `folder` (a KV v2 `data/` path), a few at a time, and
/// returns the checked items.
pub async fn read(
    client: &Client,
    folder: &str,
    head: &PageHead,
) -> Result<Vec<String>, PagedError> {
    let read = crate::bounded::run(0..head.pages, READ_CONCURRENCY, |n| async move {
        let path = page_path(folder, n);
        let text = match client.read(&path).await {
            Ok(s) => s
                .data
                .as_ref()
                .and_then(|d| d.get("data"))
                .and_then(|d| d.get(PAGE_FIELD))
                .and_then(Value::as_str)
                .map(str::to_owned),
            Err(e) if e.is_not_found() => None,
            Err(source) => {
                return Err(PagedError::Read {
                    path,
                    source: Box::new(source),
                });
            }
        };
        text.ok_or(PagedError::Missing {
            path,
            pages: head.pages,
        })
    })
    .await;
    let pages = read.into_iter().collect::<Result<Vec<String>, _>>()?;
    join(head, &pages, folder)
}

/// Writes the pages of `paged` under `folder` whose content differs from `previous` (the pages
/// known to be stored there, or `None` to write them all). Returns how many it wrote. The
/// caller writes the head afterwards.
pub async fn write_pages(
    client: &Client,
    folder: &str,
    paged: &Paged,
    previous: Option<&Paged>,
) -> Result<usize, Error> {
    let mut writes = 0;
    for n in 0..paged.pages.len() {
        if previous.and_then(|p| p.pages.get(n)) == Some(&paged.pages[n]) {
            continue;
        }
        client
            .write(&page_path(folder, n), &paged.page_body(n), Idempotent::Yes)
            .await?;
        writes += 1;
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("app-{i:05}/identity-cert"))
            .collect()
    }

    #[test]
    fn pages_stay_under_the_bound_and_join_back() {
        let items = ids(10_000);
        let p = split_at(&items, 4096);
        assert!(p.pages.len() > 50, "{}", p.pages.len());
        assert!(p.pages.iter().all(|x| x.len() <= 4096));
        assert_eq!(p.head.items, 10_000);
        assert_eq!(join(&p.head, &p.pages, "f").expect("joins"), items);
        // The same list gives the same pages: an unchanged list needs no write.
        assert_eq!(split_at(&items, 4096), p);
    }

    #[test]
    fn an_empty_list_has_no_pages() {
        let p = split::<String>(&[]);
        assert_eq!(p.head.pages, 0);
        assert_eq!(
            join(&p.head, &p.pages, "f").expect("joins"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_torn_list_is_refused_not_trusted() {
        let old = split_at(&ids(300), 1024);
        let mut new_items = ids(300);
        new_items[0] = "app-99999/identity-cert".into();
        let new = split_at(&new_items, 1024);
        // The head of the new list with the old first page (the writer died after the head).
        let mut mixed = new.pages.clone();
        mixed[0] = old.pages[0].clone();
        let err = join(&new.head, &mixed, "warden/data/pages/x").expect_err("torn");
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = join(&new.head, &new.pages[1..], "f").expect_err("a page short");
        assert!(err.to_string().contains("pages"), "{err}");
    }

    #[test]
    fn the_checksum_is_fnv1a_of_the_joined_items() {
        // FNV-1a 64 of "a\nb", from the published algorithm.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"a\nb" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(checksum(&["a", "b"]), format!("fnv1a64:{h:016x}"));
        assert_ne!(checksum(&["a", "b"]), checksum(&["ab"]));
    }
}
