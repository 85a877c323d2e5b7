//! Anchors: the head of every stream's hash chain and a Merkle root over them, written outside the
//! database (`netia audit anchor`), so that a later `netia audit verify --anchor FILE` notices a
//! history rewritten before the anchor even by someone able to recompute every hash in the
//! database (issue 20 part 2: keep the root somewhere the database's owner cannot write — a
//! ticket, a write-once bucket, a transparency log).
//!
//! The anchor file holds JSON Lines, one anchor per line, appended:
//! `{"format":"netia-anchor-1","anchored_at":RFC 3339,"chain":"sha256"|"hmac-sha256:<key id>",
//! "log_position":N,"streams":K,"merkle_root":hex,"heads":[{"stream":"type:id","version":v,
//! "hash":hex},…]}` with `heads` in stream order (`chain` absent: `sha256`, as anchors written before
//! keyed chains). An anchor of another chain than the log's now (one taken before `audit rekey`) is
//! counted but its heads are not compared: every link changed on purpose. The Merkle tree (RFC 6962's shape: `rs_merkle` over SHA-256) has one leaf per
//! head: `SHA-256("type:id\nversion\n" ‖ hash)`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use rs_merkle::{Hasher, MerkleTree, algorithms::Sha256};
use serde::{Deserialize, Serialize};

use super::{Verification, verify_visiting};
use crate::store::{EventStore, StoreError};

/// The `format` of anchors this code writes and reads.
pub const FORMAT: &str = "netia-anchor-1";

/// A stream's head when anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `type:id`.
    pub stream: String,
    pub version: i64,
    /// The chain link of the event at `version`, hex.
    pub hash: String,
}

/// One line of an anchor file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub format: String,
    pub anchored_at: DateTime<Utc>,
    /// The chain the heads are links of ([`netia_events::chain::Chain::name`]).
    #[serde(default = "plain_chain")]
    pub chain: String,
    /// The log's position when the heads were read (events after it may be among them).
    pub log_position: i64,
    pub streams: usize,
    pub merkle_root: String,
    pub heads: Vec<Head>,
}

fn plain_chain() -> String {
    "sha256".to_owned()
}

/// What went wrong with an anchored head, or with an anchor itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnchorBreak {
    pub anchored_at: DateTime<Utc>,
    /// `type:id`, or none when the anchor's own Merkle root does not match its heads.
    pub stream: Option<String>,
    pub version: Option<i64>,
    pub reason: String,
}

/// The outcome of checking the log against anchors.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnchorCheck {
    pub anchors: usize,
    pub heads: usize,
    /// Anchors of another chain than the log's now (taken before a rekey): roots checked, heads not.
    pub other_chain: usize,
    pub broken: Vec<AnchorBreak>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot read or write the anchor file {0}: {1}")]
    File(String, std::io::Error),
    #[error("line {line} of the anchor file {path} is not a {FORMAT} anchor: {reason}")]
    Invalid { path: String, line: usize, reason: String },
    #[error("the anchor file {0} holds no anchor")]
    Empty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Merkle root of `heads` (in the order given), hex; the empty tree's root is 64 zeros.
pub fn merkle_root(heads: &[Head]) -> String {
    let leaves: Vec<[u8; 32]> = heads
        .iter()
        .map(|head| {
            let mut leaf = format!("{}\n{}\n", head.stream, head.version).into_bytes();
            leaf.extend(hex::decode(&head.hash).unwrap_or_else(|_| head.hash.as_bytes().to_vec()));
            Sha256::hash(&leaf)
        })
        .collect();
    let root = MerkleTree::<Sha256>::from_leaves(&leaves).root().unwrap_or([0; 32]);
    hex::encode(root)
}

/// Reads every stream, checks its chain, and makes an anchor of the heads. `Err` with the report
/// when some chain is broken: a broken log is not anchored.
pub async fn anchor(store: &dyn EventStore) -> Result<Result<Anchor, Verification>, StoreError> {
    let log_position = store.head().await?.position;
    let mut heads = Vec::new();
    let report = verify_visiting(store, None, |stream, events| {
        if let Some(last) = events.last() {
            heads.push(Head {
                stream: stream.to_string(),
                version: last.version,
                hash: hex::encode(&last.hash),
            });
        }
    })
    .await?;
    if !report.broken.is_empty() {
        return Ok(Err(report));
    }
    heads.sort_by(|a, b| a.stream.cmp(&b.stream));
    Ok(Ok(Anchor {
        format: FORMAT.to_owned(),
        anchored_at: Utc::now(),
        chain: store.chain().name(),
        log_position,
        streams: heads.len(),
        merkle_root: merkle_root(&heads),
        heads,
    }))
}

/// Appends `anchor` as one line to the file at `path` (created if missing).
pub fn append(path: &Path, anchor: &Anchor) -> Result<(), AnchorError> {
    let fail = |e| AnchorError::File(path.display().to_string(), e);
    let mut line = serde_json::to_string(anchor).map_err(|e| fail(e.into()))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(line.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Every anchor in the file at `path`, in order (blank lines skipped).
pub fn read(path: &Path) -> Result<Vec<Anchor>, AnchorError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AnchorError::File(name.clone(), e))?;
    let mut anchors = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let invalid = |reason: String| AnchorError::Invalid {
            path: name.clone(),
            line: i + 1,
            reason,
        };
        let anchor: Anchor = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
        if anchor.format != FORMAT {
            return Err(invalid(format!("format {:?}", anchor.format)));
        }
        anchors.push(anchor);
    }
    if anchors.is_empty() {
        return Err(AnchorError::Empty(name));
    }
    Ok(anchors)
}

/// Checks every chain, then every anchor: its root matches its heads, and each anchored head is
/// still in the log with the same link (with the chain intact up to it, nothing before it changed).
pub async fn verify(store: &dyn EventStore, anchors: &[Anchor]) -> Result<(Verification, AnchorCheck), StoreError> {
    // (stream, version) → the anchored links there.
    let mut wanted: HashMap<(&str, i64), Vec<(&Anchor, &Head)>> = HashMap::new();
    let mut check = AnchorCheck {
        anchors: anchors.len(),
        ..AnchorCheck::default()
    };
    let chain = store.chain().name();
    for anchor in anchors {
        if merkle_root(&anchor.heads) != anchor.merkle_root || anchor.heads.len() != anchor.streams {
            check.broken.push(AnchorBreak {
                anchored_at: anchor.anchored_at,
                stream: None,
                version: None,
                reason: "the anchor's heads do not give its Merkle root".into(),
            });
        }
        if anchor.chain != chain {
            check.other_chain += 1;
            continue;
        }
        for head in &anchor.heads {
            check.heads += 1;
            wanted
                .entry((head.stream.as_str(), head.version))
                .or_default()
                .push((anchor, head));
        }
    }
    // What the log holds at each anchored place.
    let mut found: BTreeMap<(String, i64), String> = BTreeMap::new();
    let report = verify_visiting(store, None, |stream, events| {
        let name = stream.to_string();
        for event in events {
            if wanted.contains_key(&(name.as_str(), event.version)) {
                found.insert((name.clone(), event.version), hex::encode(&event.hash));
            }
        }
    })
    .await?;
    let mut places: Vec<_> = wanted.into_iter().collect();
    places.sort_by(|a, b| a.0.cmp(&b.0));
    for ((stream, version), anchored) in places {
        let now = found.get(&(stream.to_owned(), version));
        for (anchor, head) in anchored {
            let reason = match now {
                None => "the anchored event is no longer in the log".to_owned(),
                Some(hash) if *hash != head.hash => format!("its link is now {hash}, anchored as {}", head.hash),
                Some(_) => continue,
            };
            check.broken.push(AnchorBreak {
                anchored_at: anchor.anchored_at,
                stream: Some(stream.to_owned()),
                version: Some(version),
                reason,
            });
        }
    }
    Ok((report, check))
}

#[cfg(test)]
mod tests {
    use super::{Head, merkle_root};

    fn head(stream: &str, version: i64, byte: u8) -> Head {
        Head {
            stream: stream.into(),
            version,
            hash: hex::encode([byte; 32]),
        }
    }

    #[test]
    fn the_root_depends_on_every_head_and_its_place() {
        let heads = vec![head("a:1", 3, 1), head("b:2", 1, 2), head("c:3", 7, 3)];
        let root = merkle_root(&heads);
        assert_eq!(root.len(), 64);
        assert_eq!(merkle_root(&heads), root, "deterministic");
        let mut other = heads.clone();
        other[2].version = 8;
        assert_ne!(merkle_root(&other), root);
        other = heads.clone();
        other[1].hash = hex::encode([9; 32]);
        assert_ne!(merkle_root(&other), root);
        other = heads.clone();
        other.swap(0, 1);
        assert_ne!(merkle_root(&other), root);
        assert_eq!(merkle_root(&[]), "0".repeat(64));
    }
}
