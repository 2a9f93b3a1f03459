//! Passage embeddings: the on-disk cache, the in-memory vector index and
//! brute-force cosine ranking.
//!
//! Each passage is embedded once through `LlmClient::embed`. The vectors are
//! cached in `embeddings.bin` keyed by a hash of the embedding model and the
//! passage input, so a restart embeds only new or changed passages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::llm::{LlmClient, LlmError};

/// Name of the embedding cache inside the index folder.
pub const EMBEDDINGS_FILE: &str = "embeddings.bin";
const CACHE_MAGIC: &[u8; 8] = b"MWEMB001";
/// Characters of a passage sent to the embedding model.
// NOTE: a guess meant to keep inputs within the input limit of hosted
// embedding models. Longer passages are embedded by their beginning only.
const MAX_INPUT_CHARS: usize = 2000;

/// Errors while embedding passages or a query.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("no embedding model is configured (set llm.embedding_model)")]
    NotConfigured,
    #[error("embedding request failed: {0}")]
    Llm(#[from] LlmError),
    #[error("embedding model returned {found}-dimensional vectors, expected {expected}")]
    Dimension { expected: usize, found: usize },
    #[error("embedding model returned an empty vector")]
    EmptyVector,
    #[error("failed to write the embedding cache {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Counts from one [`build_index`] run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EmbeddingStats {
    pub passages: usize,
    /// Passages sent to the embedding model.
    pub embedded: usize,
    /// Passages whose vector came from the cache.
    pub reused: usize,
}

/// Unit-length vectors of every passage, in passage order.
#[derive(Debug)]
pub struct EmbeddingIndex {
    model: String,
    dimension: usize,
    /// `passages × dimension` values, passage-major.
    vectors: Vec<f32>,
}

impl EmbeddingIndex {
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Returns `(passage number, cosine similarity)` for every passage, best first.
    pub fn rank(&self, query: &[f32]) -> Result<Vec<(usize, f32)>, EmbeddingError> {
        if query.len() != self.dimension {
            return Err(EmbeddingError::Dimension {
                expected: self.dimension,
                found: query.len(),
            });
        }
        let query = normalized(query.to_vec());
        let mut scored: Vec<(usize, f32)> = self
            .vectors
            .chunks_exact(self.dimension)
            .enumerate()
            .map(|(number, vector)| (number, dot(vector, &query)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(scored)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales `vector` to unit length; a zero vector stays zero.
fn normalized(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = dot(&vector, &vector).sqrt();
    if norm > 0.0 && norm.is_finite() {
        for value in &mut vector {
            *value /= norm;
        }
    }
    vector
}

/// Cuts a passage input to the characters sent to the model.
pub fn embedding_input(title: &str, heading: &str, text: &str) -> String {
    let joined = if heading.is_empty() {
        format!("{title}\n{text}")
    } else {
        format!("{title}\n{heading}\n{text}")
    };
    joined.chars().take(MAX_INPUT_CHARS).collect()
}

/// FNV-1a over the model name and the input, the cache key of one vector.
pub fn cache_key(model: &str, input: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in model.as_bytes().iter().chain(&[0]).chain(input.as_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Embeds the passages `inputs` (in passage order), reusing vectors from the
/// cache file at `cache` when given, and rewrites that file when it changed.
pub async fn build_index(
    llm: &LlmClient,
    inputs: &[String],
    cache: Option<&Path>,
) -> Result<(EmbeddingIndex, EmbeddingStats), EmbeddingError> {
    let model = llm
        .embedding_model()
        .ok_or(EmbeddingError::NotConfigured)?
        .to_string();
    let keys: Vec<u64> = inputs
        .iter()
        .map(|input| cache_key(&model, input))
        .collect();
    let (mut stored, cache_dimension) = match cache {
        Some(path) => read_cache(path),
        None => (HashMap::new(), None),
    };

    let mut missing: Vec<usize> = Vec::new();
    let mut queued = std::collections::HashSet::new();
    for (number, key) in keys.iter().enumerate() {
        if !stored.contains_key(key) && queued.insert(*key) {
            missing.push(number);
        }
    }

    let mut dimension = cache_dimension;
    if !missing.is_empty() {
        let batch: Vec<String> = missing.iter().map(|&n| inputs[n].clone()).collect();
        let vectors = llm.embed(&batch).await?;
        for (&number, vector) in missing.iter().zip(vectors) {
            if vector.is_empty() {
                return Err(EmbeddingError::EmptyVector);
            }
            let expected = *dimension.get_or_insert(vector.len());
            if vector.len() != expected {
                return Err(EmbeddingError::Dimension {
                    expected,
                    found: vector.len(),
                });
            }
            stored.insert(keys[number], normalized(vector));
        }
    }
    let dimension = dimension.unwrap_or(0);

    let mut vectors = Vec::with_capacity(inputs.len() * dimension);
    for key in &keys {
        vectors.extend_from_slice(&stored[key]);
    }
    let stats = EmbeddingStats {
        passages: inputs.len(),
        embedded: missing.len(),
        reused: inputs.len() - missing.len(),
    };

    // Keep only the current passages, so the file does not grow with edits.
    let current: std::collections::HashSet<u64> = keys.iter().copied().collect();
    let stale = stored.len() != current.len();
    if let Some(path) = cache
        && (!missing.is_empty() || stale || !path.exists())
    {
        stored.retain(|key, _| current.contains(key));
        write_cache(path, dimension, &stored)?;
    }

    let index = EmbeddingIndex {
        model,
        dimension,
        vectors,
    };
    Ok((index, stats))
}

/// Reads the cache file, or returns an empty cache when it is missing or invalid.
fn read_cache(path: &Path) -> (HashMap<u64, Vec<f32>>, Option<usize>) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (HashMap::new(), None);
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "could not read the embedding cache; embedding every passage");
            return (HashMap::new(), None);
        }
    };
    match parse_cache(&bytes) {
        Some((entries, dimension)) => (entries, Some(dimension)),
        None => {
            tracing::warn!(path = %path.display(), "embedding cache is invalid; embedding every passage");
            (HashMap::new(), None)
        }
    }
}

/// Parses `MAGIC, u32 dimension, u64 count, count × (u64 key, dimension × f32)`,
/// all little-endian.
fn parse_cache(bytes: &[u8]) -> Option<(HashMap<u64, Vec<f32>>, usize)> {
    let rest = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
    let (dimension, rest) = rest.split_at_checked(4)?;
    let dimension = u32::from_le_bytes(dimension.try_into().ok()?) as usize;
    let (count, rest) = rest.split_at_checked(8)?;
    let count = usize::try_from(u64::from_le_bytes(count.try_into().ok()?)).ok()?;
    let record = 8 + dimension * 4;
    if dimension == 0 || rest.len() != count.checked_mul(record)? {
        return None;
    }
    let mut entries = HashMap::with_capacity(count);
    for chunk in rest.chunks_exact(record) {
        let key = u64::from_le_bytes(chunk[..8].try_into().ok()?);
        let vector = chunk[8..]
            .chunks_exact(4)
            .map(|value| f32::from_le_bytes([value[0], value[1], value[2], value[3]]))
            .collect();
        entries.insert(key, vector);
    }
    Some((entries, dimension))
}

/// Writes the cache to a temporary file and renames it over `path`, so a
/// crash never leaves a half-written cache.
fn write_cache(
    path: &Path,
    dimension: usize,
    entries: &HashMap<u64, Vec<f32>>,
) -> Result<(), EmbeddingError> {
    let mut bytes = Vec::with_capacity(20 + entries.len() * (8 + dimension * 4));
    bytes.extend_from_slice(CACHE_MAGIC);
    bytes.extend_from_slice(&(dimension as u32).to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let mut keys: Vec<&u64> = entries.keys().collect();
    keys.sort();
    for key in keys {
        bytes.extend_from_slice(&key.to_le_bytes());
        for value in &entries[key] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    let error = |source| EmbeddingError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let temporary = path.with_extension("bin.tmp");
    std::fs::write(&temporary, &bytes).map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EMBEDDINGS_FILE);
        let entries = HashMap::from([(7u64, vec![0.6, 0.8]), (9u64, vec![1.0, 0.0])]);
        write_cache(&path, 2, &entries).unwrap();
        let (read, dimension) = read_cache(&path);
        assert_eq!(dimension, Some(2));
        assert_eq!(read, entries);
    }

    #[test]
    fn truncated_cache_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EMBEDDINGS_FILE);
        let entries = HashMap::from([(7u64, vec![0.6, 0.8])]);
        write_cache(&path, 2, &entries).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let (read, dimension) = read_cache(&path);
        assert!(read.is_empty());
        assert_eq!(dimension, None);
    }

    #[test]
    fn rank_orders_by_cosine() {
        let index = EmbeddingIndex {
            model: "m".into(),
            dimension: 2,
            vectors: [normalized(vec![1.0, 0.0]), normalized(vec![1.0, 1.0])].concat(),
        };
        let ranked = index.rank(&[0.0, 3.0]).unwrap();
        assert_eq!(ranked[0].0, 1);
        assert!((ranked[0].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!(matches!(
            index.rank(&[1.0]),
            Err(EmbeddingError::Dimension { .. })
        ));
    }

    #[test]
    fn cache_key_depends_on_model() {
        assert_ne!(cache_key("a", "text"), cache_key("b", "text"));
        assert_ne!(cache_key("ab", "c"), cache_key("a", "bc"));
    }
}
