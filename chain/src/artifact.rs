//! Compiled contracts read at run time, and library linking.
//!
//! Our contracts' artifacts are compiled into the bindings ([`crate::bindings`]); Sablier's
//! come from its npm packages (`scripts/chain.sh setup` unpacks them under
//! `.cache/chain/sablier`), in Foundry's layout: `bytecode: {object, linkReferences}`.
//! `SablierLockup` calls two external libraries, so its creation code holds 20-byte
//! placeholders (`__$<34 hex>$__`) that linking replaces with the libraries' addresses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, Bytes};
use serde::Deserialize;

use crate::ChainError;

/// One place a library's address goes: a byte offset into the creation code.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LinkRef {
    /// Byte offset of the placeholder.
    pub start: usize,
    /// Its length in bytes (always 20: an address).
    pub length: usize,
}

#[derive(Debug, Deserialize)]
struct Bytecode {
    object: String,
    #[serde(default, rename = "linkReferences")]
    link_references: BTreeMap<String, BTreeMap<String, Vec<LinkRef>>>,
}

#[derive(Debug, Deserialize)]
struct Raw {
    bytecode: Bytecode,
}

/// A compiled contract's creation code, possibly still needing libraries.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The contract's name (the file stem), for errors.
    pub name: String,
    code: Vec<u8>,
    /// Library name -> where its address goes.
    links: BTreeMap<String, Vec<LinkRef>>,
}

impl Artifact {
    /// Reads a Foundry-layout artifact (`{"bytecode": {"object": "0x..", "linkReferences": ..}}`).
    pub fn read(path: &Path) -> Result<Self, ChainError> {
        let text = std::fs::read_to_string(path).map_err(|source| ChainError::Io {
            path: path.to_owned(),
            source,
        })?;
        let malformed = |reason: String| ChainError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let raw: Raw = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let hex_text = raw.bytecode.object.trim_start_matches("0x");
        // Placeholders are not hex: decode with them zeroed, then check each is where the
        // artifact says (in `link`).
        let mut code = vec![0u8; hex_text.len() / 2];
        let mut links = BTreeMap::new();
        for libs in raw.bytecode.link_references.into_values() {
            for (lib, refs) in libs {
                links.entry(lib).or_insert_with(Vec::new).extend(refs);
            }
        }
        let mut cleaned = hex_text.as_bytes().to_vec();
        for r in links.values().flatten() {
            let (at, end) = (2 * r.start, 2 * (r.start + r.length));
            let slot = cleaned.get_mut(at..end).ok_or_else(|| {
                malformed(format!(
                    "bytecode.linkReferences: offset {} is past the code",
                    r.start
                ))
            })?;
            if r.length != 20 || !is_placeholder(slot) {
                return Err(malformed(format!(
                    "bytecode.linkReferences: no 20-byte placeholder at byte {}",
                    r.start
                )));
            }
            slot.fill(b'0');
        }
        hex::decode_to_slice(&cleaned, &mut code)
            .map_err(|e| malformed(format!("bytecode.object: {e}")))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Artifact { name, code, links })
    }

    /// The libraries this code needs, by name.
    pub fn libraries(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    /// The creation code with every library linked. Every library the code needs must be
    /// given and every one given must be needed: a typo is an error, not a contract that
    /// calls address zero.
    pub fn link(&self, libraries: &[(&str, Address)]) -> Result<Bytes, ChainError> {
        let err = |reason: String| ChainError::Link {
            artifact: self.name.clone(),
            reason,
        };
        for (name, _) in libraries {
            if !self.links.contains_key(*name) {
                return Err(err(format!("library {name} is not referenced")));
            }
        }
        let mut code = self.code.clone();
        for (name, refs) in &self.links {
            let address = libraries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| *a)
                .ok_or_else(|| err(format!("no address given for library {name}")))?;
            for r in refs {
                code[r.start..r.start + 20].copy_from_slice(address.as_slice());
            }
        }
        Ok(code.into())
    }
}

fn is_placeholder(slot: &[u8]) -> bool {
    slot.len() == 40
        && slot.starts_with(b"__$")
        && slot.ends_with(b"$__")
        && slot[3..37].iter().all(u8::is_ascii_hexdigit)
}

/// Where Sablier's npm artifacts are: the two unpacked packages.
#[derive(Debug, Clone)]
pub struct SablierArtifacts {
    /// `@sablier/lockup`'s `package/artifacts`.
    pub lockup: PathBuf,
    /// `@sablier/evm-utils`'s `package/artifacts`.
    pub evm_utils: PathBuf,
}

impl SablierArtifacts {
    /// The layout `scripts/chain.sh setup` leaves under `dir` (default `.cache/chain/sablier`).
    pub fn under(dir: &Path) -> Self {
        SablierArtifacts {
            lockup: dir.join("lockup/package/artifacts"),
            evm_utils: dir.join("evm-utils/package/artifacts"),
        }
    }

    /// The directory the repository's scripts unpack them to, from this crate's location.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/chain/sablier")
    }

    pub(crate) fn read(&self, which: &str) -> Result<Artifact, ChainError> {
        let path = match which {
            "SablierComptroller" => self.evm_utils.join("SablierComptroller.json"),
            "LockupHelpers" | "LockupMath" => {
                self.lockup.join("libraries").join(format!("{which}.json"))
            }
            other => self.lockup.join(format!("{other}.json")),
        };
        Artifact::read(&path).map_err(|e| match e {
            ChainError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                ChainError::Malformed {
                    path,
                    reason: "missing: run scripts/chain.sh setup (unpacks Sablier's npm artifacts)"
                        .into(),
                }
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, object: &str, refs: &str) -> PathBuf {
        let p = dir.join("X.json");
        std::fs::write(
            &p,
            format!(r#"{{"bytecode": {{"object": "{object}", "linkReferences": {refs}}}}}"#),
        )
        .unwrap();
        p
    }

    #[test]
    fn links_every_placeholder_and_refuses_unknown_or_missing_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let ph = format!("__${}$__", "a".repeat(34));
        let p = write(
            dir.path(),
            &format!("0x6001{ph}02{ph}"),
            r#"{"src/L.sol": {"L": [{"start": 2, "length": 20}, {"start": 23, "length": 20}]}}"#,
        );
        let art = Artifact::read(&p).unwrap();
        assert_eq!(art.libraries().collect::<Vec<_>>(), ["L"]);
        let a = Address::repeat_byte(0x11);
        let code = art.link(&[("L", a)]).unwrap();
        assert_eq!(&code[..2], &[0x60, 0x01]);
        assert_eq!(&code[2..22], a.as_slice());
        assert_eq!(code[22], 0x02);
        assert_eq!(&code[23..43], a.as_slice());
        assert!(matches!(art.link(&[]), Err(ChainError::Link { .. })));
        assert!(matches!(
            art.link(&[("L", a), ("M", a)]),
            Err(ChainError::Link { .. })
        ));
    }

    #[test]
    fn a_reference_that_is_not_a_placeholder_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            &format!("0x{}", "00".repeat(30)),
            r#"{"src/L.sol": {"L": [{"start": 2, "length": 20}]}}"#,
        );
        assert!(matches!(
            Artifact::read(&p),
            Err(ChainError::Malformed { .. })
        ));
        let p = write(
            dir.path(),
            "0x00",
            r#"{"src/L.sol": {"L": [{"start": 9, "length": 20}]}}"#,
        );
        assert!(matches!(
            Artifact::read(&p),
            Err(ChainError::Malformed { .. })
        ));
    }
}
