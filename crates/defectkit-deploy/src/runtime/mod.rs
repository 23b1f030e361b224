//! ONNX Runtime inference (the deployment side; no Burn here, ARCHITECTURE.md seam 1).
//!
//! `ort` loads ONNX Runtime's shared library at run time (`load-dynamic`): from
//! `--ort-lib`, `$ORT_DYLIB_PATH`, or the project-local copy that `scripts/setup-ort.sh`
//! puts in `.cache/onnxruntime/`. One [`OnnxModel`] holds one session, reused across batches.
//! A requested GPU execution provider that cannot be registered is an error, never a silent
//! fallback to the CPU.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use defectkit_core::onnx::{FeatureMapSpec, ModelMetadata, OnnxError, METADATA_KEY};

/// The command that installs the ONNX Runtime library where the binary looks by default.
pub const INSTALL_HINT: &str = "bash scripts/setup-ort.sh";

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No ONNX Runtime library was found.
    #[error(
        "the ONNX Runtime library was not found (looked at: {}). Install it with `{INSTALL_HINT}` \
         from the project root, or set ORT_DYLIB_PATH to a libonnxruntime.so",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    LibraryMissing {
        /// Paths tried, in order.
        searched: Vec<PathBuf>,
    },
    /// The library exists but could not be loaded.
    #[error("cannot load the ONNX Runtime library {path}: {reason} (reinstall it with `{INSTALL_HINT}`)")]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model file is missing or not ONNX.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// ONNX Runtime refused the model or a run.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// A requested execution provider could not be registered.
    #[error("execution provider {ep} is not available: {reason}")]
    ProviderUnavailable {
        /// The provider asked for.
        ep: String,
        /// Why.
        reason: String,
    },
    /// The model is not a defectkit export (or its metadata is broken).
    #[error("{path}: {reason}")]
    Metadata {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The input does not have the model's shape.
    #[error("input has {got} values; the model expects batch × {expected:?} = a multiple of {per_sample}")]
    InputShape {
        /// `[C, H, W]` the model wants.
        expected: [usize; 3],
        /// Values per sample.
        per_sample: usize,
        /// Values given.
        got: usize,
    },
}

fn ort_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Ort(e.to_string())
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionProvider {
    /// The default CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA (needs the `ort-gpu` feature and onnxruntime-gpu's library).
    Cuda,
    /// NVIDIA TensorRT (same requirements as CUDA, plus the TensorRT libraries).
    TensorRt,
}

impl ExecutionProvider {
    /// `cpu`, `cuda` or `tensorrt`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::TensorRt => "tensorrt",
        }
    }
}

impl FromStr for ExecutionProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(ExecutionProvider::Cpu),
            "cuda" => Ok(ExecutionProvider::Cuda),
            "tensorrt" | "trt" => Ok(ExecutionProvider::TensorRt),
            other => Err(format!(
                "unknown execution provider {other:?} (expected cpu, cuda or tensorrt)"
            )),
        }
    }
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sessions are created.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The execution provider.
    pub ep: ExecutionProvider,
    /// Intra-op threads; `None` lets ONNX Runtime decide (all cores).
    pub threads: Option<usize>,
    /// The ONNX Runtime library; `None` searches the default places.
    pub library: Option<PathBuf>,
}

/// Where the library is looked for when none is given, in order: `$ORT_DYLIB_PATH`, then
/// `.cache/onnxruntime/libonnxruntime.so` under `$DEFECTKIT_ROOT` and the current dir, the
/// executable's own folder, and the source tree ([`defectkit_core::paths::search_roots`]).
pub fn library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    let mut in_roots = defectkit_core::paths::candidates(".cache/onnxruntime/libonnxruntime.so");
    let source_tree = in_roots.pop();
    out.extend(in_roots);
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("libonnxruntime.so"));
    }
    out.extend(source_tree);
    out
}

/// The library to load: `explicit` if given (it must exist), else the first candidate that
/// exists.
pub fn library_path(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(RuntimeError::LibraryMissing {
                searched: vec![p.to_path_buf()],
            })
        };
    }
    let candidates = library_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(RuntimeError::LibraryMissing {
            searched: candidates,
        })
}

type LoadedEnvironment = Result<(PathBuf, Environment), (PathBuf, String)>;

static ENVIRONMENT: OnceLock<LoadedEnvironment> = OnceLock::new();

/// Loads the library and creates the process-wide ONNX Runtime environment, once. Later
/// calls reuse it (the first library loaded stays loaded, as does a failure to load it).
pub fn environment(library: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    let loaded = match ENVIRONMENT.get() {
        Some(loaded) => loaded,
        None => {
            // Resolve the path first: a missing library is reported without poisoning.
            let path = library_path(library)?;
            ENVIRONMENT.get_or_init(|| {
                let fail = |e: String| (path.clone(), e);
                let builder = ort::init_from(&path).map_err(|e| fail(e.to_string()))?;
                let env = builder
                    .with_name("defectkit")
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                Ok((path.clone(), env))
            })
        }
    };
    loaded
        .as_ref()
        .map(|(_, env)| env)
        .map_err(|(path, reason)| RuntimeError::LibraryLoad {
            path: path.clone(),
            reason: reason.clone(),
        })
}

/// The library the environment was created from, once it has been.
pub fn loaded_library() -> Option<&'static Path> {
    ENVIRONMENT
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|(p, _)| p.as_path())
}

/// The outputs of one batch.
#[derive(Debug, Clone)]
pub struct ModelOutputs {
    /// The primary output (`logits` `[B, classes]` or `reconstruction` `[B, C, H, W]`), flat.
    pub primary: Vec<f32>,
    /// Shape of `primary`.
    pub primary_shape: Vec<usize>,
    /// `embedding`, `[B, embedding_dim]`, flat.
    pub embedding: Vec<f32>,
    /// `features`, `[B, C, h, w]` flat, when requested with [`OnnxModel::request_features`].
    pub features: Option<Vec<f32>>,
}

/// An exported defectkit model in one ONNX Runtime session.
pub struct OnnxModel {
    session: Session,
    /// What the exporter recorded.
    pub metadata: ModelMetadata,
    /// The file.
    pub path: PathBuf,
    /// The provider the session runs on.
    pub ep: ExecutionProvider,
    input_name: String,
    features: bool,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("ep", &self.ep)
            .field("metadata", &self.metadata)
            .finish()
    }
}

fn provider(
    ep: ExecutionProvider,
) -> Result<Option<ort::ep::ExecutionProviderDispatch>, RuntimeError> {
    match ep {
        ExecutionProvider::Cpu => Ok(None),
        #[cfg(feature = "ort-gpu")]
        ExecutionProvider::Cuda => Ok(Some(ort::ep::CUDA::default().build().error_on_failure())),
        #[cfg(feature = "ort-gpu")]
        ExecutionProvider::TensorRt => Ok(Some(
            ort::ep::TensorRT::default().build().error_on_failure(),
        )),
        #[cfg(not(feature = "ort-gpu"))]
        other => Err(RuntimeError::ProviderUnavailable {
            ep: other.to_string(),
            reason: "this binary was built without the `ort-gpu` feature (rebuild with \
                     `--features ort-gpu` and use onnxruntime-gpu's library)"
                .into(),
        }),
    }
}

/// A plain ONNX Runtime session over `bytes` with `opts` (library, threads, provider), for
/// callers that need every output of a graph (calibration) rather than [`OnnxModel`]'s two.
/// With `optimized_model` ONNX Runtime applies every graph optimization and saves the
/// optimized graph there (the quantizer's fusion check reads it).
pub fn session_from_bytes(
    bytes: &[u8],
    opts: &RuntimeOptions,
    optimized_model: Option<&Path>,
) -> Result<Session, RuntimeError> {
    let env = environment(opts.library.as_deref())?;
    let mut builder = Session::builder(env).map_err(ort_err)?;
    if let Some(n) = opts.threads {
        builder = builder.with_intra_threads(n).map_err(ort_err)?;
    }
    if let Some(path) = optimized_model {
        builder = builder
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
            .map_err(ort_err)?
            .with_optimized_model_path(path)
            .map_err(ort_err)?;
    }
    if let Some(dispatch) = provider(opts.ep)? {
        builder = builder.with_execution_providers([dispatch]).map_err(|e| {
            RuntimeError::ProviderUnavailable {
                ep: opts.ep.to_string(),
                reason: e.to_string(),
            }
        })?;
    }
    builder.commit_from_memory(bytes).map_err(ort_err)
}

impl OnnxModel {
    /// Opens `path` in a new session. The file must exist, be ONNX, and carry defectkit's
    /// metadata (written by `defectkit export`).
    pub fn load(path: &Path, opts: &RuntimeOptions) -> Result<Self, RuntimeError> {
        // Read and decode it ourselves first: a clearer error for missing and malformed
        // files than ONNX Runtime's; the session is then built from the same bytes.
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, opts)
    }

    /// Opens a model held in memory (`path` names it in errors and in [`OnnxModel::path`]);
    /// the quantizer's accuracy-aware mode runs candidate graphs this way without writing them.
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        opts: &RuntimeOptions,
    ) -> Result<Self, RuntimeError> {
        let proto = defectkit_core::onnx::decode_model(bytes, path)?;
        let metadata_json =
            defectkit_core::onnx::metadata_prop(&proto, METADATA_KEY).ok_or_else(|| {
                RuntimeError::Metadata {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no `{METADATA_KEY}` metadata: not a model exported by `defectkit export`"
                    ),
                }
            })?;
        let metadata =
            ModelMetadata::from_json(metadata_json).map_err(|e| RuntimeError::Metadata {
                path: path.to_path_buf(),
                reason: format!("its `{METADATA_KEY}` metadata is invalid: {e}"),
            })?;
        drop(proto);

        let session = session_from_bytes(bytes, opts, None)?;
        let input_name = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| RuntimeError::Ort("the model has no inputs".into()))?;
        for name in &metadata.outputs {
            if !session.outputs().iter().any(|o| o.name() == name) {
                return Err(RuntimeError::Metadata {
                    path: path.to_path_buf(),
                    reason: format!("the metadata names an output {name:?} the graph lacks"),
                });
            }
        }
        Ok(Self {
            session,
            metadata,
            path: path.to_path_buf(),
            ep: opts.ep,
            input_name,
            features: false,
        })
    }

    /// Makes [`OnnxModel::run`] also return the `features` output (patch-level detection).
    /// Fails, naming the file, for a model exported without it (before defectkit 0.1's
    /// patch detectors): re-export it.
    pub fn request_features(&mut self) -> Result<FeatureMapSpec, RuntimeError> {
        match &self.metadata.features {
            Some(spec) if self.metadata.outputs.iter().any(|o| o == "features") => {
                self.features = true;
                Ok(spec.clone())
            }
            _ => Err(RuntimeError::Metadata {
                path: self.path.clone(),
                reason: "the model has no `features` output (it was exported before patch-level \
                         detection existed); re-export its run with `defectkit export`"
                    .into(),
            }),
        }
    }

    /// Values per sample of the input tensor (C·H·W).
    pub fn sample_len(&self) -> usize {
        self.metadata.input_shape.iter().product()
    }

    /// Runs one batch: `input` is `batch × C × H × W` values, preprocessed with
    /// `metadata.preprocess`.
    pub fn run(&mut self, input: &[f32]) -> Result<ModelOutputs, RuntimeError> {
        let per_sample = self.sample_len();
        if input.is_empty() || input.len() % per_sample != 0 {
            return Err(RuntimeError::InputShape {
                expected: self.metadata.input_shape,
                per_sample,
                got: input.len(),
            });
        }
        let batch = input.len() / per_sample;
        let [c, h, w] = self.metadata.input_shape;
        let tensor = Tensor::from_array(([batch, c, h, w], input.to_vec())).map_err(ort_err)?;
        let primary_name = self.metadata.kind.primary_output();
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(ort_err)?;
        let extract = |name: &str| -> Result<(Vec<usize>, Vec<f32>), RuntimeError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| RuntimeError::Ort(format!("no output named {name:?}")))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
            Ok((
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                data.to_vec(),
            ))
        };
        let (primary_shape, primary) = extract(primary_name)?;
        let (embedding_shape, embedding) = extract("embedding")?;
        if embedding_shape != [batch, self.metadata.embedding_dim] {
            return Err(RuntimeError::Ort(format!(
                "embedding has shape {embedding_shape:?}, expected [{batch}, {}]",
                self.metadata.embedding_dim
            )));
        }
        let features = if self.features {
            let spec = self.metadata.features.as_ref().expect("checked on request");
            let (shape, values) = extract("features")?;
            let want = [batch, spec.channels, spec.height, spec.width];
            if shape != want {
                return Err(RuntimeError::Ort(format!(
                    "features has shape {shape:?}, the metadata documents {want:?}"
                )));
            }
            Some(values)
        } else {
            None
        };
        Ok(ModelOutputs {
            primary,
            primary_shape,
            embedding,
            features,
        })
    }
}
