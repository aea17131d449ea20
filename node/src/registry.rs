//! The model registry: `node/models/registry.toml` parsed into [`ModelEntry`]s.
//!
//! A registry maps a model reference (`oss-chat-v1`) to its files, their SHA-256 sums, the
//! special tokens and the chat template. Paths in the file are relative to a root directory
//! (the repository root for the checked-in registry); [`Registry::load`] resolves them once so
//! that nothing later depends on the process's working directory.
//!
//! The model's SHA-256 is what the node commits to, so the bytes handed to ONNX Runtime are the
//! bytes that were hashed: [`ModelEntry::read_model`] reads the file once, hashes it, and returns
//! those bytes (never "hash the path, then let the runtime open the path again").

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The only graph I/O contract this node speaks (node/models/README.md).
pub const IO_CONTRACT: &str = "parallelix-llama-kv-v2";

/// Why a registry or a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is not a valid model registry: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("model {reference:?}: {problem}")]
    InvalidEntry { reference: String, problem: String },
    #[error("unknown model {reference:?} (registry {} has: {known})", registry.display())]
    UnknownModel {
        reference: String,
        registry: PathBuf,
        known: String,
    },
    #[error(
        "model {reference:?} has no {field} in the registry; run scripts/setup-models.sh to build the \
         files and record their hashes"
    )]
    MissingHash {
        reference: String,
        field: &'static str,
    },
    #[error(
        "SHA-256 mismatch for {}: expected {expected}, actual {actual} (the file is not the one the \
         registry names; rebuild it with scripts/setup-models.sh)",
        path.display()
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// How a prompt becomes the text that is tokenized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChatTemplate {
    /// The prompt as-is (the tiny byte-level test model).
    #[serde(rename = "raw")]
    Raw,
    /// One ChatML user turn, then the assistant header. No default system message is added:
    /// with SmolLM2-135M it derails the answer (node/models/README.md).
    #[serde(rename = "chatml")]
    ChatMl,
}

impl ChatTemplate {
    /// The text to tokenize for a single-turn `prompt`.
    pub fn render(self, prompt: &str) -> String {
        match self {
            ChatTemplate::Raw => prompt.to_owned(),
            ChatTemplate::ChatMl => {
                format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
            }
        }
    }
}

impl fmt::Display for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChatTemplate::Raw => "raw",
            ChatTemplate::ChatMl => "chatml",
        })
    }
}

/// One model of the registry, with its paths resolved against the registry's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The registry key, e.g. `oss-chat-v1`.
    pub reference: String,
    pub display_name: String,
    /// The `.onnx` file (absolute, or relative to the process if the root was).
    pub path: PathBuf,
    /// The HuggingFace `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Lowercase hex SHA-256 of the model file; empty until scripts/setup-models.sh fills it.
    pub sha256: String,
    /// Lowercase hex SHA-256 of the tokenizer file, when the registry records one.
    pub tokenizer_sha256: Option<String>,
    pub io_contract: String,
    pub vocab_size: usize,
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub context_length: usize,
    pub bos_token_id: u32,
    /// Whether to prepend `bos_token_id` to the tokenized prompt.
    pub add_bos: bool,
    /// Generation stops at the first of these.
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub chat_template: ChatTemplate,
    /// The directory the relative paths above were resolved against.
    pub root: PathBuf,
}

/// A model file read into memory whose SHA-256 matched the registry.
pub struct VerifiedModel {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Lowercase hex.
    pub sha256: String,
}

impl fmt::Debug for VerifiedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedModel")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl ModelEntry {
    /// Reads the model file and checks it against `sha256`.
    pub fn read_model(&self) -> Result<VerifiedModel, RegistryError> {
        if self.sha256.is_empty() {
            return Err(RegistryError::MissingHash {
                reference: self.reference.clone(),
                field: "sha256",
            });
        }
        let (bytes, sha256) = read_verified(&self.path, &self.sha256)?;
        Ok(VerifiedModel {
            path: self.path.clone(),
            bytes,
            sha256,
        })
    }

    /// Reads the tokenizer file, checking it against `tokenizer_sha256` when one is recorded.
    pub fn read_tokenizer(&self) -> Result<Vec<u8>, RegistryError> {
        match self.tokenizer_sha256.as_deref() {
            Some(expected) => Ok(read_verified(&self.tokenizer, expected)?.0),
            None => std::fs::read(&self.tokenizer).map_err(|error| RegistryError::Read {
                path: self.tokenizer.clone(),
                error,
            }),
        }
    }

    /// The tokens a request's text must be preceded by: `[bos]` or nothing.
    pub fn prefix_ids(&self) -> &[u32] {
        if self.add_bos {
            std::slice::from_ref(&self.bos_token_id)
        } else {
            &[]
        }
    }
}

fn read_verified(path: &Path, expected: &str) -> Result<(Vec<u8>, String), RegistryError> {
    let bytes = std::fs::read(path).map_err(|error| RegistryError::Read {
        path: path.to_owned(),
        error,
    })?;
    let actual = sha256_hex(&bytes);
    if actual != expected {
        return Err(RegistryError::HashMismatch {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok((bytes, actual))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// All models of one registry file.
#[derive(Debug, Clone)]
pub struct Registry {
    source: PathBuf,
    models: BTreeMap<String, ModelEntry>,
}

impl Registry {
    /// Parses the registry at `path`, resolving its relative paths against `root`.
    pub fn load(path: &Path, root: &Path) -> Result<Registry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|error| RegistryError::Read {
            path: path.to_owned(),
            error,
        })?;
        Registry::parse(&text, path, root)
    }

    /// Parses registry text; `source` only names it in errors.
    pub fn parse(text: &str, source: &Path, root: &Path) -> Result<Registry, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: source.to_owned(),
            error: Box::new(e),
        })?;
        let models = file
            .models
            .into_iter()
            .map(|(reference, raw)| {
                let entry = raw.resolve(&reference, root)?;
                Ok((reference, entry))
            })
            .collect::<Result<_, RegistryError>>()?;
        Ok(Registry {
            source: source.to_owned(),
            models,
        })
    }

    /// The entry for `reference`, or an error listing the known ones.
    pub fn get(&self, reference: &str) -> Result<&ModelEntry, RegistryError> {
        self.models
            .get(reference)
            .ok_or_else(|| RegistryError::UnknownModel {
                reference: reference.to_owned(),
                registry: self.source.clone(),
                known: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every entry, in reference order.
    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }
}

#[derive(Deserialize)]
struct RegistryFile {
    models: BTreeMap<String, RawEntry>,
}

/// The TOML shape. Fields the node does not use (`source`, `check_prompts`, ...) are ignored so
/// that the setup tooling can add some without breaking the node.
#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    display_name: String,
    path: PathBuf,
    tokenizer: PathBuf,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    tokenizer_sha256: String,
    io_contract: String,
    vocab_size: usize,
    num_layers: usize,
    num_kv_heads: usize,
    head_dim: usize,
    context_length: usize,
    bos_token_id: u32,
    add_bos: bool,
    eos_token_ids: Vec<u32>,
    pad_token_id: Option<u32>,
    chat_template: ChatTemplate,
}

impl RawEntry {
    fn resolve(self, reference: &str, root: &Path) -> Result<ModelEntry, RegistryError> {
        let invalid = |problem: String| RegistryError::InvalidEntry {
            reference: reference.to_owned(),
            problem,
        };
        if self.io_contract != IO_CONTRACT {
            return Err(invalid(format!(
                "io_contract {:?} is not supported (this node speaks {IO_CONTRACT:?})",
                self.io_contract
            )));
        }
        for (field, value) in [
            ("sha256", &self.sha256),
            ("tokenizer_sha256", &self.tokenizer_sha256),
        ] {
            if !value.is_empty() && !is_sha256_hex(value) {
                return Err(invalid(format!(
                    "{field} {value:?} is not 64 lowercase hex digits"
                )));
            }
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("num_layers", self.num_layers),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("context_length", self.context_length),
        ] {
            if value == 0 {
                return Err(invalid(format!("{field} must be positive")));
            }
        }
        let vocab = self.vocab_size;
        let out_of_vocab = std::iter::once(self.bos_token_id)
            .chain(self.eos_token_ids.iter().copied())
            .chain(self.pad_token_id)
            .find(|&id| id as usize >= vocab);
        if let Some(id) = out_of_vocab {
            return Err(invalid(format!(
                "token id {id} is outside the vocabulary of {vocab}"
            )));
        }
        Ok(ModelEntry {
            reference: reference.to_owned(),
            display_name: self.display_name,
            path: root.join(self.path),
            tokenizer: root.join(self.tokenizer),
            sha256: self.sha256,
            tokenizer_sha256: Some(self.tokenizer_sha256).filter(|s| !s.is_empty()),
            io_contract: self.io_contract,
            vocab_size: self.vocab_size,
            num_layers: self.num_layers,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            context_length: self.context_length,
            bos_token_id: self.bos_token_id,
            add_bos: self.add_bos,
            eos_token_ids: self.eos_token_ids,
            pad_token_id: self.pad_token_id,
            chat_template: self.chat_template,
            root: root.to_owned(),
        })
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"
[models.m]
path = "models/m.onnx"
tokenizer = "models/tokenizer.json"
sha256 = "SHA"
io_contract = "parallelix-llama-kv-v2"
vocab_size = 10
num_layers = 1
num_kv_heads = 1
head_dim = 4
context_length = 16
bos_token_id = 1
add_bos = true
eos_token_ids = [2]
chat_template = "raw"
"#;

    fn parse(text: &str) -> Result<Registry, RegistryError> {
        Registry::parse(text, Path::new("test.toml"), Path::new("/repo"))
    }

    fn with_sha(sha: &str) -> String {
        ENTRY.replace("SHA", sha)
    }

    #[test]
    fn checked_in_registry_parses_with_both_models() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let reg = Registry::load(&dir.join("models/registry.toml"), Path::new("/root")).unwrap();
        let chat = reg.get("oss-chat-v1").unwrap();
        assert_eq!(chat.chat_template, ChatTemplate::ChatMl);
        assert_eq!(chat.eos_token_ids, vec![2, 0]);
        assert!(!chat.add_bos);
        assert_eq!(chat.prefix_ids(), &[] as &[u32]);
        assert_eq!(
            chat.path,
            Path::new("/root/.cache/models/smollm2-135m/model.onnx")
        );
        assert_eq!(
            (chat.num_layers, chat.num_kv_heads, chat.head_dim),
            (30, 3, 64)
        );
        let tiny = reg.get("tiny-test-v1").unwrap();
        assert_eq!(tiny.prefix_ids(), &[256]);
        assert_eq!(tiny.chat_template, ChatTemplate::Raw);
        assert!(tiny.tokenizer_sha256.is_some());
    }

    #[test]
    fn unknown_reference_lists_the_known_ones() {
        let reg = parse(&with_sha("")).unwrap();
        let err = reg.get("nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("has: m"), "{err}");
    }

    #[test]
    fn malformed_hash_unknown_template_and_contract_are_refused() {
        let err = parse(&with_sha("ABC")).unwrap_err().to_string();
        assert!(err.contains("64 lowercase hex"), "{err}");
        let err = parse(&with_sha("").replace("\"raw\"", "\"jinja\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("jinja"), "{err}");
        let err = parse(&with_sha("").replace("kv-v2", "kv-v1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("parallelix-llama-kv-v2"), "{err}");
        let err = parse(&with_sha("").replace("eos_token_ids = [2]", "eos_token_ids = [10]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token id 10"), "{err}");
    }

    #[test]
    fn chatml_renders_one_user_turn_without_a_system_message() {
        assert_eq!(
            ChatTemplate::ChatMl.render("Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(ChatTemplate::Raw.render("Hi"), "Hi");
    }

    #[test]
    fn model_bytes_are_returned_only_when_the_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(dir.path().join("models/m.onnx"), b"model bytes").unwrap();
        let good = sha256_hex(b"model bytes");
        let bad = "0".repeat(64);

        let reg = Registry::parse(&with_sha(&good), Path::new("t"), dir.path()).unwrap();
        let model = reg.get("m").unwrap().read_model().unwrap();
        assert_eq!(
            (model.bytes.as_slice(), model.sha256.as_str()),
            (&b"model bytes"[..], good.as_str())
        );

        let reg = Registry::parse(&with_sha(&bad), Path::new("t"), dir.path()).unwrap();
        let err = reg.get("m").unwrap().read_model().unwrap_err().to_string();
        assert!(
            err.contains("m.onnx") && err.contains(&bad) && err.contains(&good),
            "{err}"
        );

        let reg = Registry::parse(&with_sha(""), Path::new("t"), dir.path()).unwrap();
        let err = reg.get("m").unwrap().read_model().unwrap_err().to_string();
        assert!(err.contains("setup-models.sh"), "{err}");
    }
}
